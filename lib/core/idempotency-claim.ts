import type { FencingToken } from './fencing-token';
import type { IdempotencyKey } from './idempotency-key';

/** The claim guarded work runs under: which key, which fencing token, and whether the lease holds. */
export interface IdempotencyClaim {
  /** The client's key, as sent. */
  readonly key: IdempotencyKey;
  /** The key the store holds: the client's key scoped to the principal, when there is one. */
  readonly storeKey: IdempotencyKey;
  /**
   * The claim's fencing token: larger than that of any earlier claim of `storeKey`. Pass it to
   * downstream writes so a stale holder (one whose lease was taken over) cannot overwrite a newer one.
   */
  readonly fencingToken: FencingToken;
  /** Aborts (with a `LeaseLostError` as reason) when the claim's lease is lost while the work runs. */
  readonly signal: AbortSignal;
}
