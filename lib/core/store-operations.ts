import type { FencedOutcome } from './fenced-outcome';
import type { FencingToken } from './fencing-token';
import type { AnyEntry, CompletedEntry, ProcessingEntry } from './idempotency-entry';
import type { IdempotencyKey } from './idempotency-key';
import type { InsertResult } from './insert-result';

/**
 * The operations the claim protocol uses, as `IdempotencyStore` declares them. The engine, the
 * lease and the claim builder depend on this shape rather than on the abstract class, so the store
 * contract (which offers `claim()`) and the protocol do not import each other.
 * @internal
 */
export interface StoreOperations {
  readonly kind: string;
  tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult>;
  complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome>;
  remove(key: IdempotencyKey, fencingToken: FencingToken): Promise<FencedOutcome>;
  touch(key: IdempotencyKey, fencingToken: FencingToken, ttlMs: number): Promise<FencedOutcome>;
  get(key: IdempotencyKey): Promise<AnyEntry | undefined>;
  waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void>;
}
