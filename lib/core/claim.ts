import type { IdempotencyStore } from '../stores/idempotency.store';
import { CachedResponse } from './cached-response';
import { assertDuration } from './duration';
import { FencedOutcome } from './fenced-outcome';
import { Fingerprint } from './fingerprint';
import { DefaultFingerprintStrategy, FingerprintStrategy } from './fingerprint-strategy';
import { FencingToken } from './fencing-token';
import { IdempotencyEntry } from './idempotency-entry';
import { IdempotencyKey } from './idempotency-key';
import { InsertResult } from './insert-result';
import { completeWithRetry, Lease } from './lease';

/** The work guarded by a claim. `signal` aborts if the lease is lost while it runs. */
export type SideEffect = (fencingToken: FencingToken, signal: AbortSignal) => CachedResponse | Promise<CachedResponse>;

/** What `executeOrReplay` did. */
export type ExecuteResult =
  /** The side effect ran now and its response is stored. */
  | { readonly kind: 'executed'; readonly response: CachedResponse; readonly fencingToken: FencingToken }
  /** A stored response for the same request. */
  | { readonly kind: 'replayed'; readonly response: CachedResponse }
  /** Another claim holds the key and has not finished. */
  | { readonly kind: 'in-flight' }
  /** The key was used for a different request. */
  | { readonly kind: 'fingerprint-mismatch' };

const defaultStrategy = new DefaultFingerprintStrategy();

/** `store.claim(key, leaseMs)`: pick a fingerprint, then claim. */
export class ClaimBuilder {
  constructor(
    private readonly store: IdempotencyStore,
    private readonly key: IdempotencyKey,
    private readonly leaseMs: number,
  ) {}

  /** Fingerprint with {@link DefaultFingerprintStrategy}. */
  fingerprint(operation: string, body: Uint8Array | string): FingerprintedClaim {
    return this.fingerprintWith(defaultStrategy, operation, body);
  }

  fingerprintWith(strategy: FingerprintStrategy, operation: string, body: Uint8Array | string): FingerprintedClaim {
    return new FingerprintedClaim(this.store, this.key, this.leaseMs, strategy.compute(operation, body));
  }
}

export class FingerprintedClaim {
  constructor(
    private readonly store: IdempotencyStore,
    private readonly key: IdempotencyKey,
    private readonly leaseMs: number,
    readonly fingerprint: Fingerprint,
  ) {}

  /** Just the atomic claim, as `store.tryInsert` would. */
  tryInsert(): Promise<InsertResult> {
    return this.store.tryInsert(this.key, new IdempotencyEntry(this.fingerprint, this.leaseMs));
  }

  /**
   * Runs `sideEffect` at most once for this key and stores its response for `ttlMs`, or answers
   * with the stored response, `in-flight` or `fingerprint-mismatch`. The lease is renewed while
   * the side effect runs. If the side effect throws, the key is released and the error rethrown.
   * If the lease was lost and another claim completed meanwhile, that response is replayed.
   */
  async executeOrReplay(ttlMs: number, sideEffect: SideEffect): Promise<ExecuteResult> {
    assertDuration('ttlMs', ttlMs);
    const claim = await this.tryInsert();
    if (claim.kind === 'exists') {
      if (!claim.entry.fingerprintMatches(this.fingerprint)) return { kind: 'fingerprint-mismatch' };
      if (claim.entry.isCompleted()) return { kind: 'replayed', response: claim.entry.response };
      return { kind: 'in-flight' };
    }
    const lease = new Lease(this.store, this.key, claim.fencingToken, this.leaseMs);
    let outcome: FencedOutcome;
    let response: CachedResponse;
    try {
      try {
        response = await sideEffect(claim.fencingToken, lease.signal);
        if (!(response instanceof CachedResponse)) {
          throw new TypeError('the side effect must return a CachedResponse');
        }
      } catch (error) {
        lease.stop();
        await this.store.remove(this.key, claim.fencingToken).catch(() => undefined);
        throw error;
      }
      // The heartbeat stops first, so completion retries are bounded by what is left of the lease
      // even when the store keeps renewing leases but refuses completions.
      lease.stop();
      outcome = await completeWithRetry(this.store, this.key, claim.entry.complete(response), lease, ttlMs);
    } finally {
      lease.stop();
    }
    if (outcome === FencedOutcome.Applied) return { kind: 'executed', response, fencingToken: claim.fencingToken };
    if (outcome === FencedOutcome.KeyExpired) {
      // The lease ran out and nobody took the key: claim it again and store the result after all,
      // so a retry replays it instead of running the side effect a second time.
      const again = await this.tryInsert();
      if (again.kind === 'claimed') {
        const late = await this.store.complete(this.key, again.entry.complete(response), again.fencingToken, ttlMs);
        if (late === FencedOutcome.Applied) return { kind: 'executed', response, fencingToken: again.fencingToken };
      }
    }
    // The lease was taken over and the completion refused: answer with what the key holds now.
    const current = await this.store.get(this.key);
    if (current?.isCompleted() && current.fingerprintMatches(this.fingerprint)) {
      return { kind: 'replayed', response: current.response };
    }
    return { kind: 'in-flight' };
  }
}
