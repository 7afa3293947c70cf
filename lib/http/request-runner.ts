import { CallHandler, Logger, StreamableFile } from '@nestjs/common';
import { EmptyError, lastValueFrom } from 'rxjs';
import { type ClaimRefusal, type ClaimRequest, claimKey, runClaimed } from '../core/claim-engine';
import type { Fingerprint } from '../core/fingerprint';
import type { IdempotencyKey } from '../core/idempotency-key';
import type { ClaimedResult } from '../core/insert-result';
import type { StoreOperations } from '../core/store-operations';
import { messageOf, reportEngineEvent } from '../handler/engine-events';
import type { IdempotencyOutcome } from '../observability/idempotency-event';
import { signalWhenClientGone } from './client-gone';
import type { OutcomeDetails, RequestReporter, RequestTrace } from '../observability/request-reporter';
import { type HttpPlatform, type Payload, UnsupportedResultError } from './http-platform';
import { setClaim } from './idempotency-claim.decorator';
import { Problems, type PreparedProblem } from './problem-details';
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

/** One request to an `@Idempotent()` route that carries a valid key. @internal */
export interface GuardedRequest {
  readonly route: Route;
  readonly req: object;
  readonly res: unknown;
  /** The client's key, as sent. */
  readonly clientKey: IdempotencyKey;
  /** The store key: the client's key scoped to the principal, if any. */
  readonly key: IdempotencyKey;
  readonly fingerprint: Fingerprint;
  readonly trace: RequestTrace | undefined;
}

const NO_VALUE: unique symbol = Symbol('no value');
const LAST_VALUE = { defaultValue: NO_VALUE } as const;

/**
 * Runs one guarded request through the claim engine and turns each outcome into the HTTP answer:
 * the handler's response (sent only once it is stored), a replay, or a problem.
 * @internal
 */
export class RequestRunner {
  constructor(
    private readonly store: StoreOperations,
    private readonly platform: HttpPlatform,
    private readonly reporter: RequestReporter,
    private readonly logger: Logger,
  ) {}

  /** Claims the key and runs the handler (`next`), or answers with what the key holds. */
  async run(request: GuardedRequest, next: CallHandler): Promise<unknown> {
    const { route } = request;
    const options = route.options;
    const claim: ClaimRequest = {
      store: this.store,
      key: request.key,
      fingerprint: request.fingerprint,
      leaseMs: options.leaseMs,
      ttlMs: options.ttlMs,
      waitMs: options.waitMs,
      waitSignal: options.waitMs > 0 ? () => signalWhenClientGone(this.platform.rawResponse(request.res)) : undefined,
    };
    let decision;
    try {
      decision = await claimKey(claim);
    } catch (error) {
      if (options.failOpen) {
        this.#report('fail-open', request, { error });
        return lastValueFrom(next.handle());
      }
      this.#report('store-error', request, { error, statusCode: 503 });
      sendProblem(this.platform, request.res, route.storeUnavailable, options.throwProblems);
      return undefined;
    }
    if (decision.kind !== 'claimed') {
      this.#refuse(request, decision);
      return undefined;
    }
    return this.#runClaimed(request, next, claim, decision);
  }

