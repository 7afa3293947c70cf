import {
  CallHandler,
  ClassSerializerInterceptor,
  ExecutionContext,
  Inject,
  Injectable,
  Logger,
  NestInterceptor,
  PipeTransform,
  StreamableFile,
} from '@nestjs/common';
import { INTERCEPTORS_METADATA, METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { RequestMethod } from '@nestjs/common/enums/request-method.enum';
import type { ClassSerializerContextOptions } from '@nestjs/common/serializer/class-serializer.interfaces';
import { ApplicationConfig, HttpAdapterHost, Reflector } from '@nestjs/core';
import { EmptyError, from, lastValueFrom, type Observable, of } from 'rxjs';
import { CachedResponse } from '../core/cached-response';
import { canonicalJson } from '../core/canonical-json';
import { IdempotencyKeyError } from '../core/errors';
import { FencedOutcome } from '../core/fenced-outcome';
import { FencingToken } from '../core/fencing-token';
import { Fingerprint } from '../core/fingerprint';
import { IdempotencyEntry } from '../core/idempotency-entry';
import { IdempotencyKey } from '../core/idempotency-key';
import { ClaimedResult, InsertResult } from '../core/insert-result';
import { completeWithRetry, Lease, LeaseLostError } from '../core/lease';
import { IDEMPOTENCY_OPTIONS, IDEMPOTENT_METADATA } from '../idempotency.constants';
import { mergeOptions, operationalStore, type ResolvedIdempotencyOptions } from '../idempotency.providers';
import type { IdempotencyOptions, IdempotencyRequest } from '../interfaces/idempotency-options.interface';
import type { IdempotencyOutcome } from '../observability/idempotency-event';
import { type OutcomeDetails, RequestReporter, type RequestTrace } from '../observability/request-reporter';
import { IdempotencyStore } from '../stores/idempotency.store';
import { type HttpPlatform, type Payload, platformOf, UnsupportedResultError } from './http-platform';
import { readKeyHeader } from './key-header';
import { type PreparedProblem, prepareProblem, PROBLEM_CONTENT_TYPE, Problems } from './problem-details';
import { hasReplyGuard, installReplyGuard } from './reply-guard';
import {
  captureResponse,
  problemResponse,
  renderException,
  replayHeaderNames,
  sendPayload,
  sendProblem,
  sendReplay,
  statusOfError,
  TOO_LARGE_RESPONSE,
} from './response-capture';
import { unsupportedReason } from './route-check';
import type { RouteBinding } from './route-handler';
import { storeKeyFor } from './store-key';

/** A ClassSerializerInterceptor outside this one, and the options it would use on the route. */
interface OuterSerializer {
  readonly interceptor: ClassSerializerInterceptor;
  readonly options: ClassSerializerContextOptions;
}

/** Everything about a route that does not change between requests, worked out once. @internal */
interface Route {
  readonly options: ResolvedIdempotencyOptions;
  readonly replayHeaders: readonly string[];
  /** Global or controller-level ClassSerializerInterceptors outside this one, innermost first. */
  readonly serializers: readonly OuterSerializer[];
  readonly unsupported: string | undefined;
  readonly cacheError: (error: unknown) => boolean;
  readonly inFlight: PreparedProblem;
  readonly storeUnavailable: PreparedProblem;
  readonly completionFailed: PreparedProblem;
  readonly keyMissing: PreparedProblem;
  /** `Controller.method()`, for logs. */
  readonly name: string;
  /** `METHOD /path/:pattern`, for telemetry and events. */
  readonly label: string;
}

/** One claimed or refused request, as reported. */
interface Attempt {
  readonly route: Route;
  readonly key: IdempotencyKey;
  readonly trace: RequestTrace | undefined;
}

const NOT_IDEMPOTENT = null;
const PASS: unique symbol = Symbol('pass');
const SENT: unique symbol = Symbol('sent');
const NO_VALUE: unique symbol = Symbol('no value');
const LAST_VALUE = { defaultValue: NO_VALUE } as const;
const DONE = of(undefined);
const KEY_REUSED = prepareProblem(Problems.keyReused());

/** Requests an idempotency interceptor has taken on, so the wrapped handler (or another interceptor) steps aside. */
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
export class IdempotencyInterceptor implements NestInterceptor, PipeTransform {
  protected readonly logger = new Logger('Idempotency');
  readonly #routes = new WeakMap<object, Map<object, Route | typeof NOT_IDEMPOTENT>>();
  #platform: HttpPlatform | undefined;
  #reporter: RequestReporter | undefined;
  /** `store`, wrapped for store spans when telemetry is on. */
  readonly #ops: IdempotencyStore;

  constructor(
    protected readonly store: IdempotencyStore,
    @Inject(IDEMPOTENCY_OPTIONS) protected readonly moduleOptions: ResolvedIdempotencyOptions,
    protected readonly reflector: Reflector,
    protected readonly adapterHost: HttpAdapterHost,
    protected readonly applicationConfig: ApplicationConfig,
  ) {
    this.#ops = operationalStore(store, moduleOptions);
  }

  /**
   * As an interceptor (a subclass registered with `APP_INTERCEPTOR`, or bound by hand): guards
   * `@Idempotent()` routes, and the wrapped handler of such a route then steps aside.
   */
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.getArgByIndex(0);
    if (context.getType() === 'http') {
      if (takenRequests.has(req)) return next.handle();
      takenRequests.add(req);
    }
    const outcome = this.#process(context, next);
    if (outcome === PASS) return next.handle();
    return outcome === SENT ? DONE : from(outcome);
  }

  /**
   * The pipe of the hidden parameter `@Idempotent()` adds to its routes: hands the wrapped
   * handler its context and this instance (made by Nest's injector in the controller's module).
   * @internal
   */
  transform(context: ExecutionContext): RouteBinding {
    return { context, engine: this };
  }

  /**
   * Runs an `@Idempotent()` route's handler (`passThrough`, or through `next`) under
   * idempotency. Called by the wrapped handler.
   * @internal
   */
  runRoute(context: ExecutionContext, next: CallHandler, passThrough: () => unknown): unknown {
    // An interceptor instance (see `intercept`) already took the request on.
    if (takenRequests.has(context.getArgByIndex(0))) return passThrough();
    const outcome = this.#process(context, next);
    if (outcome === PASS) return passThrough();
    return outcome === SENT ? undefined : outcome;
  }

  /** Claims, replays or refuses; `PASS` when the handler should just run, `SENT` when answered. */
  #process(context: ExecutionContext, next: CallHandler): Promise<unknown> | typeof PASS | typeof SENT {
    if (context.getType() !== 'http') return PASS;
    const route = this.#route(context);
    if (route === NOT_IDEMPOTENT) return PASS;
    if (route.unsupported !== undefined) throw new Error(route.unsupported);
    if (this.shouldSkip(context)) return PASS;

    const res = context.getArgByIndex(1);
    const platform = this.#platform ?? this.#initPlatform();
    const options = route.options;
    let clientKey: IdempotencyKey;
    try {
      const text = this.getKey(context, options);
      if (text === undefined) {
        if (!options.required) return PASS;
        sendProblem(platform, res, route.keyMissing);
        return SENT;
      }
      clientKey = new IdempotencyKey(text);
    } catch (error) {
      if (!(error instanceof IdempotencyKeyError)) throw error;
      sendProblem(platform, res, prepareProblem(Problems.keyInvalid(options.headerName, error.message)));
      return SENT;
    }
    const key = this.getStoreKey(clientKey, this.getScope(context, options));
    const fingerprint = this.getFingerprint(context, options);
    const reporter = this.#reporter ?? this.#initReporter();
    const trace = reporter.start(route.label, key);
    const attempt: Attempt = { route, key, trace };
    return reporter.within(trace, () => this.#execute(next, platform, res, attempt, fingerprint));
  }

  /** Whether to let this request through without idempotency. Runs for every guarded request. */
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

  /** The principal the key belongs to, or `undefined` for none. */
  protected getScope(context: ExecutionContext, options: ResolvedIdempotencyOptions): string | undefined {
    if (options.scope === false) return undefined;
    const principal = options.scope(context.getArgByIndex(0));
    if (typeof principal === 'string') return principal.length > 0 ? principal : undefined;
    if (typeof principal === 'number' || typeof principal === 'bigint') return String(principal);
    return undefined;
  }

  /** The key under which the request is stored: the client's key, scoped to the principal. */
  protected getStoreKey(clientKey: IdempotencyKey, scope: string | undefined): IdempotencyKey {
    return storeKeyFor(clientKey, scope);
  }

  /**
   * The request's fingerprint, computed once before the handler runs: by default method, path
   * with query, and the body (raw bytes when Nest keeps `rawBody`, else canonical JSON).
   */
  protected getFingerprint(context: ExecutionContext, options: ResolvedIdempotencyOptions): Fingerprint {
    const req: IdempotencyRequest = context.getArgByIndex(0);
    const fingerprint = options.fingerprint;
    if (typeof fingerprint === 'function') return fingerprint(req);
    return fingerprint.compute(`${req.method} ${req.originalUrl ?? req.url}`, requestBody(req));
  }

  async #execute(
    next: CallHandler,
    platform: HttpPlatform,
    res: unknown,
    attempt: Attempt,
    fingerprint: Fingerprint,
  ): Promise<unknown> {
    const { route, key } = attempt;
    const options = route.options;
    let claim: InsertResult;
    try {
      claim = await this.#ops.tryInsert(key, new IdempotencyEntry(fingerprint, options.leaseMs));
    } catch (error) {
      if (options.failOpen) {
        this.#report('fail_open', attempt, { error });
        return lastValueFrom(next.handle());
      }
      this.#report('store_error', attempt, { error, statusCode: 503 });
      sendProblem(platform, res, route.storeUnavailable);
      return undefined;
    }
    if (claim.kind === 'exists') {
      const entry = claim.entry;
      if (!entry.fingerprintMatches(fingerprint)) {
        this.#report('fingerprint_mismatch', attempt, { statusCode: 422 });
        sendProblem(platform, res, KEY_REUSED);
      } else if (entry.isCompleted()) {
        this.#report('replayed', attempt, { statusCode: entry.response.statusCode });
        sendReplay(platform, res, entry.response);
      } else {
        this.#report('in_flight', attempt, { statusCode: 409 });
        sendProblem(platform, res, route.inFlight);
      }
      return undefined;
    }
    return this.#runClaimed(next, platform, res, attempt, claim, fingerprint);
  }

  async #runClaimed(
    next: CallHandler,
    platform: HttpPlatform,
    res: unknown,
    attempt: Attempt,
    claim: ClaimedResult,
    fingerprint: Fingerprint,
  ): Promise<unknown> {
    const { route, key } = attempt;
    const options = route.options;
    const fencingToken = claim.fencingToken;
    const lease = new Lease(this.#ops, key, fencingToken, options.leaseMs, (error: LeaseLostError) =>
      this.#report('lease_lost', attempt, { error, fencingToken }, false),
    );
    // Subscribed here, not through the Observable Nest holds: a client that goes away tears
    // Nest's subscription down, and the result must still be recorded.
    let value: unknown;
    try {
      value = await lastValueFrom(next.handle(), LAST_VALUE);
    } catch (error) {
      lease.stop();
      if (route.cacheError(error)) await this.#storeError(platform, res, attempt, claim, lease, error);
      else await this.#release(attempt, claim, error);
      throw error;
    }
    if (value === NO_VALUE) {
      lease.stop();
      await this.#release(attempt, claim, new EmptyError());
      // What Nest itself does with an empty Observable.
      throw new EmptyError();
    }

    let payload: Payload;
    let response: CachedResponse;
    try {
      if (platform.isSent(res)) throw new Error(`${route.name} sent its response itself, so it cannot be stored`);
      for (let i = 0; i < route.serializers.length; i++) {
        const { interceptor, options: serializerOptions } = route.serializers[i];
        value = interceptor.serialize(value as object, serializerOptions);
      }
      payload = platform.toPayload(res, value);
      // Too large to store: only a 413 marker is, so retries get 413 and the handler does not run again.
      response =
        payloadBytes(payload) > options.maxResponseBytes
          ? TOO_LARGE_RESPONSE
          : captureResponse(platform, res, payload, route.replayHeaders);
    } catch (error) {
      // The handler ran, so its side effects happened: the key is not released. A 500 problem
      // saying why is stored in place of the result, so a retry gets it and does not run again.
      const problem = prepareProblem(Problems.unsupportedResult(this.#unsupportedMessage(route, value, error)));
      response = problemResponse(problem);
      if (platform.isSent(res)) {
        payload = undefined;
      } else {
        platform.setStatus(res, problem.status);
        platform.setHeader(res, 'Content-Type', PROBLEM_CONTENT_TYPE);
        payload = problem.body;
      }
    }

    // The heartbeat stops first, so completion retries are bounded by what is left of the lease
    // even when the store keeps renewing leases but refuses completions.
    lease.stop();
    let outcome: FencedOutcome;
    try {
      outcome = await completeWithRetry(this.#ops, key, claim.entry.complete(response), lease, options.ttlMs);
    } catch (error) {
      // The handler ran: the key is not released, the client is told to come back.
      this.logger.error(`the result of ${route.name} could not be recorded: ${messageOf(error)}`);
      this.#report('store_error', attempt, { error, fencingToken, statusCode: 503 });
      sendProblem(platform, res, route.completionFailed);
      return undefined;
    }
    if (outcome === FencedOutcome.Applied) {
      this.#report('claimed', attempt, { fencingToken, statusCode: response.statusCode });
      if (!platform.isSent(res)) sendPayload(platform, res, payload);
      return undefined;
    }
    if (outcome === FencedOutcome.KeyExpired) {
      // The lease ran out and nobody took the key: claim it again and store the result after all,
      // so a retry replays it instead of running the handler a second time.
      const late = await this.#storeLate(attempt, fingerprint, response);
      this.#report('key_expired', attempt, { fencingToken }, late === undefined);
      if (late !== undefined) {
        this.#report('claimed', attempt, { fencingToken: late, statusCode: response.statusCode });
        if (!platform.isSent(res)) sendPayload(platform, res, payload);
        return undefined;
      }
    } else {
      this.#report('stale_completion', attempt, { fencingToken });
    }
    // Another claim holds the key: answer with what it holds now.
    await this.#answerWithCurrent(platform, res, route, key, fingerprint);
    return undefined;
  }

  /**
   * Claims an expired key again and stores `response` for it: the new claim's token, or
   * `undefined` if someone else holds the key (or the store fails).
   */
  async #storeLate(
    attempt: Attempt,
    fingerprint: Fingerprint,
    response: CachedResponse,
  ): Promise<FencingToken | undefined> {
    const { key, route } = attempt;
    try {
      const again = await this.#ops.tryInsert(key, new IdempotencyEntry(fingerprint, route.options.leaseMs));
      if (again.kind !== 'claimed') return undefined;
      const outcome = await this.#ops.complete(
        key,
        again.entry.complete(response),
        again.fencingToken,
        route.options.ttlMs,
      );
      return outcome === FencedOutcome.Applied ? again.fencingToken : undefined;
    } catch (error) {
      this.logger.warn(`the late result of ${route.name} could not be stored: ${messageOf(error)}`);
      return undefined;
    }
  }

  async #answerWithCurrent(
    platform: HttpPlatform,
    res: unknown,
    route: Route,
    key: IdempotencyKey,
    fingerprint: Fingerprint,
  ): Promise<void> {
    if (platform.isSent(res)) return;
    // Headers the stale handler set (cookies included) must not go out with another run's answer.
    platform.clearHeaders(res);
    try {
      const current = await this.#ops.get(key);
      if (current !== undefined && current.isCompleted() && current.fingerprintMatches(fingerprint)) {
        sendReplay(platform, res, current.response);
        return;
      }
    } catch (error) {
      this.logger.warn(`could not read the entry of ${route.name} after losing its lease: ${messageOf(error)}`);
    }
    sendProblem(platform, res, route.inFlight);
  }

  /** Stores the response Nest will render for `error`, so retries replay it. */
  async #storeError(
    platform: HttpPlatform,
    res: unknown,
    attempt: Attempt,
    claim: ClaimedResult,
    lease: Lease,
    error: unknown,
  ): Promise<void> {
    const { route, key } = attempt;
    const fencingToken = claim.fencingToken;
    try {
      const { status, body } = renderException(error);
      platform.setStatus(res, status);
      const payload = platform.toPayload(res, body, status);
      const response =
        payloadBytes(payload) > route.options.maxResponseBytes
          ? TOO_LARGE_RESPONSE
          : captureResponse(platform, res, payload, route.replayHeaders, status);
      const outcome = await completeWithRetry(
        this.#ops,
        key,
        claim.entry.complete(response),
        lease,
        route.options.ttlMs,
      );
      if (outcome === FencedOutcome.Applied) this.#report('claimed', attempt, { fencingToken, statusCode: status });
      else
        this.#report(outcome === FencedOutcome.KeyExpired ? 'key_expired' : 'stale_completion', attempt, {
          fencingToken,
        });
    } catch (storeError) {
      this.logger.error(`the error response of ${route.name} could not be recorded: ${messageOf(storeError)}`);
      this.#report('store_error', attempt, { error: storeError, fencingToken });
    } finally {
      lease.stop();
    }
  }

  /** Releases the key, so a retry runs the handler again. */
  async #release(attempt: Attempt, claim: ClaimedResult, cause: unknown): Promise<void> {
    try {
      await this.#ops.remove(attempt.key, claim.fencingToken);
    } catch (error) {
      this.logger.warn(
        `could not release the key of ${attempt.route.name} (${messageOf(error)}); it frees when its lease ends`,
      );
    }
    this.#report('released', attempt, { error: cause, fencingToken: claim.fencingToken });
  }

  #report(type: IdempotencyOutcome, attempt: Attempt, details?: OutcomeDetails, terminal = true): void {
    (this.#reporter ?? this.#initReporter()).report(
      type,
      attempt.route.label,
      attempt.key,
      attempt.trace,
      details,
      terminal,
    );
  }

  #initReporter(): RequestReporter {
    const logger = this.logger;
    this.#reporter = new RequestReporter(
      {
        warn: (message) => logger.warn(message),
        error: (message) => logger.error(message),
        // Debug lines only where the app set log levels that include debug: the default logger
        // prints every level, and a line per request would cost more than the request.
        debug: (message) => {
          if (Logger.isLevelEnabled('debug')) logger.debug(message);
        },
      },
      this.moduleOptions.onEvent,
      this.store.kind,
      this.moduleOptions.telemetry,
    );
    return this.#reporter;
  }

  /** Why the handler's result cannot be stored, for the developer; releases a returned stream. */
  #unsupportedMessage(route: Route, value: unknown, error: unknown): string {
    let message: string;
    if (error instanceof UnsupportedResultError) {
      const isFile = value instanceof StreamableFile;
      if (isFile) value.getStream().destroy?.();
      else (value as { destroy?: () => void }).destroy?.();
      message =
        `${route.name} returned ${isFile ? 'a StreamableFile' : 'a stream'}, which @Idempotent() cannot store ` +
        'for replay. Return the data itself, or remove @Idempotent() from the route.';
    } else {
      message = `the result of ${route.name} cannot be stored for replay: ${messageOf(error)}.`;
    }
    this.logger.error(message);
    return message;
  }

  #initPlatform(): HttpPlatform {
    const adapter = this.adapterHost.httpAdapter;
    if (!hasReplyGuard(adapter)) installReplyGuard(adapter);
    this.#platform = platformOf(adapter?.getType?.());
    return this.#platform;
  }

  #route(context: ExecutionContext): Route | typeof NOT_IDEMPOTENT {
    const controller = context.getClass();
    const handler = context.getHandler();
    let byHandler = this.#routes.get(controller);
    if (byHandler === undefined) {
      byHandler = new Map();
      this.#routes.set(controller, byHandler);
    }
    let route = byHandler.get(handler);
    if (route === undefined) {
      route = this.#resolveRoute(context, controller, handler);
      byHandler.set(handler, route);
    }
    return route;
  }

  #resolveRoute(
    context: ExecutionContext,
    controller: { name: string },
    handler: { name: string },
  ): Route | typeof NOT_IDEMPOTENT {
    const classOptions = Reflect.getMetadata(IDEMPOTENT_METADATA, controller) as IdempotencyOptions | undefined;
    const methodOptions = Reflect.getMetadata(IDEMPOTENT_METADATA, handler) as IdempotencyOptions | undefined;
    if (classOptions === undefined && methodOptions === undefined) return NOT_IDEMPOTENT;
    const options = mergeOptions(mergeOptions(this.moduleOptions, classOptions), methodOptions);

    // The interceptors bound to the route, outermost first, as Nest runs them.
    const chain: unknown[] = [
      ...this.applicationConfig.getGlobalInterceptors(),
      ...((Reflect.getMetadata(INTERCEPTORS_METADATA, controller) as unknown[] | undefined) ?? []),
      ...((Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? []),
    ];
    const isIdempotency = (i: unknown) =>
      i instanceof IdempotencyInterceptor ||
      (typeof i === 'function' && (i === IdempotencyInterceptor || i.prototype instanceof IdempotencyInterceptor));
    const first = chain.findIndex(isIdempotency);
    const serializers: OuterSerializer[] = [];
    // The wrapped handler runs inside every interceptor; an interceptor instance of this class
    // inside those listed before it.
    for (const outer of chain.slice(0, first === -1 ? chain.length : first).reverse()) {
      const interceptor = this.#serializerOf(outer);
      if (interceptor === undefined) continue;
      const defaults = (interceptor as unknown as { defaultOptions?: ClassSerializerContextOptions }).defaultOptions;
      const contextOptions = (
        interceptor as unknown as { getContextOptions(c: ExecutionContext): ClassSerializerContextOptions | undefined }
      ).getContextOptions(context);
      serializers.push({ interceptor, options: { ...defaults, ...contextOptions } });
    }

    const name = `${controller.name}.${handler.name}()`;
    const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as number] ?? 'ALL';
    const paths = [Reflect.getMetadata(PATH_METADATA, controller), Reflect.getMetadata(PATH_METADATA, handler)];
    const path = paths
      .map((p) => (Array.isArray(p) ? p[0] : p))
      .filter((p): p is string => typeof p === 'string' && p !== '/' && p !== '')
      .map((p) => p.replace(/^\/+|\/+$/g, ''))
      .join('/');
    const retryAfter = options.retryAfterSeconds;
    return {
      options,
      replayHeaders: replayHeaderNames(options.replayHeaders),
      serializers,
      unsupported: unsupportedReason(controller, handler, handler.name),
      cacheError: cacheErrorPredicate(options),
      inFlight: prepareProblem(Problems.inFlight(), retryAfter),
      storeUnavailable: prepareProblem(Problems.storeUnavailable(), retryAfter),
      completionFailed: prepareProblem(Problems.completionFailed(), retryAfter),
      keyMissing: prepareProblem(Problems.keyMissing(options.headerName)),
      name,
      label: `${method} /${path}`,
    };
  }

  #serializerOf(interceptor: unknown): ClassSerializerInterceptor | undefined {
    if (interceptor instanceof ClassSerializerInterceptor) return interceptor;
    if (
      typeof interceptor === 'function' &&
      (interceptor === ClassSerializerInterceptor || interceptor.prototype instanceof ClassSerializerInterceptor)
    ) {
      // Bound as a class: Nest builds it with the Reflector and no default options, as here.
      return new (interceptor as new (reflector: Reflector) => ClassSerializerInterceptor)(this.reflector);
    }
    return undefined;
  }
}

/** The body to fingerprint: raw bytes when Nest keeps them, else canonical JSON of the parsed body. */
function requestBody(req: IdempotencyRequest): Uint8Array | string {
  const raw = req.rawBody;
  if (raw instanceof Uint8Array) return raw;
  const body = req.body;
  if (body === undefined) return '';
  if (typeof body === 'string' || body instanceof Uint8Array) return body;
  return canonicalJson(body) ?? '';
}

function cacheErrorPredicate(options: ResolvedIdempotencyOptions): (error: unknown) => boolean {
  const cacheErrors = options.cacheErrors;
  if (cacheErrors === true) return () => true;
  if (cacheErrors === false) return () => false;
  if (typeof cacheErrors === 'function') {
    const predicate = cacheErrors as (error: unknown) => boolean;
    // A predicate that throws must not leave the key blocked: the error is then not cached.
    return (error) => {
      try {
        return predicate(error) === true;
      } catch {
        return false;
      }
    };
  }
  const statuses = new Set(cacheErrors);
  return (error) => statuses.has(statusOfError(error));
}

function payloadBytes(payload: Payload): number {
  if (payload === undefined) return 0;
  return typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.byteLength;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
