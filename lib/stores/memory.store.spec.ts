import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  CachedResponse,
  DefaultFingerprintStrategy,
  FencedOutcome,
  FencingToken,
  IdempotencyDecodeError,
  IdempotencyEntry,
  IdempotencyKey,
  MemoryStore,
  StoreFullError,
} from '../index';

const fp = new DefaultFingerprintStrategy().compute('POST /x', '');
const entry = (ttl = 60_000) => new IdempotencyEntry(fp, ttl);

describe('MemoryStore specifics', () => {
  it('refuses new claims with StoreFullError when full of live entries, never evicting one', async () => {
    const clock = { now: 1_000 };
    const store = new MemoryStore({ maxEntries: 3, now: () => clock.now });
    const keys = ['a', 'b', 'c'].map((k) => new IdempotencyKey(k));
    const claims = [];
    for (const key of keys) claims.push(await store.tryInsert(key, entry()));
    // One completed, two still processing: none may be dropped to make room.
    const first = claims[0];
    if (first.kind !== 'claimed') throw new Error('expected a claim');
    await store.complete(
      keys[0],
      first.entry.complete(new CachedResponse({ statusCode: 200, body: 'x' })),
      first.fencingToken,
      60_000,
    );
    const refused = store.tryInsert(new IdempotencyKey('d'), entry());
    await expect(refused).rejects.toBeInstanceOf(StoreFullError);
    await expect(refused).rejects.toMatchObject({ limit: { maxEntries: 3 } });
    for (const key of keys) expect(await store.get(key)).toBeDefined();
    // A claim on an existing key still answers (it does not need room).
    expect((await store.tryInsert(keys[1], entry())).kind).toBe('exists');
    await store.close();
  });

  it('makes room from expired entries when full', async () => {
    const clock = { now: 1_000 };
    const store = new MemoryStore({ maxEntries: 2, now: () => clock.now });
    await store.tryInsert(new IdempotencyKey('short'), entry(10));
    await store.tryInsert(new IdempotencyKey('long'), entry(60_000));
    clock.now += 500; // 'short' expired, and the full-store sweep is due
    expect((await store.tryInsert(new IdempotencyKey('new'), entry())).kind).toBe('claimed');
    expect(store.size).toBe(2);
    await store.close();
  });

  it('counts expiry on its clock from any start: an epoch time, a clock set only later, a clock set back', async () => {
    const done = new CachedResponse({ statusCode: 200, body: 'x' });
    for (const start of [Date.now(), undefined, 5]) {
      const clock: { now: number | undefined } = { now: start };
      const store = new MemoryStore({ now: () => clock.now as number });
      clock.now ??= 1_700_000_000_000;
      const key = new IdempotencyKey('k');
      const claim = await store.tryInsert(key, entry(100));
      if (claim.kind !== 'claimed') throw new Error('expected a claim');
      expect((await store.inspect(key))?.msLeft).toBe(100);
      clock.now += 99;
      expect(await store.complete(key, claim.entry.complete(done), claim.fencingToken, 1_000)).toBe(
        FencedOutcome.Applied,
      );
      expect((await store.inspect(key))?.msLeft).toBe(1_000);
      clock.now -= 50; // set back: the entry lives longer, as it did with times kept as given
      expect((await store.inspect(key))?.msLeft).toBe(1_050);
      clock.now += 1_049;
      expect((await store.get(key))?.isCompleted()).toBe(true);
      clock.now += 1;
      expect(await store.get(key)).toBeUndefined();
      expect((await store.tryInsert(key, entry())).kind).toBe('claimed');
      await store.close();
    }
  });

  it('validates its options with RangeErrors naming them', () => {
    expect(() => new MemoryStore({ maxEntries: 0 })).toThrow(/maxEntries/);
    expect(() => new MemoryStore({ maxEntries: 1.5 })).toThrow(RangeError);
    expect(() => new MemoryStore({ sweepIntervalMs: -1 })).toThrow(/sweepIntervalMs/);
  });

  it('sweeps expired entries on its own, with a timer that does not keep the process alive', async () => {
    const store = new MemoryStore({ sweepIntervalMs: 20 });
    await store.tryInsert(new IdempotencyKey('gone'), entry(5));
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(store.size).toBe(0);
    await store.close();

    // A process that forgets close() still exits by itself: the timer keeps nothing alive.
    const keepingAlive = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = keepingAlive();
    const forgotten = new MemoryStore({ sweepIntervalMs: 10 });
    expect(keepingAlive()).toBe(before);
    await forgotten.close();
  });

  it('is collected once nobody holds it, unclosed (its sweep timer holds it weakly)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let collected = false;
    const registry = new FinalizationRegistry<string>(() => (collected = true));
    (() => {
      const dropped = new MemoryStore({ sweepIntervalMs: 5 });
      void dropped.tryInsert(IdempotencyKey.default(), entry());
      registry.register(dropped, 'dropped');
    })();
    for (let i = 0; i < 50 && !collected; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(collected).toBe(true);
  });
});

describe('FencingToken.fromJSON', () => {
  it('turns an out-of-range number into a decode error', () => {
    expect(() => FencingToken.fromJSON('99999999999999999999')).toThrow(IdempotencyDecodeError);
    expect(() => FencingToken.fromJSON({ value: '99999999999999999999', nonce: 'n' })).toThrow(IdempotencyDecodeError);
  });
});

