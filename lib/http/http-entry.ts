import type { CallHandler, ExecutionContext, Logger } from '@nestjs/common';
import type { HttpAdapterHost } from '@nestjs/core';
import { type CallAdapter, PASS, SENT } from '../calls/call-adapter';
import type { CallEngines } from '../calls/call-engines';
import { readKeyHeader } from '../calls/key-header';
import { principalOf, UnusableScopeError } from '../calls/principal';
import { Problems } from '../calls/problem-details';
import { IdempotencyKeyError } from '../core/errors';
import type { Fingerprint } from '../core/fingerprint';
import { IdempotencyKey } from '../core/idempotency-key';
import { clientKeyFor, storeKeyFor } from '../core/store-key';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import type { IdempotencyRequest } from '../interfaces/idempotency-options.interface';
import { type HttpPlatform, platformOf } from './http-platform';
import { hasReplyGuard, installReplyGuard } from './reply-guard';
import { requestFingerprint } from './request-fingerprint';
import { RequestRunner } from './request-runner';
import { sendProblem } from './response-capture';
import type { RouteConfigs } from './route-config';

/**
 * How an HTTP request's key, principal, store key and fingerprint are found: the interceptor's
 * protected hooks, which a subclass may override (see `IdempotencyInterceptor`).
 * @internal
 */
export interface HttpHooks {
  shouldSkip(context: ExecutionContext): boolean;
  getKey(context: ExecutionContext, options: ResolvedIdempotencyOptions): string | undefined;
  getScope(context: ExecutionContext, options: ResolvedIdempotencyOptions): string | undefined;
  getStoreKey(clientKey: IdempotencyKey, scope: string | undefined): IdempotencyKey;
  getFingerprint(context: ExecutionContext, options: ResolvedIdempotencyOptions): Fingerprint;
}

/** The key text of an HTTP request: its key header, RFC 8941 or bare. @internal */
export function httpKeyOf(context: ExecutionContext, options: ResolvedIdempotencyOptions): string | undefined {
  const req = context.getArgByIndex(0);
  return readKeyHeader(req.headers, (req.raw ?? req).rawHeaders, options.headerKey);
}

/** The principal of an HTTP request, by the `scope` option. @internal */
export function httpScopeOf(context: ExecutionContext, options: ResolvedIdempotencyOptions): string | undefined {
  return principalOf(options.scope, context.getArgByIndex(0));
}

/** The store key of a client key and a principal. @internal */
export function httpStoreKeyOf(clientKey: IdempotencyKey, scope: string | undefined): IdempotencyKey {
  return storeKeyFor(clientKey, scope);
}

/** The fingerprint of an HTTP request, by the `fingerprint` option. @internal */
export function httpFingerprintOf(context: ExecutionContext, options: ResolvedIdempotencyOptions): Fingerprint {
  const req: IdempotencyRequest = context.getArgByIndex(0);
  const fingerprint = options.fingerprint;
  return typeof fingerprint === 'function' ? fingerprint(req) : requestFingerprint(req, fingerprint);
}

/**
 * `@Idempotent()` on HTTP routes (context type `http`): the key from the request's key header,
 * scoped to the principal, the fingerprint from method, path, query and body; the handler's
 * response is captured, stored, then sent; replays and problems are answered here.
 * @internal
 */
export class HttpEntry implements CallAdapter {
  #platform: HttpPlatform | undefined;
  #runner: RequestRunner | undefined;

  constructor(
    private readonly routes: RouteConfigs,
    private readonly engines: CallEngines,
    private readonly adapterHost: HttpAdapterHost,
    private readonly hooks: HttpHooks,
    private readonly logger: Logger,
  ) {}

  process(
    context: ExecutionContext,
    next: CallHandler,
    invoke: () => unknown,
  ): Promise<unknown> | typeof PASS | typeof SENT {
    const route = this.routes.of(context);
    if (route === null) return PASS;
    if (route.unsupported !== undefined) throw new Error(route.unsupported);
    const hooks = this.hooks;
    if (hooks.shouldSkip(context)) return PASS;

    const req = context.getArgByIndex(0);
    const res = context.getArgByIndex(1);
    const platform = this.#platform ?? this.#initPlatform();
    const options = route.options;
    let clientKey: IdempotencyKey;
    try {
      const text = hooks.getKey(context, options);
      if (text === undefined) {
        if (!options.required) return PASS;
        sendProblem(platform, res, route.keyMissing, options.throwProblems);
        return SENT;
      }
      clientKey = clientKeyFor(text, options.maxKeyLength);
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
      scope = hooks.getScope(context, options);
    } catch (error) {
      if (!(error instanceof UnusableScopeError)) throw error;
      // Never unscoped: another principal's stored response could be replayed to this one.
      this.routes.logUnusableScopeOnce(context, error, this.logger);
      sendProblem(platform, res, route.scopeInvalid, options.throwProblems);
      return SENT;
    }
    const key = hooks.getStoreKey(clientKey, scope);
    const fingerprint = hooks.getFingerprint(context, options);
    const engines = this.engines;
    const runner = (this.#runner ??= new RequestRunner(engines.store, platform, engines.reporter, this.logger));
    const reporter = engines.reporter;
    const trace = reporter.start(route.label, key);
    const answer =
      trace === undefined
        ? runner.run(route, req, res, clientKey, key, fingerprint, trace, next, invoke)
        : reporter.within(trace, () => runner.run(route, req, res, clientKey, key, fingerprint, trace, next, invoke));
    return answer === undefined ? SENT : answer;
  }

  #initPlatform(): HttpPlatform {
    const adapter = this.adapterHost.httpAdapter;
    if (!hasReplyGuard(adapter)) installReplyGuard(adapter);
    this.#platform = platformOf(adapter?.getType?.());
    return this.#platform;
  }
}
