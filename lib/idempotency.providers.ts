import { Logger, type Provider } from '@nestjs/common';
import {
  DEFAULT_IDEMPOTENCY_OPTIONS,
  defaultScope,
  mergeOptions,
  type ResolvedIdempotencyOptions,
  validateOptions,
} from './idempotency.options';
import type {
  IdempotencyModuleAsyncOptions,
  IdempotencyModuleConfig,
  IdempotencyModuleOptions,
  IdempotencyOptionsFactory,
} from './interfaces/idempotency-options.interface';
import { MemoryStore } from './stores/memory.store';
import { useKeyHashSecret } from './observability/key-hash';
import { useModuleDocDefaults } from './swagger/idempotency-swagger';
import { IdempotencyStore } from './core/idempotency-store';
import { ResponseSealer } from './core/response-sealer';

export { DEFAULT_IDEMPOTENCY_OPTIONS, defaultScope, mergeOptions, type ResolvedIdempotencyOptions, validateOptions };

function fail(where: string, message: string): never {
  throw new TypeError(`${where}: ${message}`);
}

/** What the module was configured with. @internal */
export interface IdempotencyModuleState {
  readonly store: IdempotencyStore;
  readonly options: ResolvedIdempotencyOptions;
  readonly closeStoreOnShutdown: boolean;
}

const logger = new Logger('Idempotency');

function moduleState(
  store: IdempotencyStore,
  options: ResolvedIdempotencyOptions,
  closeStoreOnShutdown: boolean,
): IdempotencyModuleState {
  // Start-up warnings of a store (ValkeyStore's server check) go to the Nest logger. Nest runs the
  // store's onModuleInit itself, as the IdempotencyStore provider's instance.
  (store as { useWarningFallback?: (warn: (message: string) => void) => void }).useWarningFallback?.((message) =>
    logger.warn(message),
  );
  useModuleDocDefaults(options);
  return Object.freeze({ store, options, closeStoreOnShutdown });
}

/** @internal */
export const IDEMPOTENCY_MODULE_STATE = Symbol.for('nestjs-idempotent:module-state');
const IDEMPOTENCY_ASYNC_INPUT = Symbol.for('nestjs-idempotent:async-input');

function isStore(value: unknown): value is IdempotencyStore {
  return (
    value instanceof IdempotencyStore ||
    (typeof value === 'object' && value !== null && typeof (value as IdempotencyStore).tryInsert === 'function')
  );
}

/**
 * Turns what `forRoot`/`forRootAsync` received into the module state.
 * @internal
 */
export function createModuleState(
  input: IdempotencyStore | IdempotencyModuleOptions,
  closeByDefault: boolean,
  where: string,
): IdempotencyModuleState {
  if (isStore(input)) return moduleState(input, DEFAULT_IDEMPOTENCY_OPTIONS, closesByDefault(input, closeByDefault));
  if (input === null || typeof input !== 'object') fail(where, 'expected a store or { store, ...options }');
  const { store, closeStoreOnShutdown, onEvent, telemetry, keyHashSecret, encryption, ...options } = input;
  delete (options as { isGlobal?: unknown }).isGlobal;
  if (!isStore(store)) fail(where, 'store must be an IdempotencyStore');
  if (closeStoreOnShutdown !== undefined && typeof closeStoreOnShutdown !== 'boolean') {
    fail(where, 'closeStoreOnShutdown must be a boolean');
  }
  if (onEvent !== undefined && typeof onEvent !== 'function') fail(where, 'onEvent must be a function');
  if (telemetry !== undefined && typeof telemetry !== 'boolean') fail(where, 'telemetry must be a boolean');
  if (keyHashSecret !== undefined) {
    if (typeof keyHashSecret !== 'string' || keyHashSecret.length < 16) {
      fail(where, 'keyHashSecret must be a string of at least 16 characters');
    }
    useKeyHashSecret(keyHashSecret);
  }
  validateOptions(options, where);
  const resolved = Object.freeze({
    ...mergeOptions(DEFAULT_IDEMPOTENCY_OPTIONS, options),
    onEvent,
    telemetry: telemetry ?? true,
    // Checked here, at start-up: a bad key is an error naming it, not a 500 on the first request.
    sealer: encryption === undefined ? undefined : new ResponseSealer(encryption, where),
  });
  return moduleState(store, resolved, closeStoreOnShutdown ?? closesByDefault(store, closeByDefault));
}

/**
 * Whether the module closes `store` at shutdown unless told otherwise: one made for it, and any
 * `MemoryStore` (its entries live and die with the application; `closeStoreOnShutdown: false`
 * keeps one that apps share).
 */
function closesByDefault(store: IdempotencyStore, madeForTheModule: boolean): boolean {
  return madeForTheModule || store instanceof MemoryStore;
}

/** @internal */
export function createAsyncStateProviders(options: IdempotencyModuleAsyncOptions): Provider[] {
  const where = 'IdempotencyModule.forRootAsync';
  if (options === null || typeof options !== 'object') fail(where, 'expected { useFactory | useClass | useExisting }');
  const ways = [options.useFactory, options.useClass, options.useExisting].filter((w) => w !== undefined);
  if (ways.length !== 1) fail(where, 'give exactly one of useFactory, useClass or useExisting');
  let input: Provider[];
  if (options.useFactory !== undefined) {
    if (typeof options.useFactory !== 'function') fail(where, 'useFactory must be a function');
    input = [{ provide: IDEMPOTENCY_ASYNC_INPUT, useFactory: options.useFactory, inject: options.inject ?? [] }];
  } else {
    const factoryClass = (options.useClass ?? options.useExisting)!;
    if (typeof factoryClass !== 'function') fail(where, 'useClass / useExisting must be a class');
    input = [
      {
        provide: IDEMPOTENCY_ASYNC_INPUT,
        useFactory: (factory: IdempotencyOptionsFactory) => {
          if (typeof factory?.createIdempotencyOptions !== 'function') {
            fail(where, `${factoryClass.name} has no createIdempotencyOptions() method`);
          }
          return factory.createIdempotencyOptions();
        },
        inject: [factoryClass],
      },
    ];
    if (options.useClass !== undefined) input.push({ provide: options.useClass, useClass: options.useClass });
  }
  return [
    ...input,
    {
      provide: IDEMPOTENCY_MODULE_STATE,
      useFactory: (config: IdempotencyModuleConfig) => createModuleState(config, true, where),
      inject: [IDEMPOTENCY_ASYNC_INPUT],
    },
  ];
}
