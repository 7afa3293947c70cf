import { Inject, Injectable, Logger } from '@nestjs/common';
import { fingerprintJson } from '../core/canonical-json';
import { type ClaimRefusal, type ClaimRequest, claimKey, runClaimed } from '../core/claim-engine';
import { assertDuration } from '../core/duration';
import { IdempotencyConflictError } from '../core/errors';
import { DefaultFingerprintStrategy } from '../core/fingerprint-strategy';
import { IdempotencyStore } from '../core/idempotency-store';
import { IdempotencyKey } from '../core/idempotency-key';
import { jsonValueOf, jsonValueResponse, unstorableValueResponse } from '../core/json-value';
import { CompletionFailedError } from '../core/lease';
import { storeKeyFor } from '../core/store-key';
import type { IdempotencyClaim } from '../core/idempotency-claim';
import { IDEMPOTENCY_OPTIONS } from '../idempotency.constants';
import { operationalStore, type ResolvedIdempotencyOptions } from '../idempotency.providers';
import { RequestReporter } from '../observability/request-reporter';

/** Options of {@link IdempotencyService.run}. */
export interface IdempotencyRunOptions {
  /**
   * What the call is about, as any JSON value: its canonical JSON is the fingerprint, so the
   * same key with a different `request` is refused (`key-reused`) instead of replayed.
   * @default undefined (every call with the key is the same request)
   */
  request?: unknown;
  /**
   * How long the value is kept and replayed, in ms.
   * @default the module's `ttlMs` (24 h)
   */
  ttlMs?: number;
  /**
   * The processing lease, in ms, renewed while `work` runs.
   * @default the module's `leaseMs` (10 s)
   */
  leaseMs?: number;
  /**
   * How long a call whose key is in flight waits for the first to end, in ms, instead of
   * throwing `in-flight` at once.
   * @default the module's `waitMs` (0)
   */
  waitMs?: number;
  /**
   * The principal or tenant the key belongs to: keys of different scopes never meet.
   * @default none
   */
  scope?: string;
  /** Stops waiting (`waitMs`) early; the call then throws `in-flight`. */
  signal?: AbortSignal;
}

/** What {@link IdempotencyService.run} answers. */
export interface IdempotencyRunResult<T> {
  /** The value of `work`, as JSON gives it back (the same on the first run and on replays). */
  readonly value: T;
  /** Whether the value is the stored one of an earlier run (`work` did not run now). */
  readonly replayed: boolean;
}

const strategy = new DefaultFingerprintStrategy();
const OPERATION = 'IdempotencyService.run';
const LABEL = 'IdempotencyService';

/**
 * At-most-once for service code: queue consumers, webhooks, cron jobs. `run(key, work)` runs
 * `work` once per key and hands every later call with that key the stored value.
 *
 * ```ts
 * const { value, replayed } = await this.idempotency.run(event.id, () => this.orders.fulfil(event), {
 *   request: event,
 * });
 * ```
 */
@Injectable()
export class IdempotencyService {
  private readonly logger = new Logger('Idempotency');
  readonly #store: IdempotencyStore;
  readonly #reporter: RequestReporter;

