import { getHeapStatistics } from 'node:v8';
import { bodySize, bodyText, CachedResponse, trustedResponse } from '../core/cached-response';
import { assertDuration, assertPositiveInteger } from '../core/duration';
import { StoreClosedError, StoreFullError } from '../core/errors';
import { FencedOutcome } from '../core/fenced-outcome';
import { FencingToken, trustedFencingToken } from '../core/fencing-token';
import { Fingerprint, trustedFingerprint } from '../core/fingerprint';
import { IdempotencyStore, type StoreKeyInfo } from '../core/idempotency-store';
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
import { offerImmediateOperations } from '../core/store-operations';
import { TELEMETRY_ATTRIBUTES as A, telemetry } from '../observability/telemetry';

export interface MemoryStoreOptions {
  /**
   * Most memory the entries may take, in bytes (an estimate: keys, bodies, metadata and a fixed
   * overhead per entry). When full (after dropping expired entries), new claims fail with
   * `StoreFullError` (the HTTP layer answers 503), unless `whenFull` says to evict. The bound holds
   * for completions too: a response that does not fit is refused (its key stays held, and the
   * completion is retried in the background until it fits or the replay window ends).
   * @default a quarter of the V8 heap limit
   */
  maxBytes?: number;
  /**
   * Most live entries held at once, on top of `maxBytes`.
   * @default no limit but `maxBytes`
   */
  maxEntries?: number;
  /**
   * What a full store does with a new claim. `'refuse'`: `StoreFullError`; live entries are never
   * dropped, since that could allow a second run. `'evict-completed'`: drops the
   * entries completed longest ago (never one still processing) to make room. This weakens the guarantee: a
   * retry of an evicted key runs its handler again. Choose it only where availability matters
   * more than at-most-once.
   * @default 'refuse'
   */
  whenFull?: 'refuse' | 'evict-completed';
  /**
   * How often expired entries are swept, in ms. The timer is `unref`'d.
   * @default 60_000
   */
  sweepIntervalMs?: number;
  /**
   * Receives a warning when the store passes 80% of its bounds, when it refuses a claim for want
   * of room, and when it evicts.
   * @default the Nest logger inside IdempotencyModule, else a Node process warning
   */
  onWarning?: (message: string) => void;
  /**
   * The clock, in ms. For tests that control time.
   * @default Date.now
   */
  now?: () => number;
}

const FULL_SWEEP_MS = 100;
/**
 * What an entry costs beside its key's characters and its response, as measured on Node 20 (x64)
 * with `npm run bench:memory`: the map entry, the entry itself with its expiry time, the
 * fingerprint, the nonce and the key's string header.
 */
const ENTRY_OVERHEAD_BYTES = 260;
/** What a stored response costs beside its body's characters and its metadata. */
const RESPONSE_OVERHEAD_BYTES = 72;
/** What a metadata object costs beside its text, and each of its entries beside theirs. */
const METADATA_OVERHEAD_BYTES = 32;
const METADATA_ENTRY_BYTES = 48;
/** Warn when passing this share of a bound; warn again only after falling below the lower share. */
const HIGH_WATER = 0.8;
const LOW_WATER = 0.7;
/** Eviction frees down to this share of a bound, so it does not run on every claim. */
const EVICT_TO = 0.9;

/**
 * One key's entry: its claim, and its response once completed. It holds as little as it can (the
 * store keeps one per live key, and a young collection copies each one made since the last):
 * the fingerprint's number rather than a Fingerprint around it, and times as small integers.
 */
class Slot {
  /** Set once completed: the response replayed from then on. */
  response: CachedResponse | undefined = undefined;

  constructor(
    /** The fingerprint's number (`Fingerprint.toBigInt()`). */
    readonly fingerprint: bigint,
    readonly token: number,
    readonly nonce: string,
    /** The lease while processing, the replay window once completed. */
    public ttl: number,
    /** When the entry expires, on the store's clock (`#clock()`: ms since the store was made). */
    public expiresAt: number,
    /** Estimated bytes this entry holds. */
    public bytes: number,
  ) {}
}

/**
 * An in-process store for development, tests and single-instance services. Each operation runs
 * to its end without awaiting, so operations are atomic without locks.
 *
 * Its sweep timer is `unref`'d, so an open store never keeps the process alive. In a Nest
 * application the module closes it (dropping every entry) only when the module owns it (see
 * `closeStoreOnShutdown`), and then only after the HTTP server has stopped.
 */
