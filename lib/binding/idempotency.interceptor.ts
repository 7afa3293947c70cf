import { CallHandler, ExecutionContext, Inject, Injectable, Logger, NestInterceptor } from '@nestjs/common';
import { ApplicationConfig, HttpAdapterHost, Reflector } from '@nestjs/core';
import { from, type Observable, of, throwError } from 'rxjs';
import { type CallAdapter, PASS, SENT } from '../calls/call-adapter';
import { CallEngines } from '../calls/call-engines';
import { callToken } from '../calls/call-token';
import type { Fingerprint } from '../core/fingerprint';
import { IdempotencyStore } from '../core/idempotency-store';
import type { IdempotencyKey } from '../core/idempotency-key';
import { GraphqlEntry } from '../graphql/graphql-entry';
import { HttpEntry, httpFingerprintOf, httpKeyOf, httpScopeOf, httpStoreKeyOf } from '../http/http-entry';
import { RouteConfigs } from '../http/route-config';
import { IDEMPOTENCY_OPTIONS } from '../idempotency.constants';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import { RpcEntry } from '../rpc/rpc-entry';

const DONE = of(undefined);

/**
 * Calls (requests, or the call tokens of messages and resolvers) an idempotency interceptor has
 * taken on, so the wrapped handler (or another interceptor) steps aside.
 */
const takenRequests = new WeakSet<object>();

