import { assertDuration, assertPositiveInteger } from '../core/duration';
import { StoreFullError } from '../core/errors';
import { FencedOutcome } from '../core/fenced-outcome';
import { FencingToken } from '../core/fencing-token';
import { Fingerprint } from '../core/fingerprint';
import {
  AnyEntry,
  assertEntryState,
  CompletedEntry,
  completedEntry,
  IdempotencyEntry,
  ProcessingEntry,
} from '../core/idempotency-entry';
import { IdempotencyKey } from '../core/idempotency-key';
import { InsertResult } from '../core/insert-result';
import { BUCKETS, bucketOf } from '../core/key-bucket';
import { newNonce } from '../core/nonce';
import { IdempotencyStore } from './idempotency.store';

export interface MemoryStoreOptions {
  /**
   * Most live entries held at once. When full (after dropping expired entries) new claims fail
   * with `StoreFullError`; live entries are never evicted, since that would allow a second run.
   * @default 100_000
   */
  maxEntries?: number;
  /**
   * How often expired entries are swept, in ms. The timer is `unref`'d.
   * @default 60_000
   */
  sweepIntervalMs?: number;
  /**
   * The clock, in ms. For tests that control time.
   * @default Date.now
   */
  now?: () => number;
}

const FULL_SWEEP_MS = 100;

interface Slot {
  fingerprint: Fingerprint;
  token: number;
  nonce: string;
  ttl: number;
  expiresAt: number;
  /** Set once completed: the entry handed out from then on. */
  completed: CompletedEntry | undefined;
}

/**
 * An in-process store for development, tests and single-instance services. Each operation runs
 * to its end without awaiting, so operations are atomic without locks.
 */
export class MemoryStore extends IdempotencyStore {
  readonly kind = 'memory';
  readonly #slots = new Map<string, Slot>();
  // Fencing counters per key bucket, as the Valkey store keeps them: bounded state, same tokens.
  readonly #counters = new Float64Array(BUCKETS);
  readonly #maxEntries: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #nextFullSweep = 0;

  constructor(options: MemoryStoreOptions = {}) {
    super();
    this.#maxEntries = assertPositiveInteger('maxEntries', options.maxEntries ?? 100_000);
    this.#now = options.now ?? Date.now;
    const sweepMs = assertDuration('sweepIntervalMs', options.sweepIntervalMs ?? 60_000);
    this.#timer = setInterval(() => this.sweep(), sweepMs);
    this.#timer.unref();
  }

  /** Number of live entries (expired ones may be counted until the next sweep). */
  get size(): number {
    return this.#slots.size;
  }

  async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    assertEntryState(entry, 'processing', 'tryInsert');
    const id = key.toString();
    const now = this.#now();
    const live = this.#live(id, now);
    if (live !== undefined) return { kind: 'exists', entry: entryOf(live) };
    if (this.#slots.size >= this.#maxEntries) {
      // Sweeping walks every entry: when full, at most once per FULL_SWEEP_MS, not per claim.
      if (now >= this.#nextFullSweep) {
        this.sweep();
        this.#nextFullSweep = now + FULL_SWEEP_MS;
      }
      if (this.#slots.size >= this.#maxEntries) throw new StoreFullError(this.#maxEntries);
    }
    const bucket = bucketOf(id);
    const token = ++this.#counters[bucket];
    const nonce = newNonce();
    this.#slots.set(id, {
      fingerprint: entry.fingerprint,
      token,
      nonce,
      ttl: entry.ttl,
      expiresAt: now + entry.ttl,
      completed: undefined,
    });
    return { kind: 'claimed', fencingToken: new FencingToken(token, nonce), entry };
  }

  async complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    assertDuration('ttlMs', ttlMs);
    assertEntryState(entry, 'completed', 'complete');
    const slot = this.#live(key.toString(), this.#now());
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!holds(slot, fencingToken)) return FencedOutcome.FencingMismatch;
    if (!slot.fingerprint.equals(entry.fingerprint)) return FencedOutcome.FingerprintMismatch;
    if (slot.completed !== undefined) return FencedOutcome.Applied;
    slot.completed = entry.ttl === ttlMs ? entry : completedEntry(entry.fingerprint, ttlMs, entry.response);
    slot.ttl = ttlMs;
    slot.expiresAt = this.#now() + ttlMs;
    return FencedOutcome.Applied;
  }

  async remove(key: IdempotencyKey, fencingToken: FencingToken): Promise<FencedOutcome> {
    const id = key.toString();
    const slot = this.#live(id, this.#now());
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!holds(slot, fencingToken)) return FencedOutcome.FencingMismatch;
    this.#slots.delete(id);
    return FencedOutcome.Applied;
  }

  async touch(key: IdempotencyKey, fencingToken: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    assertDuration('ttlMs', ttlMs);
    const now = this.#now();
    const slot = this.#live(key.toString(), now);
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!holds(slot, fencingToken)) return FencedOutcome.FencingMismatch;
    if (slot.completed !== undefined) return FencedOutcome.KeyExpired;
    slot.ttl = ttlMs;
    slot.expiresAt = now + ttlMs;
    return FencedOutcome.Applied;
  }

  async purge(key: IdempotencyKey): Promise<void> {
    this.#slots.delete(key.toString());
  }

  async get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    const slot = this.#live(key.toString(), this.#now());
    return slot === undefined ? undefined : entryOf(slot);
  }

  /** Drops every expired entry now (the timer does this every `sweepIntervalMs`). */
  sweep(): void {
    const now = this.#now();
    for (const [id, slot] of this.#slots) if (slot.expiresAt <= now) this.#slots.delete(id);
  }

  /** Nest lifecycle hook (the store is the `IdempotencyStore` provider): closes the store. */
  async onModuleDestroy(): Promise<void> {
    await this.close();
  }

  /** Stops the sweep timer and drops all entries. */
  override async close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#slots.clear();
  }

  #live(id: string, now: number): Slot | undefined {
    const slot = this.#slots.get(id);
    if (slot === undefined) return undefined;
    if (slot.expiresAt <= now) {
      this.#slots.delete(id);
      return undefined;
    }
    return slot;
  }
}

// A processing entry is handed out fresh each time, so no caller can complete another's object.
function entryOf(slot: Slot): AnyEntry {
  return slot.completed ?? new IdempotencyEntry(slot.fingerprint, slot.ttl);
}

function holds(slot: Slot, token: FencingToken): boolean {
  return token instanceof FencingToken && token.nonce === slot.nonce && token.value === BigInt(slot.token);
}
