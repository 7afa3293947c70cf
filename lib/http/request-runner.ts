import { CallHandler, Logger, StreamableFile } from '@nestjs/common';
import { EmptyError, isObservable, lastValueFrom, type Observable } from 'rxjs';
import type { CachedResponse } from '../core/cached-response';
import {
  type Claimed,
  type ClaimDecision,
  type ClaimedWork,
  type ClaimRefusal,
  type ClaimRequest,
  claimKeyNow,
  type EngineEvent,
  failedAfterInFlight,
  type RunOutcome,
  runClaimedNow,
} from '../core/claim-engine';
import type { FencingToken } from '../core/fencing-token';
import type { Fingerprint } from '../core/fingerprint';
import type { IdempotencyKey } from '../core/idempotency-key';
import type { Lease } from '../core/lease';
import type { StoreTransaction } from '../core/store-transaction';
import type { IdempotencyTransactionClient } from '../core/idempotency-claim';
import type { StoreOperations } from '../core/store-operations';
import { messageOf, SealedRecordError } from '../core/errors';
import { logDeferred, reportEngineEvent } from '../calls/engine-events';
import type { IdempotencyOutcome } from '../observability/idempotency-event';
import { signalWhenClientGone } from '../calls/client-gone';
import type { OutcomeDetails, RequestReporter, RequestTrace } from '../observability/request-reporter';
import { type HttpPlatform, type Payload, UnsupportedResultError } from './http-platform';
import { setClaim } from '../calls/idempotency-claim.decorator';
import { Problems, type PreparedProblem } from '../calls/problem-details';
import { outerReply, stopWatchingReplies, watchReplies } from './reply-guard';
import { ResponseDraft } from './response-draft';
import {
  captureResponse,
  problemResponse,
  renderException,
  sendPayload,
  sendProblem,
  sendReplay,
} from './response-capture';
import type { Route } from './route-config';

const NO_VALUE: unique symbol = Symbol('no value');
const LAST_VALUE = { defaultValue: NO_VALUE } as const;

/**
 * One request to an `@Idempotent()` route that carries a valid key: what the claim engine claims
 * (a `ClaimRequest`) and the work it runs under the claim (a `ClaimedWork`), in one object per
 * request. @internal
 */
export class GuardedRequest implements ClaimRequest, ClaimedWork<unknown> {
  readonly store: StoreOperations;
  readonly leaseMs: number;
  readonly ttlMs: number;
  readonly waitMs: number;
  /** What the handler sends, once its response is stored. */
  payload: Payload;
  /**
   * Headers on the response before the handler ran (middleware, CORS, @Header()): kept when the
   * answer turns out to be another run's.
   */
  headersBefore: readonly string[] = NO_HEADERS;
  /** Whether a reply Nest sends meanwhile is being watched for (the handler went asynchronous). */
  watching = false;
  /** Whether the handler runs in a transaction with its result (`@IdempotencyTransaction()`). */
  readonly transactional: boolean;

  constructor(
    readonly runner: RequestRunner,
    readonly route: Route,
    readonly req: object,
    readonly res: unknown,
    /** The client's key, as sent. */
    readonly clientKey: IdempotencyKey,
    /** The store key: the client's key scoped to the principal, if any. */
    readonly key: IdempotencyKey,
    readonly fingerprint: Fingerprint,
    readonly trace: RequestTrace | undefined,
    /** Calls the handler: its value, a Promise or an Observable (of the value). */
    readonly invoke: () => unknown,
  ) {
    const options = route.options;
    this.store = runner.store;
    this.leaseMs = options.leaseMs;
    this.ttlMs = options.ttlMs;
    this.waitMs = options.waitMs;
    this.transactional = route.wantsTransaction;
  }

  waitSignal(): AbortSignal {
    return signalWhenClientGone(this.runner.platform.rawResponse(this.res));
  }

