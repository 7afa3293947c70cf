import { CachedResponse } from './cached-response';
import { assertDuration } from './duration';
import { Fingerprint } from './fingerprint';
import { DefaultFingerprintStrategy, FingerprintStrategy } from './fingerprint-strategy';
import { FencingToken } from './fencing-token';
import { IdempotencyEntry } from './idempotency-entry';
import { IdempotencyKey } from './idempotency-key';
import { InsertResult } from './insert-result';
import { ClaimRequest, claimKey, runClaimed } from './claim-engine';
import { CompletionFailedError } from './lease';
import type { StoreOperations } from './store-operations';

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
    private readonly store: StoreOperations,
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
    private readonly store: StoreOperations,
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
   * @throws CompletionFailedError when the response could not be stored before the lease ran out;
   *   the key stays held and the store is retried in the background, so a retry gets `in-flight`
   *   until the response is stored, then the replay.
   */
  async executeOrReplay(ttlMs: number, sideEffect: SideEffect): Promise<ExecuteResult> {
    const request: ClaimRequest = {
      store: this.store,
      key: this.key,
      fingerprint: this.fingerprint,
      leaseMs: this.leaseMs,
      ttlMs: assertDuration('ttlMs', ttlMs),
    };
    const decision = await claimKey(request);
    if (decision.kind !== 'claimed') return decision;
    const outcome = await runClaimed(request, decision, {
      run: (lease) => sideEffect(lease.fencingToken, lease.signal),
      capture: (response) => {
        if (!(response instanceof CachedResponse)) throw new TypeError('the side effect must return a CachedResponse');
        return response;
      },
    });
    switch (outcome.kind) {
      case 'executed':
        return { kind: 'executed', response: outcome.response, fencingToken: outcome.fencingToken };
      case 'released':
        throw outcome.error;
      case 'deferred':
        throw new CompletionFailedError('the idempotent result could not be stored before the lease ran out', {
          cause: outcome.error,
        });
      case 'error-stored':
      case 'rolled-back':
        // Neither happens here (no `cacheError`, no transaction); kept for exhaustiveness.
        throw outcome.error;
      default:
        return outcome;
    }
  }
}
