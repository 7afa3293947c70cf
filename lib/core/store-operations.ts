import type { FencedOutcome } from './fenced-outcome';
import type { FencingToken } from './fencing-token';
import type { Fingerprint } from './fingerprint';
import type { AnyEntry, CompletedEntry, ProcessingEntry } from './idempotency-entry';
import type { IdempotencyKey } from './idempotency-key';
import type { InsertResult } from './insert-result';

/**
 * The operations the claim protocol uses, as `IdempotencyStore` declares them. The engine, the
 * lease and the claim builder depend on this shape rather than on the abstract class, so the store
 * contract (which offers `claim()`) and the protocol do not import each other.
 * @internal
 */
export interface StoreOperations {
  readonly kind: string;
  tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult>;
  complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome>;
  remove(key: IdempotencyKey, fencingToken: FencingToken): Promise<FencedOutcome>;
  touch(key: IdempotencyKey, fencingToken: FencingToken, ttlMs: number): Promise<FencedOutcome>;
  get(key: IdempotencyKey): Promise<AnyEntry | undefined>;
  waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void>;
}

/**
 * A claim and a completion answered at once, without a promise: what a store that keeps its
 * entries in this process can offer. The claim engine uses them when the store offers them, and
 * awaits the store's methods otherwise; the answers are those the methods would give. An
 * operation answers `undefined` when it cannot answer at once this time (the caller then awaits
 * the method).
 * @internal
 */
export interface ImmediateOperations {
  /**
   * `tryInsert(key, new IdempotencyEntry(fingerprint, leaseMs))`: the processing entry is made
   * only when the claim succeeds. Throws what `tryInsert` would reject with.
   */
  claim(key: IdempotencyKey, fingerprint: Fingerprint, leaseMs: number): InsertResult | undefined;
  /** `complete(...)`. Throws what `complete` would reject with. */
  complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): FencedOutcome | undefined;
}

interface Registered {
  /** The store offering them: not another object that inherits or forwards the property. */
  readonly store: object;
  readonly operations: ImmediateOperations;
  // The methods the immediate operations stand for: a subclass or a test that replaces either
  // (on the class or the instance) is awaited instead, so its own code runs.
  readonly tryInsert: unknown;
  readonly complete: unknown;
}

/**
 * Where a store keeps what it offers: a non-enumerable property of its own, read on every claim
 * and completion (a property load; a WeakMap lookup hashes the object each time).
 */
const REGISTERED = Symbol('nestjs-idempotent.immediateOperations');

/**
 * Offers `operations` for `store`, in place of the `tryInsert` and `complete` of `standsFor` (the
 * class that defines them): used while the store's own methods are those.
 * @internal
 */
export function offerImmediateOperations(
  store: StoreOperations,
  operations: ImmediateOperations,
  standsFor: Pick<StoreOperations, 'tryInsert' | 'complete'>,
): void {
  const value: Registered = { store, operations, tryInsert: standsFor.tryInsert, complete: standsFor.complete };
  Object.defineProperty(store, REGISTERED, { value, configurable: true, writable: true, enumerable: false });
}

/**
 * The immediate operations `store` offers, if its `tryInsert` and `complete` are still those
 * they stand for.
 * @internal
 */
export function immediateOperations(store: StoreOperations): ImmediateOperations | undefined {
  const r = (store as { [REGISTERED]?: Registered })[REGISTERED];
  return r !== undefined && r.store === store && store.tryInsert === r.tryInsert && store.complete === r.complete
    ? r.operations
    : undefined;
}
