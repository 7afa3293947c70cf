import { DynamicModule, Inject, Logger, Module, OnApplicationShutdown, OnModuleInit, Provider } from '@nestjs/common';
import { HttpAdapterHost, ModulesContainer } from '@nestjs/core';
import { canRunInTransaction, settleDeferredCompletions } from './core/claim-engine';
import { hasTransactionParameter } from './calls/idempotency-claim.decorator';
import { findSafeMethodRoutes, findUnsupportedRoutes } from './http/route-check';
import { installReplyGuard } from './http/reply-guard';
import {
  createAsyncStateProviders,
  createModuleState,
  IDEMPOTENCY_MODULE_STATE,
  type IdempotencyModuleState,
} from './idempotency.providers';
import { IDEMPOTENCY_OPTIONS } from './idempotency.constants';
import type {
  IdempotencyModuleAsyncOptions,
  IdempotencyModuleRootOptions,
} from './interfaces/idempotency-options.interface';
import { IdempotencyHealthIndicator } from './health/idempotency-health.indicator';
import { IdempotencyService } from './service/idempotency.service';
import { IdempotencyAdmin } from './service/idempotency-admin';
import { IdempotencyStore } from './core/idempotency-store';
import { MemoryStore } from './stores/memory.store';

function sharedProviders(): Provider[] {
  return [
    {
      provide: IDEMPOTENCY_OPTIONS,
      useFactory: (state: IdempotencyModuleState) => state.options,
      inject: [IDEMPOTENCY_MODULE_STATE],
    },
    {
      provide: IdempotencyStore,
      useFactory: (state: IdempotencyModuleState) => state.store,
      inject: [IDEMPOTENCY_MODULE_STATE],
    },
    IdempotencyHealthIndicator,
    IdempotencyService,
    IdempotencyAdmin,
  ];
}

/** How long a shutdown waits for results still being stored in the background. */
const DEFERRED_SHUTDOWN_WAIT_MS = 5_000;

const EXPORTS = [
  IdempotencyStore,
  IDEMPOTENCY_OPTIONS,
  IdempotencyHealthIndicator,
  IdempotencyService,
  IdempotencyAdmin,
];

/**
 * How many running applications use each store the module closes: it is closed when the last of
 * them shuts down, so applications sharing one (a `MemoryStore` made once in an `AppModule`
 * that tests create again and again, or run side by side) do not close it under each other.
 */
const users = new WeakMap<IdempotencyStore, number>();

/**
 * Configures the store and the module-wide options of `@Idempotent()`, and provides
 * `IdempotencyStore` for injection. Global unless `isGlobal: false`.
 *
 * Store ownership: a store handed to `forRoot` belongs to the caller and is left open at
 * shutdown, except a `MemoryStore`, whose entries live and die with the application; a store
 * returned by a `forRootAsync` factory was made for the module. Closed stores are closed after
 * the HTTP server has stopped, by the last running application that uses them (a closed
 * `MemoryStore` starts again, empty, with the next application). `closeStoreOnShutdown`
 * overrides either default.
 */