  constructor(
    store: IdempotencyStore,
    @Inject(IDEMPOTENCY_OPTIONS) private readonly options: ResolvedIdempotencyOptions,
  ) {
    this.#store = operationalStore(store, options);
    const logger = this.logger;
    this.#reporter = new RequestReporter(
      { warn: (m) => logger.warn(m), error: (m) => logger.error(m) },
      options.onEvent,
      store.kind,
      options.telemetry,
    );
  }

  /**
   * Runs `work` at most once for `key`, and stores its value (as JSON) for `ttlMs`.
   *
   * - First call: `work` runs with the claim (key, scoped store key, fencing token, lease signal);
   *   its value is stored, then answered with `replayed: false`.
   * - Later calls with the same key and `request`: the stored value, `replayed: true`.
   * - The same key with another `request`: throws {@link IdempotencyConflictError} `key-reused`.
   * - The key still in flight (after `waitMs`): throws {@link IdempotencyConflictError} `in-flight`.
   * - `work` throws: the key is released (a later call runs again) and the error is rethrown.
   *
   * @throws IdempotencyKeyError for a malformed key; IdempotencyStoreError when the store cannot
   *   be reached (nothing ran); CompletionFailedError when the value could not be stored yet (the
   *   key stays held and the store is retried in the background); TypeError when the value
   *   cannot be stored as JSON (the key is kept: later calls throw it too).
   */
  async run<T>(
    key: string | IdempotencyKey,
    work: (claim: IdempotencyClaim) => T | Promise<T>,
    options: IdempotencyRunOptions = {},
  ): Promise<IdempotencyRunResult<Awaited<T>>> {
    if (typeof work !== 'function') throw new TypeError('IdempotencyService.run: work must be a function');
    const clientKey = key instanceof IdempotencyKey ? key : new IdempotencyKey(key);
    const scope = options.scope;
    if (scope !== undefined && (typeof scope !== 'string' || scope.length === 0)) {
      throw new TypeError('IdempotencyService.run: scope must be a non-empty string');
    }
    const waitMs = options.waitMs ?? this.options.waitMs;
    if (!Number.isSafeInteger(waitMs) || waitMs < 0) {
      throw new RangeError(`IdempotencyService.run: waitMs must be a whole number from 0, got ${String(waitMs)}`);
    }
    const storeKey = storeKeyFor(clientKey, scope);
    const request: ClaimRequest = {
      store: this.#store,
      key: storeKey,
      fingerprint: strategy.compute(OPERATION, fingerprintJson(options.request) ?? ''),
      leaseMs: assertDuration('leaseMs', options.leaseMs ?? this.options.leaseMs),
      ttlMs: assertDuration('ttlMs', options.ttlMs ?? this.options.ttlMs),
      waitMs,
      waitSignal: () => options.signal,
    };
    const trace = this.#reporter.start(LABEL, storeKey);
    return this.#reporter.within(trace, async () => {
      let decision;
      try {
        decision = await claimKey(request);
      } catch (error) {
        this.#reporter.report('store-error', LABEL, storeKey, trace, { error });
        throw error;
      }
      if (decision.kind !== 'claimed') return this.#refused(decision, storeKey, trace);
      const outcome = await runClaimed<Awaited<T>>(request, decision, {
        run: (lease) =>
          work({
            key: clientKey,
            storeKey,
            fencingToken: lease.fencingToken,
            get signal() {
              return lease.signal;
            },
          }) as Promise<Awaited<T>>,
        capture: jsonValueResponse,
        unstorable: (_value, error) => unstorableValueResponse(error),
        notify: (event) => {
          if (event.type === 'lease-lost' || event.type === 'key-expired' || event.type === 'stale-completion') {
            this.#reporter.report(event.type, LABEL, storeKey, trace, { fencingToken: event.fencingToken }, false);
          } else if (event.type === 'completion-abandoned') {
            this.logger.error(`a value of IdempotencyService.run was never recorded: ${event.reason}`);
          }
        },
      });
      switch (outcome.kind) {
        case 'executed':
          this.#reporter.report('executed', LABEL, storeKey, trace, { fencingToken: outcome.fencingToken });
          if (outcome.unstorable !== undefined) throw jsonValueError(outcome.unstorable);
          return { value: jsonValueOf(outcome.response) as Awaited<T>, replayed: false };
        case 'released':
        case 'error-stored':
          this.#reporter.report('released', LABEL, storeKey, trace, { error: outcome.error });
          throw outcome.error;
        case 'deferred':
          this.#reporter.report('deferred', LABEL, storeKey, trace, { error: outcome.error });
          throw new CompletionFailedError(
            'the value could not be stored yet; the key stays held and the store is retried in the background',
            { cause: outcome.error },
          );
        default:
          return this.#refused(outcome, storeKey, trace);
      }
    });
  }

  #refused<T>(
    refusal: ClaimRefusal,
    storeKey: IdempotencyKey,
    trace: ReturnType<RequestReporter['start']>,
  ): IdempotencyRunResult<T> {
    this.#reporter.report(refusal.kind, LABEL, storeKey, trace);
    if (refusal.kind === 'replayed') return { value: jsonValueOf(refusal.response) as T, replayed: true };
    throw new IdempotencyConflictError(refusal.kind === 'in-flight' ? 'in-flight' : 'key-reused');
  }
}

function jsonValueError(reason: unknown): TypeError {
  return reason instanceof TypeError ? reason : new TypeError(String(reason));
}
