import { Inject, Injectable, Logger } from '@nestjs/common';
import { fingerprintJson } from '../core/canonical-json';
import { assertDuration } from '../core/duration';
import { IdempotencyConflictError } from '../core/errors';
import { DefaultFingerprintStrategy } from '../core/fingerprint-strategy';
import { IdempotencyStore } from '../core/idempotency-store';
import { IdempotencyKey } from '../core/idempotency-key';
import { CompletionFailedError } from '../core/lease';
import { clientKeyFor, storeKeyFor } from '../core/store-key';
import type { IdempotencyClaim } from '../core/idempotency-claim';
import { IDEMPOTENCY_OPTIONS } from '../idempotency.constants';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import { CallEngines } from '../calls/call-engines';
import { canRunInTransaction } from '../core/claim-engine';
import type { ValueRunner } from '../calls/value-runner';

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

/**
 * What a value becomes through JSON (`JSON.parse(JSON.stringify(value))`), as
 * {@link IdempotencyService.run} hands it back: a `Date` (anything with `toJSON()`) becomes what
 * `toJSON()` returns (a `Date` its ISO string), functions are left out, arrays and objects are
 * turned member by member.
 */
export type Jsonified<T> = T extends { toJSON(): infer J }
  ? Jsonified<J>
  : T extends string | number | boolean | null | undefined
    ? T
    : T extends (...args: never[]) => unknown
      ? never
      : T extends readonly (infer E)[]
        ? Jsonified<E>[]
        : T extends object
          ? { [K in keyof T as T[K] extends (...args: never[]) => unknown ? never : K]: Jsonified<T[K]> }
          : never;

/** What {@link IdempotencyService.run} answers. */
export interface IdempotencyRunResult<T> {
  /**
   * The value of `work`, as JSON gives it back (the same on the first run and on replays): typed
   * as {@link Jsonified} by `run`, so a `Date` is a `string` to the compiler too.
   */
  readonly value: T;
  /** Whether the value is the stored one of an earlier run (`work` did not run now). */
  readonly replayed: boolean;
}

const strategy = new DefaultFingerprintStrategy();
const OPERATION = 'IdempotencyService.run';

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
  readonly #runner: ValueRunner;

  constructor(
    store: IdempotencyStore,
    @Inject(IDEMPOTENCY_OPTIONS) private readonly options: ResolvedIdempotencyOptions,
  ) {
    this.#runner = new CallEngines(store, options, this.logger).valueRunner;
    this.#transactional = canRunInTransaction(store);
  }

  readonly #transactional: boolean;

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
   *   cannot be stored as JSON (the key is kept: later calls throw it too);
   *   IdempotencyValueTooLargeError for later calls when the first run's value was over
   *   `maxResponseBytes` (the first call got it; only a marker is stored).
   */
  async run<T>(
    key: string | IdempotencyKey,
    work: (claim: IdempotencyClaim) => T | Promise<T>,
    options: IdempotencyRunOptions = {},
  ): Promise<IdempotencyRunResult<Jsonified<Awaited<T>>>> {
    if (typeof work !== 'function') throw new TypeError('IdempotencyService.run: work must be a function');
    const clientKey = key instanceof IdempotencyKey ? key : clientKeyFor(key, this.options.maxKeyLength);
    const scope = options.scope;
    if (scope !== undefined && (typeof scope !== 'string' || scope.length === 0)) {
      throw new TypeError('IdempotencyService.run: scope must be a non-empty string');
    }
    const waitMs = options.waitMs ?? this.options.waitMs;
    if (!Number.isSafeInteger(waitMs) || waitMs < 0) {
      throw new RangeError(`IdempotencyService.run: waitMs must be a whole number from 0, got ${String(waitMs)}`);
    }
    const answer = await this.#runner.run(
      {
        options: {
          ...this.options,
          leaseMs: assertDuration('leaseMs', options.leaseMs ?? this.options.leaseMs),
          ttlMs: assertDuration('ttlMs', options.ttlMs ?? this.options.ttlMs),
          waitMs,
          // Service calls never run unguarded: a store that cannot be reached is an error.
          failOpen: false,
        },
        clientKey,
        key: storeKeyFor(clientKey, scope),
        fingerprint: strategy.compute(OPERATION, fingerprintJson(options.request) ?? ''),
        label: 'IdempotencyService',
        name: OPERATION,
        stores: 'json',
        firstValue: 'as-stored',
        claimFor: undefined,
        waitSignal: () => options.signal,
        // With a store that can (PostgresStore), the work runs in a transaction with its result.
        transactional: this.#transactional,
      },
      (claim) => work(claim!),
    );
    if (answer.kind === 'value') return { value: answer.value as Jsonified<Awaited<T>>, replayed: answer.replayed };
    switch (answer.reason) {
      case 'in-flight':
      case 'key-reused':
        throw new IdempotencyConflictError(answer.reason);
      case 'store-unavailable':
        throw answer.error;
      case 'completion-failed':
        throw new CompletionFailedError(
          'the value could not be stored yet; the key stays held and the store is retried in the background',
          { cause: answer.error },
        );
      case 'unsupported-result':
        throw answer.error instanceof TypeError ? answer.error : new TypeError(answer.detail);
      case 'response-too-large':
      case 'record-unreadable':
        throw answer.error;
    }
  }
}
