/**
 * A small store written for the kit's own tests: correct as it is, and broken on request in one of
 * the ways real stores break, to show the contract suite catches each.
 */
import { randomBytes } from 'node:crypto';
import {
  AnyEntry,
  CachedResponse,
  CompletedEntry,
  FencedOutcome,
  FencingToken,
  Fingerprint,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyStore,
  InsertResult,
  ProcessingEntry,
} from '../../lib';

export type ToyBug =
  /** Checks the key, then claims it after an `await`: concurrent claims all win. */
  | 'claims-twice'
  /** Accepts any token in complete, remove and touch (checks only that an entry is there). */
  | 'ignores-fencing'
  /** Lets a completion overwrite the stored response (and its ttl). */
  | 'replaces-completed';

interface Slot {
  fingerprint: Fingerprint;
  token: bigint;
  nonce: string;
  ttl: number;
  expiresAt: number;
  response?: CachedResponse;
}

function duration(name: string, ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 1) throw new RangeError(`${name} must be a whole number from 1, got ${ms}`);
  return ms;
}

export class ToyStore extends IdempotencyStore {
  readonly kind = 'toy';
  readonly #slots = new Map<string, Slot>();
  // One counter per key, never dropped: simple, and fine for a toy (a real store bounds them).
  readonly #counters = new Map<string, bigint>();

  constructor(readonly bug?: ToyBug) {
    super();
  }

  async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    const id = key.toString();
    const live = this.#live(id);
    if (live !== undefined) return { kind: 'exists', entry: entryOf(live) };
    if (this.bug === 'claims-twice') await Promise.resolve();
    const token = (this.#counters.get(id) ?? 0n) + 1n;
    this.#counters.set(id, token);
    const nonce = randomBytes(16).toString('base64url');
    this.#slots.set(id, {
      fingerprint: entry.fingerprint,
      token,
      nonce,
      ttl: entry.ttl,
      expiresAt: Date.now() + entry.ttl,
    });
    return { kind: 'claimed', fencingToken: new FencingToken(token, nonce), entry };
  }

  async complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    token: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    duration('ttlMs', ttlMs);
    const slot = this.#live(key.toString());
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!this.#holds(slot, token)) return FencedOutcome.FencingMismatch;
    if (!slot.fingerprint.equals(entry.fingerprint)) return FencedOutcome.FingerprintMismatch;
    if (slot.response !== undefined && this.bug !== 'replaces-completed') return FencedOutcome.Applied;
    slot.response = entry.response;
    slot.ttl = ttlMs;
    slot.expiresAt = Date.now() + ttlMs;
    return FencedOutcome.Applied;
  }

  async remove(key: IdempotencyKey, token: FencingToken): Promise<FencedOutcome> {
    const slot = this.#live(key.toString());
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!this.#holds(slot, token)) return FencedOutcome.FencingMismatch;
    this.#slots.delete(key.toString());
    return FencedOutcome.Applied;
  }

  async touch(key: IdempotencyKey, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    duration('ttlMs', ttlMs);
    const slot = this.#live(key.toString());
    if (slot === undefined) return FencedOutcome.KeyExpired;
    if (!this.#holds(slot, token)) return FencedOutcome.FencingMismatch;
    if (slot.response !== undefined) return FencedOutcome.KeyExpired;
    slot.ttl = ttlMs;
    slot.expiresAt = Date.now() + ttlMs;
    return FencedOutcome.Applied;
  }

  async purge(key: IdempotencyKey): Promise<void> {
    this.#slots.delete(key.toString());
  }

  async get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    const slot = this.#live(key.toString());
    return slot === undefined ? undefined : entryOf(slot);
  }

  #holds(slot: Slot, token: FencingToken): boolean {
    return this.bug === 'ignores-fencing' || (token.value === slot.token && token.nonce === slot.nonce);
  }

  #live(id: string): Slot | undefined {
    const slot = this.#slots.get(id);
    if (slot !== undefined && slot.expiresAt <= Date.now()) this.#slots.delete(id);
    return slot !== undefined && slot.expiresAt > Date.now() ? slot : undefined;
  }
}

function entryOf(slot: Slot): AnyEntry {
  const entry = new IdempotencyEntry(slot.fingerprint, slot.ttl);
  return slot.response === undefined ? entry : entry.complete(slot.response);
}
