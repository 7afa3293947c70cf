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
  /**
   * With a store that runs work in a transaction with its result (`PostgresStore`), the client of
   * that open transaction (a `pg.PoolClient`): what the work writes through it commits with the
   * stored result, or not at all. `undefined` with other stores, and for handlers that did not ask
   * for it (`@IdempotencyTransaction()`).
   */
  readonly transaction?: IdempotencyTransactionClient;
}

/**
 * The client of the transaction guarded work runs in (a `pg.PoolClient` with `PostgresStore`),
 * as far as this library types it: cast it to your driver's type (`as PoolClient`) for more.
 */
export interface IdempotencyTransactionClient {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  query(text: string, values?: readonly unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
}