  run(lease: Lease, transaction?: StoreTransaction): unknown {
    if (this.route.wantsClaim) {
      setClaim(this.req, {
        key: this.clientKey,
        storeKey: this.key,
        fencingToken: lease.fencingToken,
        get signal() {
          return lease.signal;
        },
        transaction: transaction?.client as IdempotencyTransactionClient | undefined,
      });
    }
    const res = this.res;
    this.headersBefore = this.runner.platform.headerNames(res);
    const result = this.invoke();
    if (isObservable(result)) {
      this.#watch();
      return lastValue(result);
    }
    if (typeof (result as PromiseLike<unknown> | null | undefined)?.then === 'function') {
      this.#watch();
      return Promise.resolve(result).then((value) => (isObservable(value) ? lastValue(value) : value));
    }
    // A value at once: nothing can have answered the client meanwhile.
    return result;
  }

  capture(value: unknown): CachedResponse {
    const { route, runner } = this;
    const platform = runner.platform;
    const target = this.#target();
    let serialized = value;
    for (let i = 0; i < route.serializers.length; i++) {
      const { interceptor, options } = route.serializers[i];
      serialized = interceptor.serialize(serialized as object, options);
    }
    const payload = platform.toPayload(target, serialized);
    this.payload = payload;
    // Too large to store: only a 413 marker is, so retries get 413 and the handler does not run again.
    const bytes = payloadBytes(payload);
    if (bytes > route.options.maxResponseBytes) {
      runner.warnOversized(route, bytes);
      return route.tooLarge;
    }
    return captureResponse(platform, target, payload, route.replayHeaders);
  }

  unstorable(value: unknown, error: unknown): CachedResponse {
    // The handler ran, so its side effects happened: the key is not released. A 500 problem
    // saying why is stored in place of the result, so a retry gets it and does not run again.
    const { route, runner, res } = this;
    const platform = runner.platform;
    const problem = route.prepare(Problems.unsupportedResult(this.#unsupportedMessage(value, error)));
    if (platform.isSent(res)) {
      this.payload = undefined;
    } else {
      platform.setStatus(res, problem.status);
      platform.setHeader(res, 'Content-Type', problem.contentType);
      this.payload = problem.body;
    }
    return problemResponse(problem);
  }

  cacheError(error: unknown): CachedResponse | undefined {
    const route = this.route;
    if (error instanceof EmptyError || !route.cacheError(error)) return undefined;
    // Stores the response Nest's built-in exception filter renders for the error.
    const platform = this.runner.platform;
    const target = this.#target();
    const { status, body } = renderException(error);
    platform.setStatus(target, status);
    const rendered = platform.toPayload(target, body, status);
    return payloadBytes(rendered) > route.options.maxResponseBytes
      ? route.tooLarge
      : captureResponse(platform, target, rendered, route.replayHeaders, status);
  }

  notify(event: EngineEvent): void {
    const { route, runner } = this;
    reportEngineEvent(
      {
        reporter: runner.reporter,
        logger: runner.logger,
        label: route.label,
        name: route.name,
        key: this.key,
        trace: this.trace,
      },
      event,
    );
  }

  /**
   * The response the handler's result is captured from: the live one, or, when something outside
   * answered the client before the handler finished (an outer timeout), a draft of what the
   * handler had set up.
   * @throws Error when the handler sent the response itself (nothing left to capture)
   */
  #target(): unknown {
    const { res, route } = this;
    if (!this.runner.platform.isSent(res)) return res;
    const snapshot = outerReply(res as object) ?? (route.handlesResponse ? undefined : route.declared());
    if (snapshot === undefined) throw new Error(`${route.name} sent its response itself, so it cannot be stored`);
    return new ResponseDraft(snapshot, res);
  }

  /** Why the handler's result cannot be stored, for the developer; releases a returned stream. */
  #unsupportedMessage(value: unknown, error: unknown): string {
    const route = this.route;
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
    this.runner.logger.error(message);
    return message;
  }