/**
 * Makes `@Idempotent()` routes, message handlers and mutations run at most once per key, and
 * replays their stored answer: the dispatcher, which hands each call to the adapter of its
 * context type (`http`, `rpc`, `graphql`). `@Idempotent()` binds it to the handler itself (as the
 * engine of the handler's wrapper, which spares every request Nest's interceptor chain); nothing
 * else is needed.
 *
 * To change how keys, scopes or fingerprints are found, subclass it, override the protected
 * hooks, and register the subclass with `APP_INTERCEPTOR`: it then handles every `@Idempotent()`
 * route as an interceptor, and the engine the decorator binds steps aside.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  protected readonly logger = new Logger('Idempotency');
  readonly #engines: CallEngines;
  /** The adapter of each context type, made on its first call. */
  #http: CallAdapter | undefined;
  #rpc: CallAdapter | undefined;
  #graphql: CallAdapter | undefined;

  constructor(
    protected readonly store: IdempotencyStore,
    @Inject(IDEMPOTENCY_OPTIONS) protected readonly moduleOptions: ResolvedIdempotencyOptions,
    protected readonly reflector: Reflector,
    protected readonly adapterHost: HttpAdapterHost,
    protected readonly applicationConfig: ApplicationConfig,
  ) {
    this.#engines = new CallEngines(store, moduleOptions, this.logger);
  }

  /**
   * As an interceptor (a subclass registered with `APP_INTERCEPTOR`, or bound by hand): guards
   * `@Idempotent()` routes, and the wrapped handler of such a route then steps aside.
   */
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const call = callToken(context);
    if (call !== undefined) {
      if (takenRequests.has(call)) return next.handle();
      takenRequests.add(call);
    }
    let outcome: Promise<unknown> | typeof PASS | typeof SENT;
    try {
      outcome = this.#process(context, next, () => next.handle());
    } catch (error) {
      // As from a promise: the error reaches Nest through the Observable.
      return throwError(() => error);
    }
    if (outcome === PASS) return next.handle();
    return outcome === SENT ? DONE : from(outcome);
  }

  /**
   * Runs an `@Idempotent()` route's handler (`passThrough`, which calls it and returns what it
   * returns; `next` is the same as an interceptor's handler) under idempotency. Called by the
   * wrapped handler. Answers `undefined` when the response was sent, a promise of that while the
   * claim or the handler is pending, or the handler's own result when the request runs unguarded.
   * @internal
   */
  runRoute(context: ExecutionContext, next: CallHandler, passThrough: () => unknown): unknown {
    // An interceptor instance (see `intercept`) already took the request on.
    const call = callToken(context);
    if (call !== undefined && takenRequests.has(call)) return passThrough();
    const outcome = this.#process(context, next, passThrough);
    if (outcome === PASS) return passThrough();
    return outcome === SENT ? undefined : outcome;
  }

  /**
   * Claims, replays or refuses, by the adapter of the call's context type; `PASS` when the handler
   * should just run, `SENT` when answered. `invoke` calls the handler and returns what it returns;
   * `next` is the handler as an interceptor gets it.
   */
  #process(
    context: ExecutionContext,
    next: CallHandler,
    invoke: () => unknown,
  ): Promise<unknown> | typeof PASS | typeof SENT {
    const adapter = this.#adapterOf(context.getType<string>());
    return adapter === undefined ? PASS : adapter.process(context, next, invoke);
  }

  /** The adapter of a context type, or `undefined` for one this library does not guard. */
  #adapterOf(type: string): CallAdapter | undefined {
    switch (type) {
      case 'http':
        return (this.#http ??= new HttpEntry(
          new RouteConfigs(this.moduleOptions, this.applicationConfig, this.reflector, isIdempotencyInterceptor),
          this.#engines,
          this.adapterHost,
          this.#hooks,
          this.logger,
        ));
      case 'rpc':
        return (this.#rpc ??= new RpcEntry(this.moduleOptions, this.#engines.valueRunner, this.#skip, this.logger));
      case 'graphql':
        return (this.#graphql ??= new GraphqlEntry(
          this.moduleOptions,
          this.#engines.valueRunner,
          this.#skip,
          this.logger,
        ));
      default:
        return undefined;
    }
  }

  readonly #skip = (context: ExecutionContext): boolean => this.shouldSkip(context);

  /** The protected hooks, as the HTTP adapter calls them (a subclass's overrides included). */
  readonly #hooks = {
    shouldSkip: (context: ExecutionContext) => this.shouldSkip(context),
    getKey: (context: ExecutionContext, options: ResolvedIdempotencyOptions) => this.getKey(context, options),
    getScope: (context: ExecutionContext, options: ResolvedIdempotencyOptions) => this.getScope(context, options),
    getStoreKey: (clientKey: IdempotencyKey, scope: string | undefined) => this.getStoreKey(clientKey, scope),
    getFingerprint: (context: ExecutionContext, options: ResolvedIdempotencyOptions) =>
      this.getFingerprint(context, options),
  };

  /**
   * Whether to let this request through without idempotency. Runs for every guarded call: HTTP
   * requests, and (`context.getType()` `'rpc'` or `'graphql'`) messages and mutations.
   */
  protected shouldSkip(_context: ExecutionContext): boolean {
    return false;
  }

  /**
   * The client's key text, or `undefined` when the request has none.
   * @throws IdempotencyKeyError for a malformed header (the client gets 400)
   */
  protected getKey(context: ExecutionContext, options: ResolvedIdempotencyOptions): string | undefined {
    return httpKeyOf(context, options);
  }

  /**
   * The principal the key belongs to, or `undefined` for none. The default reads the `scope`
   * option; a principal that cannot be named (a `request.user` without a usable id, a scope
   * function answering an object) throws, and the request is refused with a 500 problem.
   */
  protected getScope(context: ExecutionContext, options: ResolvedIdempotencyOptions): string | undefined {
    return httpScopeOf(context, options);
  }

  /** The key under which the request is stored: the client's key, scoped to the principal. */
  protected getStoreKey(clientKey: IdempotencyKey, scope: string | undefined): IdempotencyKey {
    return httpStoreKeyOf(clientKey, scope);
  }

  /**
   * The request's fingerprint, computed once before the handler runs: by default method, path
   * with query, and the body (raw bytes when Nest keeps `rawBody`, else canonical JSON), tagged
   * with the kind and media type of the body.
   */
  protected getFingerprint(context: ExecutionContext, options: ResolvedIdempotencyOptions): Fingerprint {
    return httpFingerprintOf(context, options);
  }
}

function isIdempotencyInterceptor(i: unknown): boolean {
  return (
    i instanceof IdempotencyInterceptor ||
    (typeof i === 'function' && (i === IdempotencyInterceptor || i.prototype instanceof IdempotencyInterceptor))
  );
}
