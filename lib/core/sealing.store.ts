import type { FencedOutcome } from './fenced-outcome';
import type { FencingToken } from './fencing-token';
import { type AnyEntry, type CompletedEntry, completedEntry, type ProcessingEntry } from './idempotency-entry';
import type { IdempotencyKey } from './idempotency-key';
import { IdempotencyStore } from './idempotency-store';
import type { InsertResult } from './insert-result';
import type { ResponseSealer } from './response-sealer';
import { immediateOperations, offerImmediateOperations } from './store-operations';
import { type StoreTransaction, type TransactionalStore, transactionalStoreIn } from './store-transaction';

/**
 * Wraps any store (custom ones included) so that it receives and hands back only sealed
 * responses (`encryption`, DESIGN 7.4): completions are sealed before the store sees them, and
 * completed entries are opened as they come back from `tryInsert` and `get`. The store needs to
 * know nothing of it; fingerprints, keys, tokens and lifetimes pass through unchanged.
 * A record that cannot be opened makes the operation throw `SealedRecordError`.
 * @internal
 */
export class SealingStore extends IdempotencyStore {
  readonly kind: string;

  constructor(
    readonly inner: IdempotencyStore,
    private readonly sealer: ResponseSealer,
  ) {
    super();
    this.kind = inner.kind;
    // The in-process store's answers at once stay at once: sealing is synchronous.
    offerImmediateOperations(
      this,
      {
        claim: (key, fingerprint, leaseMs) => {
          const result = immediateOperations(inner)?.claim(key, fingerprint, leaseMs);
          return result === undefined ? undefined : this.#opened(key, result);
        },
        complete: (key, entry, token, ttlMs) =>
          immediateOperations(inner)?.complete(key, this.#sealed(key, entry), token, ttlMs),
      },
      SealingStore.prototype,
    );
    // Only a transactional store's wrapper is one (the engine looks for the method).
    const transactional = transactionalStoreIn(inner);
    if (transactional !== undefined) {
      (this as unknown as TransactionalStore).beginTransaction = async () =>
        this.#sealing(await transactional.beginTransaction());
    }
  }

  tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    return this.inner.tryInsert(key, entry).then((result) => this.#opened(key, result));
  }

  complete(key: IdempotencyKey, entry: CompletedEntry, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    let sealed: CompletedEntry;
    try {
      sealed = this.#sealed(key, entry);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.inner.complete(key, sealed, token, ttlMs);
  }

  remove(key: IdempotencyKey, token: FencingToken): Promise<FencedOutcome> {
    return this.inner.remove(key, token);
  }

  touch(key: IdempotencyKey, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    return this.inner.touch(key, token, ttlMs);
  }

  purge(key: IdempotencyKey): Promise<void> {
    return this.inner.purge(key);
  }

  get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    return this.inner.get(key).then((entry) => (entry === undefined ? undefined : this.#open(key, entry)));
  }

  override waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.inner.waitForChange(key, timeoutMs, signal);
  }

  override close(): Promise<void> {
    return this.inner.close();
  }

  override ping(): Promise<void> {
    return this.inner.ping();
  }

  #sealed(key: IdempotencyKey, entry: CompletedEntry): CompletedEntry {
    return completedEntry(entry.fingerprint, entry.ttl, this.sealer.seal(key.toString(), entry.response));
  }

  #open(key: IdempotencyKey, entry: AnyEntry): AnyEntry {
    if (!entry.isCompleted()) return entry;
    return completedEntry(entry.fingerprint, entry.ttl, this.sealer.open(key.toString(), entry.response));
  }

  #opened(key: IdempotencyKey, result: InsertResult): InsertResult {
    return result.kind === 'claimed' ? result : { kind: 'exists', entry: this.#open(key, result.entry) };
  }

  #sealing(transaction: StoreTransaction): StoreTransaction {
    return {
      client: transaction.client,
      complete: (key, entry, token, ttlMs) => transaction.complete(key, this.#sealed(key, entry), token, ttlMs),
      commit: () => transaction.commit(),
      rollback: () => transaction.rollback(),
    };
  }
}