  #watch(): void {
    this.watching = true;
    watchReplies(this.res as object);
  }
}

const NO_HEADERS: readonly string[] = Object.freeze([]);

/** The last value `source` emits, as Nest reads a handler's Observable; `EmptyError` when none. */
function lastValue(source: Observable<unknown>): Promise<unknown> {
  // Subscribed here, not through the Observable Nest holds: a client that goes away (or an outer
  // timeout) tears Nest's subscription down, and the result must still be recorded.
  return lastValueFrom(source, LAST_VALUE).then((value) => {
    if (value === NO_VALUE) throw new EmptyError();
    return value;
  });
}

/**
 * Runs one guarded request through the claim engine and turns each outcome into the HTTP answer:
 * the handler's response (sent only once it is stored), a replay, or a problem. A request whose
 * claim and handler answer at once (the in-process store, a handler that returns a value) is
 * answered before `run` returns, without a promise.
 * @internal
 */
export class RequestRunner {
  constructor(
    readonly store: StoreOperations,
    readonly platform: HttpPlatform,
    readonly reporter: RequestReporter,
    readonly logger: Logger,
  ) {}

  /**
   * Claims the key and runs the handler (`invoke`, or `next` for `failOpen`), or answers with
   * what the key holds. Answers (or settles with) `undefined` once the response is sent.
   */
  run(
    route: Route,
    req: object,
    res: unknown,
    clientKey: IdempotencyKey,
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    trace: RequestTrace | undefined,
    next: CallHandler,
    invoke: () => unknown,
  ): Promise<unknown> | undefined {
    const request = new GuardedRequest(this, route, req, res, clientKey, key, fingerprint, trace, invoke);
    let decision: ClaimDecision | Promise<ClaimDecision>;
    try {
      decision = claimKeyNow(request);
    } catch (error) {
      return this.#storeFailed(request, next, error);
    }
    if (decision instanceof Promise) {
      return decision.then(
        (d) => this.#decided(request, d),
        (error: unknown) => this.#storeFailed(request, next, error),
      );
    }
    return this.#decided(request, decision);
  }

  /** The store failed before the handler ran; `next` runs it unguarded under `failOpen`, when allowed. */
  /**
   * Says (once per route) that a response was over `maxResponseBytes`: its client got it in full,
   * but only a 413 marker is stored, so retries of its key get 413 and the handler does not run again.
   */
  warnOversized(route: Route, bytes: number): void {
    if (this.#warnedOversized.has(route)) return;
    this.#warnedOversized.add(route);
    this.logger.warn(
      `${route.name} answered ${bytes} bytes, over maxResponseBytes (${route.options.maxResponseBytes}): the ` +
        'client got the response, but only a 413 problem is stored for its key, so retries get 413 and the ' +
        'handler does not run again. Raise maxResponseBytes, or answer less.',
    );
  }

  readonly #warnedOversized = new WeakSet<Route>();

  #storeFailed(request: GuardedRequest, next: CallHandler | undefined, error: unknown): Promise<unknown> | undefined {
    const { route } = request;
    const options = route.options;
    if (error instanceof SealedRecordError) {
      // The key was done, but its answer cannot be opened: refused, never run again.
      this.#report('store-error', request, undefined, 500, error);
      sendProblem(this.platform, request.res, route.recordUnreadable, options.throwProblems);
      return undefined;
    }
    // Never unguarded once the key was seen in flight: the first run may still be going on.
    if (options.failOpen && next !== undefined && !failedAfterInFlight(error)) {
      this.#report('fail-open', request, undefined, undefined, error);
      return lastValueFrom(next.handle());
    }
    this.#report('store-error', request, undefined, 503, error);
    sendProblem(this.platform, request.res, route.storeUnavailable, options.throwProblems);
    return undefined;
  }

