import { ClaimBuilder } from './claim';
import type { StoreOperations } from './store-operations';
import { assertDuration } from './duration';
import { FencedOutcome } from './fenced-outcome';
import { FencingToken } from './fencing-token';
import { IdempotencyKey } from './idempotency-key';
import { AnyEntry, CompletedEntry, ProcessingEntry } from './idempotency-entry';
import { InsertResult } from './insert-result';

/** What a store can tell an operator of a live key (`IdempotencyStore.inspect`). */
export interface StoreKeyInfo {
  readonly state: 'processing' | 'completed';
  /** The token of the claim that made the entry: a release (`remove`) with it frees exactly that claim. */
  readonly fencingToken: FencingToken;
  /** What is left of the lease (processing) or of the replay window (completed), in ms. */
  readonly msLeft: number;
}

/**
 * The store contract, and the Nest injection token for the configured store
 * (`constructor(private readonly store: IdempotencyStore)` needs no `@Inject`).
 *
 * Every operation is atomic and safe to repeat. Fencing tokens start at 1 on a fresh store,
 * strictly increase per key across expiry and reclaim, and carry a random per-claim nonce that
 * `complete`, `remove` and `touch` must match.
 */
export abstract class IdempotencyStore implements StoreOperations {
  /** A short name for logs and traces, e.g. `memory` or `valkey`. */
  abstract readonly kind: string;

  /**
   * Atomically claims `key` with a processing entry that lives `entry.ttl` ms (the lease).
   * Answers `claimed` with a fresh fencing token, or `exists` with the live entry, which a failed
   * claim never modifies.
   */
  abstract tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult>;

  /**
   * Stores the response of the claim `fencingToken` holds, to live `ttlMs` from now.
   * `KeyExpired` if nothing is stored, `FencingMismatch` if another claim holds the key (checked
   * before the fingerprint), `FingerprintMismatch` if `entry` has another fingerprint, else
   * `Applied`. A completed entry is never replaced; the same holder completing again gets `Applied`.
   */
  abstract complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome>;

  /** Deletes the entry (processing or completed) if `fencingToken` holds it. */
  abstract remove(key: IdempotencyKey, fencingToken: FencingToken): Promise<FencedOutcome>;

  /**
   * Extends the processing lease held by `fencingToken` to `ttlMs` from now. Never extends a
   * completed entry: that answers `KeyExpired` (the lease is over) or `FencingMismatch`.
   */
  abstract touch(key: IdempotencyKey, fencingToken: FencingToken, ttlMs: number): Promise<FencedOutcome>;

  /** Deletes whatever is stored under `key`, unconditionally. */
  abstract purge(key: IdempotencyKey): Promise<void>;

  /** The live entry under `key`, without claiming it. */
  abstract get(key: IdempotencyKey): Promise<AnyEntry | undefined>;

  /**
   * Resolves when the entry under `key` may have changed (completed, released or expired), after
   * at most `timeoutMs`, or as soon as `signal` aborts: what a request waiting for a key in flight
   * (`waitMs`) sleeps on. It never rejects, and callers always re-check the key, so resolving early
   * costs only a read. Stores that can be told of changes override it (MemoryStore in process,
   * ValkeyStore through pub/sub); this default simply waits `timeoutMs`.
   */
  waitForChange(_key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Optional, for operators (`IdempotencyAdmin`): the state of the live entry under `key`, the
   * token of its claim and the time it has left, or `undefined` when there is none. A store
   * without it still works with `IdempotencyAdmin`, which then reads the state with `get()` and
   * cannot say the token or the time left. `MemoryStore` and `ValkeyStore` have it.
   */
  inspect?(key: IdempotencyKey): Promise<StoreKeyInfo | undefined>;

  /** Releases what the store opened itself. The default does nothing. */
  async close(): Promise<void> {}

  /** Checks the store answers; throws when it does not. The default does nothing. */
  async ping(): Promise<void> {}

  /**
   * Starts a claim of `key` with a processing lease of `leaseMs`:
   * `store.claim(key, 10_000).fingerprint('POST /charges', body).executeOrReplay(86_400_000, run)`.
   */
  claim(key: IdempotencyKey, leaseMs: number): ClaimBuilder {
    return new ClaimBuilder(this, key, assertDuration('leaseMs', leaseMs));
  }
}
