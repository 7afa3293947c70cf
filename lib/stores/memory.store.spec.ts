import {
  CachedResponse,
  DefaultFingerprintStrategy,
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
    await expect(refused).rejects.toMatchObject({ maxEntries: 3 });
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

  it('closes on module destroy (Nest calls it on the IdempotencyStore provider)', async () => {
    const store = new MemoryStore();
    await store.tryInsert(IdempotencyKey.default(), entry());
    await store.onModuleDestroy();
    expect(store.size).toBe(0);
  });
});

describe('FencingToken.fromJSON', () => {
  it('turns an out-of-range number into a decode error', () => {
    expect(() => FencingToken.fromJSON('99999999999999999999')).toThrow(IdempotencyDecodeError);
    expect(() => FencingToken.fromJSON({ value: '99999999999999999999', nonce: 'n' })).toThrow(IdempotencyDecodeError);
  });
});