@Module({})
export class IdempotencyModule implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Idempotency');

  constructor(
    @Inject(IDEMPOTENCY_MODULE_STATE) private readonly state: IdempotencyModuleState,
    private readonly adapterHost: HttpAdapterHost,
    private readonly modules: ModulesContainer,
  ) {}

  /** `forRoot(store)` or `forRoot({ store, ...options })`. */
  static forRoot(storeOrOptions: IdempotencyStore | IdempotencyModuleRootOptions): DynamicModule {
    const isGlobal = storeOrOptions instanceof IdempotencyStore ? true : (storeOrOptions?.isGlobal ?? true);
    const state = createModuleState(storeOrOptions, false, 'IdempotencyModule.forRoot');
    return {
      module: IdempotencyModule,
      global: isGlobal,
      providers: [{ provide: IDEMPOTENCY_MODULE_STATE, useValue: state }, ...sharedProviders()],
      exports: EXPORTS,
    };
  }

  /**
   * `forRootAsync({ imports, inject, useFactory })`, `forRootAsync({ useClass })` or
   * `forRootAsync({ imports, useExisting })`: the factory (or the class's
   * `createIdempotencyOptions()`) returns a store or `{ store, ...options }`.
   */
  static forRootAsync(options: IdempotencyModuleAsyncOptions): DynamicModule {
    const providers = createAsyncStateProviders(options);
    return {
      module: IdempotencyModule,
      global: options.isGlobal ?? true,
      imports: options.imports ?? [],
      providers: [...providers, ...sharedProviders()],
      exports: EXPORTS,
    };
  }

  onModuleInit(): void {
    const store = this.state.store;
    if (this.state.closeStoreOnShutdown) {
      users.set(store, (users.get(store) ?? 0) + 1);
      // A MemoryStore an earlier application closed starts again, empty.
      if (store instanceof MemoryStore) store.reopen();
    }
    // Before the first request: lets the interceptor answer by itself without Nest replying again.
    installReplyGuard(this.adapterHost.httpAdapter);
    const controllers = new Set<{ name: string; prototype: object }>();
    for (const module of this.modules.values()) {
      for (const wrapper of module.controllers.values()) {
        if (typeof wrapper.metatype === 'function') controllers.add(wrapper.metatype);
      }
    }
    const problems = findUnsupportedRoutes(controllers);
    if (!canRunInTransaction(store)) problems.push(...this.#transactionsWithout(store, controllers));
    if (problems.length > 0) throw new Error(problems.join('\n'));
    for (const warning of findSafeMethodRoutes(controllers)) this.logger.warn(warning);
  }

  /** `@IdempotencyTransaction()` parameters (routes, message handlers, resolvers) a store without transactions cannot fill. */
  #transactionsWithout(store: IdempotencyStore, controllers: Set<{ name: string; prototype: object }>): string[] {
    const classes = new Set<{ name: string; prototype: object }>(controllers);
    for (const module of this.modules.values()) {
      for (const wrapper of module.providers.values()) {
        const type = wrapper.metatype as unknown;
        if (typeof type === 'function' && (type as { prototype?: unknown }).prototype !== undefined) {
          classes.add(type as { name: string; prototype: object });
        }
      }
    }
    const found: string[] = [];
    for (const type of classes) {
      for (const name of Object.getOwnPropertyNames(type.prototype)) {
        if (name !== 'constructor' && hasTransactionParameter(type, name)) found.push(`${type.name}.${name}()`);
      }
    }
    if (found.length === 0) return [];
    return [
      `@IdempotencyTransaction() on ${found.join(', ')} needs a store that runs work in a transaction with its ` +
        `result (PostgresStore), but the store is a ${store.kind} store: the handler's writes and its stored ` +
        'response could not commit together. Use a PostgresStore, or take the parameter out.',
    ];
  }

  /**
   * After the HTTP server has stopped: waits (up to 5 s) for results still being stored in the
   * background, then closes the store if the module owns it.
   */
  async onApplicationShutdown(): Promise<void> {
    const store = this.state.store;
    const abandoned = await settleDeferredCompletions(
      DEFERRED_SHUTDOWN_WAIT_MS,
      (s) => s === store || (s as { inner?: unknown }).inner === store,
    );
    if (abandoned > 0) {
      this.logger.error(
        `${abandoned} result(s) could not be stored before shutdown; their keys stay held (in flight) ` +
          'until their replay window ends, so their handlers never run again',
      );
    }
    if (!this.state.closeStoreOnShutdown) return;
    const left = (users.get(store) ?? 1) - 1;
    users.set(store, left);
    if (left > 0) return; // another running application still uses it
    try {
      await this.state.store.close();
    } catch (error) {
      this.logger.error(`closing the idempotency store failed: ${(error as Error).message}`);
    }
  }
}