describe('MemoryStore bounds in bytes', () => {
  const body = (n: number) => new CachedResponse({ statusCode: 200, body: 'x'.repeat(n) });

  async function fill(store: MemoryStore, n: number, bytes: number, complete: boolean, prefix = 'key') {
    const keys: IdempotencyKey[] = [];
    for (let i = 0; i < n; i++) {
      const key = new IdempotencyKey(`${prefix}-${i}`);
      const claim = await store.tryInsert(key, entry());
      if (claim.kind !== 'claimed') throw new Error('expected a claim');
      if (complete) await store.complete(key, claim.entry.complete(body(bytes)), claim.fencingToken, 60_000);
      keys.push(key);
    }
    return keys;
  }

  it('defaults to a quarter of the V8 heap limit, with no entry count limit', () => {
    const store = new MemoryStore();
    expect(store.maxBytes).toBe(Math.floor(getHeapStatistics().heap_size_limit / 4));
    void store.close();
  });

  it('counts the bodies it holds, and frees them with the entries', async () => {
    const store = new MemoryStore({ onWarning: () => undefined });
    const [key] = await fill(store, 1, 10_000, true);
    expect(store.bytes).toBeGreaterThan(10_000);
    expect(store.bytes).toBeLessThan(11_000);
    await store.purge(key);
    expect(store.bytes).toBe(0);
    await store.close();
  });

  it('warns once past 80% of maxBytes, then refuses new claims at the bound (never dropping a live entry)', async () => {
    const warnings: string[] = [];
    const store = new MemoryStore({ maxBytes: 20_000, onWarning: (m) => warnings.push(m) });
    const keys = await fill(store, 8, 2_000, true);
    expect(warnings.filter((w) => /over 80%/.test(w))).toHaveLength(1);
    const refused = fill(store, 4, 2_000, true, 'more');
    await expect(refused).rejects.toBeInstanceOf(StoreFullError);
    await expect(refused).rejects.toMatchObject({ limit: { maxBytes: 20_000 } });
    expect(warnings.some((w) => /is full/.test(w))).toBe(true);
    for (const key of keys) expect((await store.get(key))?.isCompleted()).toBe(true);
    await store.close();
  });

  it("whenFull: 'evict-completed' drops the oldest completed entries, never one still processing", async () => {
    const warnings: string[] = [];
    const store = new MemoryStore({
      maxBytes: 20_000,
      whenFull: 'evict-completed',
      onWarning: (m) => warnings.push(m),
    });
    const processing = await fill(store, 3, 0, false); // key-0..2, oldest, never completed
    const completed: IdempotencyKey[] = [];
    for (let i = 0; i < 12; i++) {
      const key = new IdempotencyKey(`done-${i}`);
      const claim = await store.tryInsert(key, entry());
      if (claim.kind !== 'claimed') throw new Error('expected a claim');
      await store.complete(key, claim.entry.complete(body(2_000)), claim.fencingToken, 60_000);
      completed.push(key);
    }
    for (const key of processing) expect((await store.get(key))?.isProcessing()).toBe(true);
    expect(await store.get(completed[0])).toBeUndefined();
    expect((await store.get(completed[11]))?.isCompleted()).toBe(true);
    expect(store.bytes).toBeLessThanOrEqual(20_000);
    expect(warnings.some((w) => /evicted the \d+ entries completed longest ago/.test(w))).toBe(true);
    await store.close();
  });

  it("whenFull: 'evict-completed' evicts by completion age: a slow request claimed first and completed last is kept (issue 17, defect 6)", async () => {
    const store = new MemoryStore({ maxBytes: 20_000, whenFull: 'evict-completed', onWarning: () => undefined });
    // The slow one is claimed first and completed last, after 7 others were claimed and completed.
    const slowKey = new IdempotencyKey('slow');
    const slow = await store.tryInsert(slowKey, entry());
    if (slow.kind !== 'claimed') throw new Error('expected a claim');
    const quick: IdempotencyKey[] = [];
    for (let i = 0; i < 7; i++) {
      const key = new IdempotencyKey(`quick-${i}`);
      const claim = await store.tryInsert(key, entry());
      if (claim.kind !== 'claimed') throw new Error('expected a claim');
      await store.complete(key, claim.entry.complete(body(2_000)), claim.fencingToken, 60_000);
      quick.push(key);
    }
    await store.complete(slowKey, slow.entry.complete(body(2_000)), slow.fencingToken, 60_000);
    // Fill past the bound: eviction makes room from the entries completed longest ago.
    for (let i = 0; i < 4; i++) {
      const key = new IdempotencyKey(`more-${i}`);
      const claim = await store.tryInsert(key, entry());
      if (claim.kind !== 'claimed') throw new Error('expected a claim');
      await store.complete(key, claim.entry.complete(body(2_000)), claim.fencingToken, 60_000);
    }
    expect(await store.get(quick[0])).toBeUndefined();
    expect((await store.get(slowKey))?.isCompleted()).toBe(true);
    expect(store.bytes).toBeLessThanOrEqual(20_000);
    await store.close();
  });

  it('copies the body it stores: a caller reusing its buffer does not change the stored response', async () => {
    const store = new MemoryStore();
    const key = new IdempotencyKey('copy');
    const shared = Buffer.from('first');
    const claim = await store.tryInsert(key, entry());
    if (claim.kind !== 'claimed') throw new Error('expected a claim');
    await store.complete(
      key,
      claim.entry.complete(new CachedResponse({ statusCode: 200, body: shared })),
      claim.fencingToken,
      60_000,
    );
    shared.write('later');
    const stored = await store.get(key);
    expect(stored?.isCompleted() && Buffer.from(stored.response.body).toString()).toBe('first');
    await store.close();
  });
});