export class MemoryStore extends IdempotencyStore {
  readonly kind = 'memory';
  readonly #slots = new Map<string, Slot>();
  /**
   * With `whenFull: 'evict-completed'`, the completed entries in the order they completed (a Map
   * keeps insertion order): eviction drops those completed longest ago, not those claimed first.
   */
  readonly #completedOrder = new Map<string, Slot>();
  // Fencing counters per key bucket, as the Valkey store keeps them: bounded state, same tokens.
  // A plain array of small integers, so each slot holds its token inline, not as a boxed number.
  readonly #counters: number[] = new Array<number>(BUCKETS).fill(0);
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #evict: boolean;
  readonly #now: () => number;
  readonly #onWarning: ((message: string) => void) | undefined;
  #warningFallback: ((message: string) => void) | undefined;
  /**
   * `#now()` when the store was made: times are kept relative to it, so an entry's expiry is a
   * small integer held in the entry, not a number boxed beside it (as an epoch time would be).
   */
  readonly #epoch: number;
  #timer: NodeJS.Timeout | undefined;
  #nextFullSweep = 0;
  #bytes = 0;
  #highWater = false;
  #closed = false;
  readonly #sweepMs: number;
  /** Requests waiting for a key in flight to end (`waitForChange`), by key. */
  readonly #waiters = new Map<string, Set<() => void>>();

  constructor(options: MemoryStoreOptions = {}) {
    super();
    this.#maxEntries =
      options.maxEntries === undefined
        ? Number.POSITIVE_INFINITY
        : assertPositiveInteger('maxEntries', options.maxEntries);
    this.#maxBytes =
      options.maxBytes === undefined
        ? Math.floor(getHeapStatistics().heap_size_limit / 4)
        : assertPositiveInteger('maxBytes', options.maxBytes);
    const whenFull = options.whenFull ?? 'refuse';
    if (whenFull !== 'refuse' && whenFull !== 'evict-completed') {
      throw new RangeError(`whenFull must be 'refuse' or 'evict-completed', got ${String(whenFull)}`);
    }
    this.#evict = whenFull === 'evict-completed';
    this.#now = options.now ?? Date.now;
    // A clock a test sets only later counts from 0, as it would have without an epoch.
    const epoch = this.#now();
    this.#epoch = Number.isFinite(epoch) ? epoch : 0;
    this.#onWarning = options.onWarning;
    const sweepMs = assertDuration('sweepIntervalMs', options.sweepIntervalMs ?? 60_000);
    this.#sweepMs = sweepMs;
    // Every operation runs to its end at once: the claim engine may take the answers without
    // awaiting a promise for each.
    offerImmediateOperations(
      this,
      {
        claim: (key, fingerprint, leaseMs) => this.#claim(key, fingerprint, leaseMs),
        complete: (key, entry, fencingToken, ttlMs) => this.#complete(key, entry, fencingToken, ttlMs),
      },
      MemoryStore.prototype,
    );
    this.#timer = sweepWeakly(new WeakRef<MemoryStore>(this), sweepMs);
  }

  /** Number of live entries (expired ones may be counted until the next sweep). */
  get size(): number {
    return this.#slots.size;
  }

  /** Estimated bytes the entries take (expired ones may be counted until the next sweep). */
  get bytes(): number {
    return this.#bytes;
  }

  /** The byte bound in use. */
  get maxBytes(): number {
    return this.#maxBytes;
  }

