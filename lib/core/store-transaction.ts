import type { FencedOutcome } from './fenced-outcome';
import type { FencingToken } from './fencing-token';
import type { CompletedEntry } from './idempotency-entry';
import type { IdempotencyKey } from './idempotency-key';
import { storeInChain } from './store-chain';

/**
 * A transaction of a store that keeps its entries in the database the work writes to (Postgres):
 * the work writes through `client`, and the completion is stored in the same transaction, so the
 * work's writes and the stored result commit together, or neither does.
 */
export interface StoreTransaction<Client = unknown> {
  /** The client the work writes through, inside the open transaction (a `pg.PoolClient`). */
  readonly client: Client;
  /**
   * Stores the completion of the claim `fencingToken` holds, inside the transaction (not
   * committed yet), checked as `IdempotencyStore.complete` checks it. It must not lock the key's
   * entry before this point: the work runs without holding it.
   */
  complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome>;
  /**
   * Commits. Answers `'committed'`, or `'rolled-back'` when the commit failed and the store could
   * tell that nothing of the transaction was written.
   * @throws when the outcome cannot be told (the connection was lost during the commit and the
   *   store could not find out); the caller then answers from what the key holds.
   */
  commit(): Promise<'committed' | 'rolled-back'>;
  /** Rolls back and gives the client back. Never throws. */
  rollback(): Promise<void>;
}

/** A store that can run work and its completion in one transaction (`PostgresStore`). */
export interface TransactionalStore {
  /** Opens a transaction for one run of work, on a connection of its own. */
  beginTransaction(): Promise<StoreTransaction>;
}

/**
 * The transactional store `store` is, or wraps; `undefined` when there is none.
 * @internal
 */
export function transactionalStoreIn(store: unknown): TransactionalStore | undefined {
  return storeInChain(store, (s) => typeof (s as TransactionalStore).beginTransaction === 'function') as
    TransactionalStore | undefined;
}