  async #runClaimed(
    request: GuardedRequest,
    next: CallHandler,
    claim: ClaimRequest,
    claimed: ClaimedResult,
  ): Promise<unknown> {
    const { route, res } = request;
    const platform = this.platform;
    const maxBytes = route.options.maxResponseBytes;
    // What the handler sends, once its response is stored.
    let payload: Payload;
    // Headers on the response before the handler ran (middleware, CORS, @Header()): kept when the
    // answer turns out to be another run's.
    let headersBefore: readonly string[] = [];
    const outcome = await runClaimed(claim, claimed, {
      run: (lease) => {
        if (route.wantsClaim) {
          setClaim(request.req, {
            key: request.clientKey,
            storeKey: request.key,
            fencingToken: lease.fencingToken,
            get signal() {
              return lease.signal;
            },
          });
        }
        headersBefore = platform.headerNames(res);
        watchReplies(res as object);
        // Subscribed here, not through the Observable Nest holds: a client that goes away (or an
        // outer timeout) tears Nest's subscription down, and the result must still be recorded.
        return lastValueFrom(next.handle(), LAST_VALUE).then((value) => {
          if (value === NO_VALUE) throw new EmptyError();
          return value;
        });
      },
      capture: (value) => {
        const target = this.#target(request);
        let serialized = value;
        for (let i = 0; i < route.serializers.length; i++) {
          const { interceptor, options } = route.serializers[i];
          serialized = interceptor.serialize(serialized as object, options);
        }
        payload = platform.toPayload(target, serialized);
        // Too large to store: only a 413 marker is, so retries get 413 and the handler does not run again.
        return payloadBytes(payload) > maxBytes
          ? route.tooLarge
          : captureResponse(platform, target, payload, route.replayHeaders);
      },
      unstorable: (value, error) => {
        // The handler ran, so its side effects happened: the key is not released. A 500 problem
        // saying why is stored in place of the result, so a retry gets it and does not run again.
        const problem = route.prepare(Problems.unsupportedResult(this.#unsupportedMessage(route, value, error)));
        if (platform.isSent(res)) {
          payload = undefined;
        } else {
          platform.setStatus(res, problem.status);
          platform.setHeader(res, 'Content-Type', problem.contentType);
          payload = problem.body;
        }
        return problemResponse(problem);
      },
      cacheError: (error) => {
        if (error instanceof EmptyError || !route.cacheError(error)) return undefined;
        // Stores the response Nest's built-in exception filter renders for the error.
        const target = this.#target(request);
        const { status, body } = renderException(error);
        platform.setStatus(target, status);
        const rendered = platform.toPayload(target, body, status);
        return payloadBytes(rendered) > maxBytes
          ? route.tooLarge
          : captureResponse(platform, target, rendered, route.replayHeaders, status);
      },
      notify: (event) =>
        reportEngineEvent(
          {
            reporter: this.reporter,
            logger: this.logger,
            label: route.label,
            name: route.name,
            key: request.key,
            trace: request.trace,
          },
          event,
        ),
    });
    stopWatchingReplies(res as object);

    switch (outcome.kind) {
      case 'executed':
        this.#report('executed', request, {
          fencingToken: outcome.fencingToken,
          statusCode: outcome.response.statusCode,
        });
        if (!platform.isSent(res)) sendPayload(platform, res, payload);
        return undefined;
      case 'error-stored':
        this.#report('executed', request, {
          fencingToken: outcome.fencingToken,
          statusCode: outcome.response.statusCode,
        });
        // Nest's exception filter renders it, as it rendered what was stored.
        throw outcome.error;
      case 'released':
        this.#report('released', request, { error: outcome.error, fencingToken: claimed.fencingToken });
        throw outcome.error;
      case 'deferred':
        this.logger.error(
          `the result of ${route.name} could not be recorded yet (${messageOf(outcome.error)}); the key stays held ` +
            'and the store is retried in the background',
        );
        this.#report('deferred', request, {
          error: outcome.error,
          fencingToken: claimed.fencingToken,
          statusCode: 503,
        });
        this.#answerInstead(request, headersBefore, route.completionFailed);
        return undefined;
      default:
        this.#answerInstead(request, headersBefore, outcome);
        return undefined;
    }
  }

  /**
   * The response the handler's result is captured from: the live one, or, when something outside
   * answered the client before the handler finished (an outer timeout), a draft of what the
   * handler had set up.
   * @throws Error when the handler sent the response itself (nothing left to capture)
   */
  #target(request: GuardedRequest): unknown {
    const { res, route } = request;
    if (!this.platform.isSent(res)) return res;
    const snapshot = outerReply(res as object) ?? (route.handlesResponse ? undefined : route.declared());
    if (snapshot === undefined) throw new Error(`${route.name} sent its response itself, so it cannot be stored`);
    return new ResponseDraft(snapshot, res);
  }

  /**
   * Answers with something other than this run's result (another run's stored answer, 409, 422,
   * 503), without the headers the handler set (cookies, Location) but with those set before it.
   */
  #answerInstead(
    request: GuardedRequest,
    headersBefore: readonly string[],
    answer: ClaimRefusal | PreparedProblem,
  ): void {
    const { res } = request;
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
        this.#report('replayed', request, { statusCode: refusal.response.statusCode });
        sendReplay(this.platform, res, refusal.response);
        return;
      case 'in-flight':
        this.#report('in-flight', request, { statusCode: 409 });
        sendProblem(this.platform, res, route.inFlight, route.options.throwProblems);
        return;
      case 'fingerprint-mismatch':
        this.#report('fingerprint-mismatch', request, { statusCode: 422 });
        sendProblem(this.platform, res, route.keyReused, route.options.throwProblems);
        return;
    }
  }

  #report(type: IdempotencyOutcome, request: GuardedRequest, details?: OutcomeDetails, terminal = true): void {
    this.reporter.report(type, request.route.label, request.key, request.trace, details, terminal);
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
}

function payloadBytes(payload: Payload): number {
  if (payload === undefined) return 0;
  return typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.byteLength;
}
