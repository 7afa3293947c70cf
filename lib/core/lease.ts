import { IdempotencyError } from './errors';
import { FencedOutcome } from './fenced-outcome';
import { FencingToken } from './fencing-token';
import { IdempotencyKey } from './idempotency-key';
import type { StoreOperations } from './store-operations';

/**
 * The monotonic clock leases are counted by, in ms: wall-clock steps (NTP, a VM resumed) neither
 * lengthen nor shorten a lease.
 * @internal
 */
export const monotonicNow = (): number => performance.now();

/** The claim's lease ended before the work finished: another claim may now hold the key. */
export class LeaseLostError extends IdempotencyError {
  constructor(readonly outcome: FencedOutcome | 'unreachable') {
    super(
      outcome === 'unreachable'
        ? 'the idempotency lease could not be renewed before it ran out'
        : `the idempotency lease was lost (${outcome})`,
    );
  }
}

/** What a {@link Lease} tells its listener when the lease is lost. @internal */
export interface LeaseLostEvent {
  readonly type: 'lease-lost';
  readonly fencingToken: FencingToken;
  readonly error: LeaseLostError;
}

/** Storing the completion kept failing until the lease ran out. */
export class CompletionFailedError extends IdempotencyError {}

/**
 * A pause. `unref`'d pauses do not keep the process alive: only for background work. A pause the
 * caller awaits must keep it alive, or a short-lived process (a script, a job) would exit in the
 * middle of storing a result.
 * @internal
 */
export const sleep = (ms: number, keepAlive = false) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (!keepAlive) timer.unref?.();
  });

/**
 * A held claim: once `keepAlive()` is called, renews the lease with `touch` every third of
 * `leaseMs` until stopped, and aborts `signal` when the lease is lost (refused renewal, or no
 * renewal before it ran out). The lease counts from when its claim (or its last renewal) was
 * sent, by the monotonic clock: never longer than the store's own count, which starts later.
 * @internal
 */
export class Lease {
  // Made on first use of `signal`: most leases end without anyone listening.
  #controller: AbortController | undefined;
  #lostWith: LeaseLostError | undefined;
  #timer: NodeJS.Timeout | undefined;
  #expiresAt: number;
  #stopped = false;
  #touching = false;

  constructor(
    private readonly store: StoreOperations,
    private readonly key: IdempotencyKey,
    readonly fencingToken: FencingToken,
    private readonly leaseMs: number,
    /** When the claim was sent, by `monotonicNow()`. */
    leaseStart: number,
    /** Told when the lease is lost (the work itself, as a rule: no closure per lease). */
    private readonly listener?: { notify?(event: LeaseLostEvent): void },
  ) {
    this.#expiresAt = leaseStart + leaseMs;
  }

  /**
   * Starts renewing the lease while the work runs. Work that ends before it returns (a handler
   * that answers at once) never needs it: no timer could fire before it ends.
   */
  keepAlive(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.#renew(), Math.max(1, Math.floor(this.leaseMs / 3)));
    this.#timer.unref();
  }

  /** Aborted (with a {@link LeaseLostError} as reason) once the lease is lost. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#lostWith !== undefined) this.#controller.abort(this.#lostWith);
    }
    return this.#controller.signal;
  }

  /** When the lease ends unless renewed, by `monotonicNow()`. */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  get lost(): boolean {
    return this.#lostWith !== undefined;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
  }

  async #renew(): Promise<void> {
    if (this.#stopped || this.#touching) return;
    this.#touching = true;
    const sentAt = monotonicNow();
    try {
      const outcome = await this.store.touch(this.key, this.fencingToken, this.leaseMs);
      if (this.#stopped) return;
      if (outcome === FencedOutcome.Applied) this.#expiresAt = sentAt + this.leaseMs;
      else this.#lose(new LeaseLostError(outcome));
    } catch {
      // Renewal failed this time; the lease is lost only once it has run out unrenewed.
      if (!this.#stopped && monotonicNow() >= this.#expiresAt) this.#lose(new LeaseLostError('unreachable'));
    } finally {
      this.#touching = false;
    }
  }

  #lose(error: LeaseLostError): void {
    if (this.lost) return;
    this.stop();
    this.#lostWith = error;
    this.#controller?.abort(error);
    this.listener?.notify?.({ type: 'lease-lost', fencingToken: this.fencingToken, error });
  }
}
