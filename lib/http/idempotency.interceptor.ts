import { CallHandler, ExecutionContext, Inject, Injectable, Logger, NestInterceptor } from '@nestjs/common';
import { ApplicationConfig, HttpAdapterHost, Reflector } from '@nestjs/core';
import { from, type Observable, of, throwError } from 'rxjs';
import { IdempotencyKeyError } from '../core/errors';
import type { Fingerprint } from '../core/fingerprint';
import { GraphqlEntry } from '../graphql/graphql-entry';
import { CallEngines } from '../handler/call-engines';
import { RpcEntry } from '../rpc/rpc-entry';
import { IdempotencyStore } from '../core/idempotency-store';
import { IdempotencyKey } from '../core/idempotency-key';
import { IDEMPOTENCY_OPTIONS } from '../idempotency.constants';
import type { ResolvedIdempotencyOptions } from '../idempotency.providers';
import { principalOf, UnusableScopeError } from '../handler/principal';
import type { IdempotencyRequest } from '../interfaces/idempotency-options.interface';
import { callToken } from './call-token';
import { type HttpPlatform, platformOf } from './http-platform';
import { readKeyHeader } from './key-header';
import { Problems } from './problem-details';
import { hasReplyGuard, installReplyGuard } from './reply-guard';
import { requestFingerprint } from './request-fingerprint';
import { RequestRunner } from './request-runner';
import { sendProblem } from './response-capture';
import { RouteConfigs } from './route-config';
import { storeKeyFor } from '../core/store-key';

const PASS: unique symbol = Symbol('pass');
const SENT: unique symbol = Symbol('sent');
const DONE = of(undefined);

/**
 * Calls (requests, or the call tokens of messages and resolvers) an idempotency interceptor has
 * taken on, so the wrapped handler (or another interceptor) steps aside.
 */
const takenRequests = new WeakSet<object>();

