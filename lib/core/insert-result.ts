import { FencingToken } from './fencing-token';
import { AnyEntry, ProcessingEntry } from './idempotency-entry';

/** The caller now holds the key: run the side effect, then complete with `fencingToken`. */
export interface ClaimedResult {
  readonly kind: 'claimed';
  readonly fencingToken: FencingToken;
  /** The processing entry that was stored: complete it to get the entry to hand to `complete`. */
  readonly entry: ProcessingEntry;
}

/** Someone else holds the key, or its response is stored: `entry` is what the store holds. */
export interface ExistsResult {
  readonly kind: 'exists';
  readonly entry: AnyEntry;
}

/** The answer of `IdempotencyStore.tryInsert`. */
export type InsertResult = ClaimedResult | ExistsResult;
