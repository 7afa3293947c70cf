import type { Logger } from '@nestjs/common';
import { isObservable, lastValueFrom } from 'rxjs';
import type { CachedResponse } from '../core/cached-response';
import {
  type ClaimRefusal,
  type ClaimRequest,
  claimKey,
  failedAfterInFlight,
  runClaimed,
  type RunOutcome,
} from '../core/claim-engine';
import type { Fingerprint } from '../core/fingerprint';
import type { IdempotencyClaim, IdempotencyTransactionClient } from '../core/idempotency-claim';
import type { IdempotencyKey } from '../core/idempotency-key';
import {
  boundedValueResponse,
  type JsonReviveOptions,
  jsonValueOf,
  jsonValueResponse,
  type JsonValueOptions,
  unstorableValueResponse,
} from '../core/json-value';
import { bodySize } from '../core/cached-response';
import { IdempotencyValueTooLargeError, SealedRecordError } from '../core/errors';
import type { StoreOperations } from '../core/store-operations';
import { unstoredResultOf } from '../core/unstored-results';
import { setClaim } from './idempotency-claim.decorator';
import { messageOf } from '../core/errors';
import { logDeferred, reportEngineEvent } from './engine-events';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import type { IdempotencyOutcome } from '../observability/idempotency-event';
import type { OutcomeDetails, RequestReporter, RequestTrace } from '../observability/request-reporter';

/** One call of a message handler or resolver that carries a valid key. @internal */
export interface ValueCall {
  readonly options: ResolvedIdempotencyOptions;
  /** The client's key, as sent. */
  readonly clientKey: IdempotencyKey;
  /** The store key: the client's key scoped to the principal, if any. */
  readonly key: IdempotencyKey;
  readonly fingerprint: Fingerprint;
  /** What telemetry and events name the handler by, e.g. `MESSAGE {"cmd":"charge"}`. */
  readonly label: string;
  /** `Class.method()`, for logs. */
  readonly name: string;
  /** What is stored: the handler's value as JSON (message handlers, resolvers), or only that it ran (events). */
  readonly stores: 'json' | 'nothing';
  /**
   * How the value is stored as JSON and comes back: resolvers keep `Date`s (GraphQL scalars
   * serialise them) and the GraphQL types of objects (unions and interfaces resolve by them).
   */
  readonly json?: JsonValueOptions & JsonReviveOptions;
  /**
   * What a first run answers: the handler's value as it returned it (`as-returned`: message
   * handlers, resolvers), or its JSON round trip, as replays answer it (`as-stored`: services, so
   * callers never see two shapes).
   * @default 'as-returned'
   */
  readonly firstValue?: 'as-returned' | 'as-stored';
  /** Where `@IdempotencyClaim()` parameters find the claim (see `callToken`), when they are asked for. */
  readonly claimFor: object | undefined;
  /** Stops a wait (`waitMs`) early: the caller went away. */
  readonly waitSignal?: () => AbortSignal | undefined;
  /**
   * Whether a call whose key is in flight in another instance (not in this runner) waits for
   * that run to end, however long it runs, rather than refusing in-flight after `waitMs`: for
   * message handlers, whose transport may deliver one request to several replicas at once. A key
   * in flight in this runner is a retry: `waitMs` applies.
   * @default false
   */
  readonly waitsForOtherInstances?: boolean;
  /**
   * Whether the handler runs in a transaction of the store with its result (a `PostgresStore`),
   * handed to it as the claim's `transaction`.
   * @default false
   */
  readonly transactional?: boolean;
}

/** Why a call was answered with a problem instead of a value. */
export type ValueRefusal =
  | 'in-flight'
  | 'key-reused'
  | 'store-unavailable'
  | 'completion-failed'
  | 'unsupported-result'
  | 'response-too-large'
  | 'record-unreadable';

/** What a guarded call comes to. @internal */
export type ValueAnswer =
  /** The handler's value (`replayed: false`: it ran now, as it returned it; else the stored JSON, parsed). */
  | { readonly kind: 'value'; readonly value: unknown; readonly replayed: boolean }
  /**
   * Not the value: `detail` says more, for `unsupported-result`; `error` is the store's error for
   * `store-unavailable` and `completion-failed`.
   */
  | { readonly kind: 'refused'; readonly reason: ValueRefusal; readonly detail?: string; readonly error?: unknown };