  #decided(request: GuardedRequest, decision: ClaimDecision): Promise<undefined> | undefined {
    if (decision.kind !== 'claimed') {
      this.#refuse(request, decision);
      return undefined;
    }
    const outcome = runClaimedNow(request, decision, request);
    if (outcome instanceof Promise) {
      return outcome.then(
        (o) => this.#finish(request, decision, o),
        // The claim could not be renewed before the handler ran: it did not run.
        (error: unknown) => {
          this.#storeFailed(request, undefined, error);
          return undefined;
        },
      );
    }
    return this.#finish(request, decision, outcome);
  }

  #finish(request: GuardedRequest, claimed: Claimed, outcome: RunOutcome<unknown>): undefined {
    const { route, res } = request;
    const platform = this.platform;
    if (request.watching) stopWatchingReplies(res as object);

    switch (outcome.kind) {
      case 'executed':
        this.#report('executed', request, outcome.fencingToken, outcome.response.statusCode);
        if (!platform.isSent(res)) sendPayload(platform, res, request.payload);
        return undefined;
      case 'error-stored':
        this.#report('executed', request, outcome.fencingToken, outcome.response.statusCode);
        // Nest's exception filter renders it, as it rendered what was stored.
        throw outcome.error;
      case 'released':
        this.#report('released', request, claimed.fencingToken, undefined, outcome.error);
        throw outcome.error;
      case 'deferred':
        logDeferred(this.logger, route.name, outcome.error);
        this.#report('deferred', request, claimed.fencingToken, 503, outcome.error);
        this.#answerInstead(request, route.completionFailed);
        return undefined;
      case 'rolled-back':
        // Nothing of the run persisted and the key is free: the client may retry.
        this.#report('store-error', request, claimed.fencingToken, 503, outcome.error);
        this.#answerInstead(request, route.storeUnavailable);
        return undefined;
      default:
        this.#answerInstead(request, outcome);
        return undefined;
    }
  }

  /**
   * Answers with something other than this run's result (another run's stored answer, 409, 422,
   * 503), without the headers the handler set (cookies, Location) but with those set before it.
   */
  #answerInstead(request: GuardedRequest, answer: ClaimRefusal | PreparedProblem): void {
    const { res, headersBefore } = request;
    const platform = this.platform;
    if (platform.isSent(res)) return;
    for (const name of platform.headerNames(res)) {
      if (!headersBefore.includes(name)) platform.removeHeader(res, name);
    }
    if ('kind' in answer) this.#refuse(request, answer);
    else sendProblem(platform, res, answer, request.route.options.throwProblems);
  }

  #refuse(request: GuardedRequest, refusal: ClaimRefusal): void {
    const { res, route } = request;
    switch (refusal.kind) {
      case 'replayed':
        this.#report('replayed', request, undefined, refusal.response.statusCode);
        sendReplay(this.platform, res, refusal.response, route.options.replayHeaders !== false);
        return;
      case 'in-flight':
        this.#report('in-flight', request, undefined, 409);
        sendProblem(this.platform, res, route.inFlight, route.options.throwProblems);
        return;
      case 'fingerprint-mismatch':
        this.#report('fingerprint-mismatch', request, undefined, 422);
        sendProblem(this.platform, res, route.keyReused, route.options.throwProblems);
        return;
    }
  }

  #report(
    type: IdempotencyOutcome,
    request: GuardedRequest,
    fencingToken?: FencingToken,
    statusCode?: number,
    error?: unknown,
    terminal = true,
  ): void {
    const reporter = this.reporter;
    // Most requests have nobody to tell: no details are gathered for them.
    if (request.trace === undefined && reporter.quiet(type)) return;
    const details: OutcomeDetails = { fencingToken, statusCode, error };
    reporter.report(type, request.route.label, request.key, request.trace, details, terminal);
  }
}

function payloadBytes(payload: Payload): number {
  if (payload === undefined) return 0;
  return typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.byteLength;
}