/**
 * Makes `@Idempotent()` routes run at most once per key, and replays their stored response.
 * `@Idempotent()` binds it to the route itself (as the engine of the route's wrapped handler, which
 * spares every request Nest's interceptor chain); nothing else is needed.
 *
 * To change how keys, scopes or fingerprints are found, subclass it, override the protected
 * hooks, and register the subclass with `APP_INTERCEPTOR`: it then handles every `@Idempotent()`
 * route as an interceptor, and the engine the decorator binds steps aside.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  protected readonly logger = new Logger('Idempotency');
  readonly #routes: RouteConfigs;
  #platform: HttpPlatform | undefined;
  #runner: RequestRunner | undefined;
  readonly #engines: CallEngines;
  /** Message handlers and resolvers, set up on their first call. */
  #rpc: RpcEntry | undefined;
  #graphql: GraphqlEntry | undefined;

  constructor(
    protected readonly store: IdempotencyStore,
    @Inject(IDEMPOTENCY_OPTIONS) protected readonly moduleOptions: ResolvedIdempotencyOptions,
    protected readonly reflector: Reflector,
    protected readonly adapterHost: HttpAdapterHost,
    protected readonly applicationConfig: ApplicationConfig,
  ) {
    this.#routes = new RouteConfigs(moduleOptions, applicationConfig, reflector, isIdempotencyInterceptor);
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
   * Claims, replays or refuses; `PASS` when the handler should just run, `SENT` when answered.
   * `invoke` calls the handler and returns what it returns; `next` is the handler as an
   * interceptor gets it.
   */
  #process(
    context: ExecutionContext,
    next: CallHandler,
    invoke: () => unknown,
  ): Promise<unknown> | typeof PASS | typeof SENT {
    if (context.getType() !== 'http') return this.#processOther(context, next) ?? PASS;
    const route = this.#routes.of(context);
    if (route === null) return PASS;
    if (route.unsupported !== undefined) throw new Error(route.unsupported);
    if (this.shouldSkip(context)) return PASS;

    const req = context.getArgByIndex(0);
    const res = context.getArgByIndex(1);
    const platform = this.#platform ?? this.#initPlatform();
    const options = route.options;
    let clientKey: IdempotencyKey;
    try {
      const text = this.getKey(context, options);
      if (text === undefined) {
        if (!options.required) return PASS;
        sendProblem(platform, res, route.keyMissing, options.throwProblems);
        return SENT;
      }
      clientKey = new IdempotencyKey(text);
    } catch (error) {
      if (!(error instanceof IdempotencyKeyError)) throw error;
      sendProblem(
        platform,
        res,
        route.prepare(Problems.keyInvalid(options.headerName, error.message)),
        options.throwProblems,
      );
      return SENT;
    }
    let scope: string | undefined;
    try {
      scope = this.getScope(context, options);
    } catch (error) {
      if (!(error instanceof UnusableScopeError)) throw error;
      // Never unscoped: another principal's stored response could be replayed to this one.
      this.#routes.logUnusableScopeOnce(context, error, this.logger);
      sendProblem(platform, res, route.scopeInvalid, options.throwProblems);
      return SENT;
    }
    const key = this.getStoreKey(clientKey, scope);
    const fingerprint = this.getFingerprint(context, options);
    const runner = (this.#runner ??= new RequestRunner(
      this.#engines.store,
      platform,
      this.#engines.reporter,
      this.logger,
    ));
    const reporter = this.#engines.reporter;
    const trace = reporter.start(route.label, key);
    const answer =
      trace === undefined
        ? runner.run(route, req, res, clientKey, key, fingerprint, trace, next, invoke)
        : reporter.within(trace, () => runner.run(route, req, res, clientKey, key, fingerprint, trace, next, invoke));
    return answer === undefined ? SENT : answer;
  }

  /** Message handlers (`rpc`) and resolvers (`graphql`); `undefined` to let the call through. */
  #processOther(context: ExecutionContext, next: CallHandler): Promise<unknown> | undefined {
    switch (context.getType<string>()) {
      case 'rpc':
        this.#rpc ??= new RpcEntry(this.moduleOptions, this.#engines.valueRunner, this.#skip, this.logger);
        return this.#rpc.process(context, next);
      case 'graphql':
        this.#graphql ??= new GraphqlEntry(this.moduleOptions, this.#engines.valueRunner, this.#skip, this.logger);
        return this.#graphql.process(context, next);
      default:
        return undefined;
    }
  }

  readonly #skip = (context: ExecutionContext): boolean => this.shouldSkip(context);

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
    const req = context.getArgByIndex(0);
    return readKeyHeader(req.headers, (req.raw ?? req).rawHeaders, options.headerKey);
  }

  /**
   * The principal the key belongs to, or `undefined` for none. The default reads the `scope`
   * option; a principal that cannot be named (a `request.user` without a usable id, a scope
   * function answering an object) throws, and the request is refused with a 500 problem.
   */
  protected getScope(context: ExecutionContext, options: ResolvedIdempotencyOptions): string | undefined {
    return principalOf(options.scope, context.getArgByIndex(0));
  }

  /** The key under which the request is stored: the client's key, scoped to the principal. */
  protected getStoreKey(clientKey: IdempotencyKey, scope: string | undefined): IdempotencyKey {
    return storeKeyFor(clientKey, scope);
  }

  /**
   * The request's fingerprint, computed once before the handler runs: by default method, path
   * with query, and the body (raw bytes when Nest keeps `rawBody`, else canonical JSON), tagged
   * with the kind and media type of the body.
   */
  protected getFingerprint(context: ExecutionContext, options: ResolvedIdempotencyOptions): Fingerprint {
    const req: IdempotencyRequest = context.getArgByIndex(0);
    const fingerprint = options.fingerprint;
    return typeof fingerprint === 'function' ? fingerprint(req) : requestFingerprint(req, fingerprint);
  }

  #initPlatform(): HttpPlatform {
    const adapter = this.adapterHost.httpAdapter;
    if (!hasReplyGuard(adapter)) installReplyGuard(adapter);
    this.#platform = platformOf(adapter?.getType?.());
    return this.#platform;
  }
}

function isIdempotencyInterceptor(i: unknown): boolean {
  return (
    i instanceof IdempotencyInterceptor ||
    (typeof i === 'function' && (i === IdempotencyInterceptor || i.prototype instanceof IdempotencyInterceptor))
  );
}
