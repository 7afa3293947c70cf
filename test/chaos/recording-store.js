// The delegating stores the chaos apps use. `RecordingStore` forwards every call to the real store
// and writes a `stored` ledger record whenever a completion is Applied: the ledger then says which
// executions' results the store accepted, and when. On a transactional store (PostgresStore) it
// wraps each transaction too: there a completion is stored when the transaction that holds it
// commits, so `stored` is written then (and `tx-commit-unknown` when the commit's outcome could not
// be told). `NoFencingStore` (`--break no-fencing`) sits
// above it and lies to the library: a completion refused because its claim no longer holds the
// key (another claim took it over, or the lease ran out) is reported as Applied, as a store that
// checked no token would answer. The ledger below it still records the truth.
'use strict';

/** The execution id inside a stored response body (the chaos handler's JSON), if there is one. */
function executionOf(entry) {
  try {
    const body = JSON.parse(Buffer.from(entry.response.body).toString('utf8'));
    return typeof body?.execution === 'string' ? body.execution : undefined;
  } catch {
    return undefined;
  }
}

/** @param {typeof import('../../dist')} lib the built package */
function storeClasses(lib) {
  const { IdempotencyStore, FencedOutcome } = lib;

  /** Forwards everything to `inner`, including the optional hooks a store may have. */
  class DelegatingStore extends IdempotencyStore {
    constructor(inner) {
      super();
      this.inner = inner;
      this.kind = inner.kind;
    }
    tryInsert(key, entry) {
      return this.inner.tryInsert(key, entry);
    }
    complete(key, entry, token, ttlMs) {
      return this.inner.complete(key, entry, token, ttlMs);
    }
    remove(key, token) {
      return this.inner.remove(key, token);
    }
    touch(key, token, ttlMs) {
      return this.inner.touch(key, token, ttlMs);
    }
    purge(key) {
      return this.inner.purge(key);
    }
    get(key) {
      return this.inner.get(key);
    }
    waitForChange(key, timeoutMs, signal) {
      return this.inner.waitForChange(key, timeoutMs, signal);
    }
    close() {
      return this.inner.close();
    }
    ping() {
      return this.inner.ping();
    }
    // Nest calls these on the provider instance (this wrapper), so they are passed on when the
    // store has them (ValkeyStore's start-up server check, warnings to the module's logger).
    onModuleInit(...args) {
      return this.inner.onModuleInit?.(...args);
    }
    useWarningFallback(warn) {
      return this.inner.useWarningFallback?.(warn);
    }
  }

  class RecordingStore extends DelegatingStore {
    /** @param {import('./ledger').Ledger} ledger */
    constructor(inner, ledger) {
      super(inner);
      this.ledger = ledger;
      // Only a store that has transactions gets this method: the library asks whether it exists.
      if (typeof inner.beginTransaction === 'function') {
        this.beginTransaction = async () => this.#recorded(await inner.beginTransaction());
      }
    }
    #stored(key, entry, token) {
      this.ledger.append({
        type: 'stored',
        key: key.toString(),
        token: token.toString(),
        nonce: token.nonce ?? null,
        execution: executionOf(entry) ?? null,
      });
    }
    async complete(key, entry, token, ttlMs) {
      const outcome = await this.inner.complete(key, entry, token, ttlMs);
      if (outcome === FencedOutcome.Applied) this.#stored(key, entry, token);
      return outcome;
    }
    /** The transaction, recording its completion once (and if) it commits. */
    #recorded(tx) {
      let applied;
      const ledger = this.ledger;
      const stored = (...args) => this.#stored(...args);
      return {
        get client() {
          return tx.client;
        },
        async complete(key, entry, token, ttlMs) {
          const outcome = await tx.complete(key, entry, token, ttlMs);
          applied = outcome === FencedOutcome.Applied ? { key, entry, token } : undefined;
          return outcome;
        },
        async commit() {
          let result;
          try {
            result = await tx.commit();
          } catch (error) {
            if (applied) {
              ledger.append({
                type: 'tx-commit-unknown',
                key: applied.key.toString(),
                token: applied.token.toString(),
                execution: executionOf(applied.entry) ?? null,
                error: String(error?.message ?? error),
              });
            }
            throw error;
          }
          if (result === 'committed' && applied) stored(applied.key, applied.entry, applied.token);
          return result;
        },
        rollback() {
          return tx.rollback();
        },
      };
    }
  }

  class NoFencingStore extends DelegatingStore {
    async complete(key, entry, token, ttlMs) {
      const outcome = await this.inner.complete(key, entry, token, ttlMs);
      const claimGone = outcome === FencedOutcome.FencingMismatch || outcome === FencedOutcome.KeyExpired;
      return claimGone ? FencedOutcome.Applied : outcome;
    }
  }

  return { DelegatingStore, RecordingStore, NoFencingStore };
}

module.exports = { storeClasses, executionOf };