  async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    assertEntryState(entry, 'processing', 'tryInsert');
    return this.#claim(key, entry.fingerprint, entry.ttl, entry);
  }

  async complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    return this.#complete(key, entry, fencingToken, ttlMs);
  }

  /** `tryInsert`, without a promise; `entry` is made when the claim succeeds, unless given. */
  #claim(key: IdempotencyKey, fingerprint: Fingerprint, ttl: number, entry?: ProcessingEntry): InsertResult {
    if (this.#closed) throw new StoreClosedError(this.kind, 'tryInsert');
    const id = key.toString();
    const now = this.#clock();
    const live = this.#live(id, now);
    if (live !== undefined) return { kind: 'exists', entry: entryOf(live, fingerprint) };
    const bytes = ENTRY_OVERHEAD_BYTES + id.length;
    if (this.#slots.size >= this.#maxEntries || this.#bytes + bytes > this.#maxBytes) this.#makeRoom(now, bytes);
    const token = ++this.#counters[bucketOf(id)];
    const nonce = newNonce();
    this.#slots.set(id, new Slot(fingerprint.toBigInt(), token, nonce, ttl, now + ttl, bytes));
    this.#grow(bytes);
    return {
      kind: 'claimed',
      fencingToken: trustedFencingToken(BigInt(token), nonce),
      entry: entry ?? new IdempotencyEntry(fingerprint, ttl),
    };
  }

  /** `complete`, without a promise. */
  #complete(key: IdempotencyKey, entry: CompletedEntry, fencingToken: FencingToken, ttlMs: number): FencedOutcome {
    assertDuration('ttlMs', ttlMs);
    assertEntryState(entry, 'completed', 'complete');
    if (this.#closed) throw new StoreClosedError(this.kind, 'complete');
    const id = key.toString();
    const slot = this.#live(id, this.#clock());
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!holds(slot, fencingToken)) return FencedOutcome.FencingMismatch;
    if (entry.fingerprint.toBigInt() !== slot.fingerprint) return FencedOutcome.FingerprintMismatch;
    if (slot.response !== undefined) return FencedOutcome.Applied;
    // Metadata is counted with each entry, even where responses share one object: never less than
    // the entries hold, whichever of them is evicted first.
    const added = responseBytes(entry.response);
    // The bound holds for completions too: with eviction on, entries completed longest ago make
    // room; else (or when that is not enough) the completion is refused, and the claim stays
    // processing (its caller keeps the key held and tries again as room frees up).
    if (this.#bytes + added > this.#maxBytes) this.#roomForCompletion(added);
    // The store's own copy when the caller could still change it (bytes it may reuse).
    const response = copyOf(entry.response);
    slot.response = response;
    slot.ttl = ttlMs;
    slot.expiresAt = this.#clock() + ttlMs;
    if (this.#evict) this.#completedOrder.set(id, slot);
    this.#wake(id);
    slot.bytes += added;
    this.#grow(added);
    return FencedOutcome.Applied;
  }

  async remove(key: IdempotencyKey, fencingToken: FencingToken): Promise<FencedOutcome> {
    this.#assertOpen('remove');
    const id = key.toString();
    const slot = this.#live(id, this.#clock());
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!holds(slot, fencingToken)) return FencedOutcome.FencingMismatch;
    this.#delete(id, slot);
    return FencedOutcome.Applied;
  }

  async touch(key: IdempotencyKey, fencingToken: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    assertDuration('ttlMs', ttlMs);
    this.#assertOpen('touch');
    const now = this.#clock();
    const slot = this.#live(key.toString(), now);
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!holds(slot, fencingToken)) return FencedOutcome.FencingMismatch;
    if (slot.response !== undefined) return FencedOutcome.KeyExpired;
    slot.ttl = ttlMs;
    slot.expiresAt = now + ttlMs;
    return FencedOutcome.Applied;
  }

  async purge(key: IdempotencyKey): Promise<void> {
    this.#assertOpen('purge');
    const id = key.toString();
    const slot = this.#slots.get(id);
    if (slot !== undefined) this.#delete(id, slot);
  }

  async get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    this.#assertOpen('get');
    const slot = this.#live(key.toString(), this.#clock());
    return slot === undefined ? undefined : entryOf(slot);
  }

  /** The state, claim token and time left of the live entry under `key` (for `IdempotencyAdmin`). */
  override async inspect(key: IdempotencyKey): Promise<StoreKeyInfo | undefined> {
    this.#assertOpen('inspect');
    const now = this.#clock();
    const slot = this.#live(key.toString(), now);
    if (slot === undefined) return undefined;
    return {
      state: slot.response === undefined ? 'processing' : 'completed',
      fencingToken: trustedFencingToken(BigInt(slot.token), slot.nonce),
      msLeft: Math.max(0, Math.ceil(slot.expiresAt - now)),
    };
  }

  /**
   * Resolves as soon as the entry under `key` is completed, released, purged or found expired (in
   * process, no polling), after `timeoutMs` at the latest, or when `signal` aborts.
   */
  override waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || this.#closed) return resolve();
      const id = key.toString();
      let waiting = this.#waiters.get(id);
      if (waiting === undefined) {
        waiting = new Set();
        this.#waiters.set(id, waiting);
      }
      const set = waiting;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0 && this.#waiters.get(id) === set) this.#waiters.delete(id);
        resolve();
      };
      // Not unref'd: a wait its caller awaits keeps the process alive (a job waiting for a key).
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  /** Drops every expired entry now (the timer does this every `sweepIntervalMs`). */
  sweep(): void {
    const now = this.#clock();
    for (const [id, slot] of this.#slots) if (slot.expiresAt <= now) this.#delete(id, slot);
  }

  /**
   * Stops the sweep timer, drops all entries, and refuses every operation from then on
   * (`StoreClosedError`): a claim on an emptied store would run again work whose claim it dropped.
   * Requests waiting for a key (`waitForChange`) are woken; their next claim is refused.
   */
  override async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#slots.clear();
    this.#completedOrder.clear();
    this.#bytes = 0;
    for (const set of [...this.#waiters.values()]) for (const wake of [...set]) wake();
  }

  /**
   * Opens a closed store again, empty: for the module, when a new application starts on a store an
   * earlier one closed (an `AppModule` created again, as e2e tests do).
   * @internal
   */
  reopen(): void {
    if (!this.#closed) return;
    this.#closed = false;
    this.#timer = sweepWeakly(new WeakRef<MemoryStore>(this), this.#sweepMs);
  }

  /** The time on the store's clock: `#now()` in ms since the store was made. */
  #clock(): number {
    return this.#now() - this.#epoch;
  }

  #assertOpen(operation: string): void {
    if (this.#closed) throw new StoreClosedError(this.kind, operation);
  }

  /**
   * Where warnings go when no `onWarning` was given (IdempotencyModule passes its logger).
   * @internal
   */
  useWarningFallback(warn: (message: string) => void): void {
    this.#warningFallback = warn;
  }

  /** Frees room for a new entry of `bytes`, or throws StoreFullError. */
  #makeRoom(now: number, bytes: number): void {
    // Sweeping walks every entry: when full, at most once per FULL_SWEEP_MS, not per claim.
    if (now >= this.#nextFullSweep) {
      this.sweep();
      this.#nextFullSweep = now + FULL_SWEEP_MS;
    }
    if (this.#fits(bytes, 1)) return;
    if (this.#evict) {
      this.#evictCompleted(bytes);
      if (this.#fits(bytes, 1)) return;
    }
    this.#count('refused', 1);
    const limit =
      this.#slots.size >= this.#maxEntries
        ? `${this.#maxEntries} live entries`
        : `~${this.#bytes} of ${this.#maxBytes} bytes in ${this.#slots.size} live entries`;
    const message =
      `MemoryStore is full (${limit}); new claims are refused until entries expire. ` +
      'Raise maxBytes, shorten ttlMs, or use ValkeyStore';
    this.#warn(message);
    throw new StoreFullError(message, { maxEntries: this.#maxEntries, maxBytes: this.#maxBytes });
  }

  /** Makes room for `bytes` more of a response, or throws StoreFullError. */
  #roomForCompletion(bytes: number): void {
    const now = this.#clock();
    if (now >= this.#nextFullSweep) {
      this.sweep();
      this.#nextFullSweep = now + FULL_SWEEP_MS;
    }
    if (this.#evict && this.#bytes + bytes > this.#maxBytes) this.#evictCompleted(bytes);
    if (this.#bytes + bytes <= this.#maxBytes) return;
    this.#count('refused', 1);
    const message =
      `MemoryStore is full (~${this.#bytes} of ${this.#maxBytes} bytes in ${this.#slots.size} live entries): a ` +
      `response of ~${bytes} bytes is refused; its key stays held until it fits or the replay window ends. ` +
      'Raise maxBytes, lower maxResponseBytes, shorten ttlMs, or use ValkeyStore';
    this.#warn(message);
    throw new StoreFullError(message, { maxEntries: this.#maxEntries, maxBytes: this.#maxBytes });
  }

  /** Drops the entries completed longest ago until `bytes` more fit below 90% of the bounds. */
  #evictCompleted(bytes: number): void {
    let evicted = 0;
    for (const [id, slot] of this.#completedOrder) {
      if (this.#fits(bytes, EVICT_TO)) break;
      this.#delete(id, slot);
      evicted++;
    }
    if (evicted === 0) return;
    this.#count('evicted', evicted);
    this.#warn(
      `MemoryStore is full: evicted the ${evicted} entries completed longest ago (whenFull: 'evict-completed'); ` +
        'retries of those keys run their handlers again',
    );
  }

  #fits(bytes: number, share: number): boolean {
    return this.#slots.size < this.#maxEntries * share && this.#bytes + bytes <= this.#maxBytes * share;
  }

  #grow(bytes: number): void {
    this.#bytes += bytes;
    if (
      !this.#highWater &&
      (this.#bytes > this.#maxBytes * HIGH_WATER || this.#slots.size > this.#maxEntries * HIGH_WATER)
    ) {
      this.#highWater = true;
      this.#count('high-water', 1);
      this.#warn(
        `MemoryStore holds over 80% of its bound (${this.#slots.size} entries, ~${this.#bytes} of ${this.#maxBytes} bytes); ` +
          'at the bound it refuses new claims',
      );
    }
  }

  #delete(id: string, slot: Slot): void {
    this.#slots.delete(id);
    if (this.#evict) this.#completedOrder.delete(id);
    this.#bytes -= slot.bytes;
    this.#wake(id);
    if (
      this.#highWater &&
      this.#bytes < this.#maxBytes * LOW_WATER &&
      this.#slots.size < this.#maxEntries * LOW_WATER
    ) {
      this.#highWater = false;
    }
  }

  /** Wakes the requests waiting on `id`. */
  #wake(id: string): void {
    // Nearly always nobody waits: no lookup then.
    if (this.#waiters.size === 0) return;
    const set = this.#waiters.get(id);
    if (set !== undefined) for (const wake of [...set]) wake();
  }

  #warn(message: string): void {
    const report = this.#onWarning ?? this.#warningFallback;
    if (report !== undefined) report(message);
    else process.emitWarning(message, 'IdempotencyWarning');
  }

  #count(event: 'high-water' | 'refused' | 'evicted', n: number): void {
    telemetry()?.capacity.add(n, { [A.store]: this.kind, [A.capacityEvent]: event });
  }

  #live(id: string, now: number): Slot | undefined {
    const slot = this.#slots.get(id);
    if (slot === undefined) return undefined;
    if (slot.expiresAt <= now) {
      this.#delete(id, slot);
      return undefined;
    }
    return slot;
  }
}

/**
 * Sweeps `store` every `ms` while it is alive. The timer holds the store weakly, so a store nobody
 * uses any more (an app closed without closing a store it did not own) is collected, and the timer
 * stops, instead of living on with it. A function of its own: a closure made in the constructor
 * would share its context with closures that hold the store itself.
 */
function sweepWeakly(store: WeakRef<MemoryStore>, ms: number): NodeJS.Timeout {
  const timer = setInterval(() => {
    const live = store.deref();
    if (live === undefined) clearInterval(timer);
    else live.sweep();
  }, ms);
  timer.unref();
  return timer;
}

// Entries are handed out fresh each time, so no caller can complete another's object, and the
// store keeps one object per key, not an entry beside it. `like`: the caller's fingerprint, which
// the entry shares when it is the same number (a retry of the same request: nothing to make).
function entryOf(slot: Slot, like?: Fingerprint): AnyEntry {
  const fingerprint =
    like !== undefined && like.toBigInt() === slot.fingerprint ? like : trustedFingerprint(slot.fingerprint);
  return slot.response === undefined
    ? new IdempotencyEntry(fingerprint, slot.ttl)
    : completedEntry(fingerprint, slot.ttl, slot.response);
}

function holds(slot: Slot, token: FencingToken): boolean {
  return token instanceof FencingToken && token.nonce === slot.nonce && token.value === BigInt(slot.token);
}

/** What the store keeps of a response: the response itself when its body is text, else a copy. */
function copyOf(response: CachedResponse): CachedResponse {
  // Text and frozen metadata cannot change; bytes can (the caller may reuse its buffer).
  if (bodyText(response) !== undefined) return response;
  // Its own small buffer, not a slice of Node's shared pool (which would keep the whole slab alive).
  return trustedResponse(response.statusCode, new Uint8Array(response.body), response.metadata);
}

function responseBytes(response: CachedResponse): number {
  let bytes = RESPONSE_OVERHEAD_BYTES + bodySize(response) + METADATA_OVERHEAD_BYTES;
  const metadata = response.metadata;
  for (const name in metadata) bytes += METADATA_ENTRY_BYTES + name.length + metadata[name].length;
  return bytes;
}