const NONE = { defaultValue: undefined } as const;
const REFUSED_IN_FLIGHT: ValueAnswer = Object.freeze({ kind: 'refused', reason: 'in-flight' });
const REFUSED_KEY_REUSED: ValueAnswer = Object.freeze({ kind: 'refused', reason: 'key-reused' });
const DONE = jsonValueResponse(undefined);

/**
 * Runs one guarded call of a message handler or resolver through the claim engine and turns each
 * outcome into a value or a refusal, which the entry point turns into its own answer (an
 * RpcException, a GraphQLError, an acknowledged event). Values are stored as JSON, as
 * `IdempotencyService.run` stores them; a handler that throws releases the key and the error is
 * rethrown.
 * @internal
 */
export class ValueRunner {
  constructor(
    private readonly store: StoreOperations,
    private readonly reporter: RequestReporter,
    private readonly logger: Logger,
  ) {}

  /**
   * Claims the key and runs `handler` (with the claim it holds; `undefined` when it runs unguarded
   * under `failOpen`), or answers with what the key holds.
   */
  async run(call: ValueCall, handler: (claim: IdempotencyClaim | undefined) => unknown): Promise<ValueAnswer> {
    const { options } = call;
    const trace = this.reporter.start(call.label, call.key);
    return this.reporter.within(trace, () => this.#run(call, handler, options, trace));
  }

  async #run(
    call: ValueCall,
    handler: (claim: IdempotencyClaim | undefined) => unknown,
    options: ResolvedIdempotencyOptions,
    trace: RequestTrace | undefined,
  ): Promise<ValueAnswer> {
    const id = call.key.toString();
    const claim: ClaimRequest = {
      store: this.store,
      key: call.key,
      fingerprint: call.fingerprint,
      leaseMs: options.leaseMs,
      ttlMs: options.ttlMs,
      // In flight elsewhere: as long as the other run's lease is kept, up to the replay window.
      // Running here, or its result held here unstored: a retry.
      waitMs:
        call.waitsForOtherInstances === true &&
        !this.#running.has(id) &&
        unstoredResultOf(this.store, call.key) === undefined
          ? Math.max(options.waitMs, options.ttlMs)
          : options.waitMs,
      waitSignal: call.waitSignal,
    };
    let decision;
    try {
      decision = await claimKey(claim);
    } catch (error) {
      if (error instanceof SealedRecordError) {
        // The key was done, but its answer cannot be opened: refused, never run again.
        this.#report('store-error', call, trace, { error, statusCode: 500 });
        return { kind: 'refused', reason: 'record-unreadable', error };
      }
      // Never unguarded once the key was seen in flight: the first run may still be going on.
      if (options.failOpen && !failedAfterInFlight(error)) {
        this.#report('fail-open', call, trace, { error });
        return { kind: 'value', value: await valueOf(() => handler(undefined)), replayed: false };
      }
      this.#report('store-error', call, trace, { error, statusCode: 503 });
      return { kind: 'refused', reason: 'store-unavailable', error };
    }
    if (decision.kind !== 'claimed') return this.#refused(call, decision, trace);

    const capture = call.stores === 'nothing' ? () => DONE : (value: unknown) => jsonValueResponse(value, call.json);
    // What the handler's value came to, when it was too large to store (only a marker is).
    let oversized: CachedResponse | undefined;
    let outcome: RunOutcome<unknown>;
    this.#running.set(id, (this.#running.get(id) ?? 0) + 1);
    try {
      outcome = await runClaimed(claim, decision, {
        transactional: call.transactional === true,
        run: (lease, transaction) => {
          const claimed: IdempotencyClaim = {
            key: call.clientKey,
            storeKey: call.key,
            fencingToken: lease.fencingToken,
            get signal() {
              return lease.signal;
            },
            transaction: transaction?.client as IdempotencyTransactionClient | undefined,
          };
          if (call.claimFor !== undefined) setClaim(call.claimFor, claimed);
          return valueOf(() => handler(claimed));
        },
        capture: (value) => {
          const response = capture(value);
          const stored = boundedValueResponse(response, options.maxResponseBytes);
          if (stored !== response) oversized = response;
          return stored;
        },
        unstorable: (_value, error) => unstorableValueResponse(error),
        notify: (event) =>
          reportEngineEvent(
            { reporter: this.reporter, logger: this.logger, label: call.label, name: call.name, key: call.key, trace },
            event,
          ),
      });
    } catch (error) {
      // The claim could not be renewed before the handler ran: it did not run.
      this.#report('store-error', call, trace, { error, statusCode: 503 });
      return { kind: 'refused', reason: 'store-unavailable', error };
    } finally {
      const left = this.#running.get(id)! - 1;
      if (left === 0) this.#running.delete(id);
      else this.#running.set(id, left);
    }
    switch (outcome.kind) {
      case 'executed':
        this.#report('executed', call, trace, { fencingToken: outcome.fencingToken });
        if (outcome.unstorable !== undefined) {
          const detail = `the result of ${call.name} cannot be stored for replay as JSON: ${messageOf(outcome.unstorable)}.`;
          this.logger.error(detail);
          return { kind: 'refused', reason: 'unsupported-result', detail, error: outcome.unstorable };
        }
        if (oversized !== undefined) this.#warnOversized(call, bodySize(oversized), options.maxResponseBytes);
        return {
          kind: 'value',
          value:
            call.firstValue === 'as-stored' ? jsonValueOf(oversized ?? outcome.response, call.json) : outcome.value,
          replayed: false,
        };
      case 'released':
      case 'error-stored':
        this.#report('released', call, trace, { error: outcome.error, fencingToken: decision.fencingToken });
        throw outcome.error;
      case 'deferred':
        logDeferred(this.logger, call.name, outcome.error);
        this.#report('deferred', call, trace, { error: outcome.error, fencingToken: decision.fencingToken });
        return { kind: 'refused', reason: 'completion-failed', error: outcome.error };
      case 'rolled-back':
        // Nothing of the run persisted and the key is free: the caller may retry.
        this.#report('store-error', call, trace, { error: outcome.error, statusCode: 503 });
        return { kind: 'refused', reason: 'store-unavailable', error: outcome.error };
      default:
        return this.#refused(call, outcome, trace);
    }
  }

