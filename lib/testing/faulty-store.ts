import { IdempotencyStoreError } from '../core/errors';
import type { FencedOutcome } from '../core/fenced-outcome';
import type { FencingToken } from '../core/fencing-token';
import type { AnyEntry, CompletedEntry, ProcessingEntry } from '../core/idempotency-entry';
import { IdempotencyStore } from '../core/idempotency-store';
import type { IdempotencyKey } from '../core/idempotency-key';
import type { InsertResult } from '../core/insert-result';

/** The store operations a {@link FaultyStore} can disturb. */
export type StoreOperation = 'tryInsert' | 'complete' | 'remove' | 'touch' | 'purge' | 'get';

type Fault =
  | { readonly kind: 'fail'; readonly error: unknown }
  | { readonly kind: 'delay'; readonly ms: number }
  | { readonly kind: 'lose-reply' };

interface Pending {
  fault: Fault;
  /** How many more calls it applies to. */
  left: number;
}

const OPERATIONS: readonly StoreOperation[] = ['tryInsert', 'complete', 'remove', 'touch', 'purge', 'get'];

/**
 * Wraps any store, and is one, to inject faults into chosen operations: fail them, slow them
 * down, or apply them and then lose the reply (as when a connection drops after the server ran the
 * command). For testing how code behaves when the store misbehaves; the wrapped store itself is
 * used as it is.
 *
 * ```ts
 * const store = new FaultyStore(new MemoryStore());
 * store.failNext('complete');            // the next completion throws
 * store.loseReplyNext('tryInsert');      // the next claim lands, but its caller sees an error
 * store.delayNext('get', 2_000);         // the next read takes 2 s
 * ```
 */
export class FaultyStore extends IdempotencyStore {
  readonly kind: string;
  /** How many times each operation was called (faulty calls included). */
  readonly calls: Record<StoreOperation, number> = {
    tryInsert: 0,
    complete: 0,
    remove: 0,
    touch: 0,
    purge: 0,
    get: 0,
  };
  readonly #faults = new Map<StoreOperation, Pending[]>();

  constructor(readonly inner: IdempotencyStore) {
    super();
    if (!(inner instanceof IdempotencyStore)) throw new TypeError('FaultyStore wraps an IdempotencyStore');
    this.kind = inner.kind;
  }

  /**
   * The next `times` calls of `op` throw `error` without reaching the store.
   * `times` may be `Infinity` (until {@link heal}).
   */
  failNext(op: StoreOperation, error?: unknown, times = 1): this {
    return this.#add(op, { kind: 'fail', error: error ?? new IdempotencyStoreError(`injected: ${op} failed`) }, times);
  }

  /** The next `times` calls of `op` reach the store `ms` later. */
  delayNext(op: StoreOperation, ms: number, times = 1): this {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError('ms must be a finite number from 0');
    return this.#add(op, { kind: 'delay', ms }, times);
  }

  /**
   * The next `times` calls of `op` are applied by the store, then throw as if the reply was lost
   * (the caller cannot tell whether they took effect).
   */
  loseReplyNext(op: StoreOperation, times = 1): this {
    return this.#add(op, { kind: 'lose-reply' }, times);
  }

  /** Drops the faults still pending, for `op` or for every operation. */
  heal(op?: StoreOperation): this {
    if (op === undefined) this.#faults.clear();
    else this.#faults.delete(op);
    return this;
  }

  /** Faults still pending for `op`. */
  pending(op: StoreOperation): number {
    return (this.#faults.get(op) ?? []).reduce((n, p) => n + p.left, 0);
  }

  tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    return this.#call('tryInsert', () => this.inner.tryInsert(key, entry));
  }

  complete(key: IdempotencyKey, entry: CompletedEntry, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    return this.#call('complete', () => this.inner.complete(key, entry, token, ttlMs));
  }

  remove(key: IdempotencyKey, token: FencingToken): Promise<FencedOutcome> {
    return this.#call('remove', () => this.inner.remove(key, token));
  }

  touch(key: IdempotencyKey, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    return this.#call('touch', () => this.inner.touch(key, token, ttlMs));
  }

  purge(key: IdempotencyKey): Promise<void> {
    return this.#call('purge', () => this.inner.purge(key));
  }

  get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    return this.#call('get', () => this.inner.get(key));
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

  #add(op: StoreOperation, fault: Fault, times: number): this {
    if (!OPERATIONS.includes(op)) throw new RangeError(`unknown store operation "${String(op)}"`);
    if (!(times >= 1)) throw new RangeError('times must be at least 1');
    const queue = this.#faults.get(op) ?? [];
    queue.push({ fault, left: times });
    this.#faults.set(op, queue);
    return this;
  }

  #take(op: StoreOperation): Fault | undefined {
    const queue = this.#faults.get(op);
    const head = queue?.[0];
    if (head === undefined) return undefined;
    if (--head.left <= 0) queue!.shift();
    return head.fault;
  }

  async #call<T>(op: StoreOperation, run: () => Promise<T>): Promise<T> {
    this.calls[op]++;
    const fault = this.#take(op);
    if (fault === undefined) return run();
    switch (fault.kind) {
      case 'fail':
        throw fault.error;
      case 'delay':
        await new Promise((resolve) => setTimeout(resolve, fault.ms));
        return run();
      case 'lose-reply':
        await run();
        throw new IdempotencyStoreError(`injected: the reply to ${op} was lost`);
    }
  }
}