  #refused(call: ValueCall, refusal: ClaimRefusal, trace: RequestTrace | undefined): ValueAnswer {
    switch (refusal.kind) {
      case 'replayed': {
        this.#report('replayed', call, trace);
        if (call.stores === 'nothing') return { kind: 'value', value: undefined, replayed: true };
        try {
          return { kind: 'value', value: jsonValueOf(refusal.response, call.json), replayed: true };
        } catch (error) {
          if (error instanceof IdempotencyValueTooLargeError) {
            return { kind: 'refused', reason: 'response-too-large', detail: error.message, error };
          }
          if (!(error instanceof TypeError)) throw error;
          return { kind: 'refused', reason: 'unsupported-result', detail: error.message, error };
        }
      }
      case 'in-flight':
        this.#report('in-flight', call, trace, { statusCode: 409 });
        return REFUSED_IN_FLIGHT;
      case 'fingerprint-mismatch':
        this.#report('fingerprint-mismatch', call, trace, { statusCode: 422 });
        return REFUSED_KEY_REUSED;
    }
  }

  /**
   * Says (once per handler) that a value was over `maxResponseBytes`: its caller got it, but only
   * a marker is stored, so later calls with the key are refused (413) and never run it again.
   */
  #warnOversized(call: ValueCall, bytes: number, limit: number): void {
    if (this.#warnedOversized.has(call.name)) return;
    this.#warnedOversized.add(call.name);
    this.logger.warn(
      `${call.name} returned a value of ${bytes} bytes as JSON, over maxResponseBytes (${limit}): its caller ` +
        'got it, but only a marker is stored, so later calls with its key are refused (413, response-too-large) ' +
        'and it does not run again. Raise maxResponseBytes, or return less.',
    );
  }

  readonly #warnedOversized = new Set<string>();
  /** The store keys of the calls this runner is running under a claim, with how many. */
  readonly #running = new Map<string, number>();

  #report(
    type: IdempotencyOutcome,
    call: ValueCall,
    trace: RequestTrace | undefined,
    details?: OutcomeDetails,
    terminal = true,
  ): void {
    this.reporter.report(type, call.label, call.key, trace, details, terminal);
  }
}

/** The handler's value: what it returns, awaited, or the last value of an Observable (`undefined` for none). */
async function valueOf(handler: () => unknown): Promise<unknown> {
  const result = await handler();
  return isObservable(result) ? lastValueFrom(result, NONE) : result;
}
