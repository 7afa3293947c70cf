import {
  CachedResponse,
  FencedOutcome,
  Fingerprint,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyStore,
  IdempotencyStoreError,
  MemoryStore,
} from '../index';
import { FaultyStore } from './faulty-store';
import { storeContract } from './store-contract';

const FP = Fingerprint.fromBigInt(42n);
const entry = () => new IdempotencyEntry(FP, 60_000);
const response = (body = 'ok') => new CachedResponse({ statusCode: 200, body });

function setup() {
  const inner = new MemoryStore();
  return { inner, store: new FaultyStore(inner), key: IdempotencyKey.default() };
}

async function claimed(store: IdempotencyStore, key: IdempotencyKey) {
  const result = await store.tryInsert(key, entry());
  if (result.kind !== 'claimed') throw new Error('expected a claim');
  return result;
}

describe('FaultyStore', () => {
  it('wraps a store, and is one, of the same kind', () => {
    const { inner, store } = setup();
    expect(store).toBeInstanceOf(IdempotencyStore);
    expect(store.kind).toBe('memory');
    expect(store.inner).toBe(inner);
    expect(() => new FaultyStore({} as never)).toThrow(TypeError);
  });

  describe('failNext', () => {
    it('fails the next call of the operation without reaching the store, then lets calls through', async () => {
      const { inner, store, key } = setup();
      store.failNext('tryInsert');
      await expect(store.tryInsert(key, entry())).rejects.toThrow(
        new IdempotencyStoreError('injected: tryInsert failed'),
      );
      expect(await inner.get(key)).toBeUndefined();
      expect((await store.tryInsert(key, entry())).kind).toBe('claimed');
      expect(store.calls.tryInsert).toBe(2);
    });

    it('throws the error it was given, and leaves other operations alone', async () => {
      const { store, key } = setup();
      const refused = new Error('connection refused');
      store.failNext('get', refused);
      expect((await store.tryInsert(key, entry())).kind).toBe('claimed');
      await expect(store.get(key)).rejects.toBe(refused);
      expect(await store.get(key)).toBeDefined();
    });

    it('fails the given number of calls, or every call until healed', async () => {
      const { store, key } = setup();
      store.failNext('get', undefined, 2);
      await expect(store.get(key)).rejects.toThrow(IdempotencyStoreError);
      await expect(store.get(key)).rejects.toThrow(IdempotencyStoreError);
      await expect(store.get(key)).resolves.toBeUndefined();
      store.failNext('purge', undefined, Infinity);
      for (let i = 0; i < 5; i++) await expect(store.purge(key)).rejects.toThrow(/purge failed/);
      expect(store.pending('purge')).toBe(Infinity);
      store.heal('purge');
      await expect(store.purge(key)).resolves.toBeUndefined();
    });

    it('fails completions, removals and touches alike', async () => {
      const { store, key } = setup();
      const c = await claimed(store, key);
      store.failNext('touch').failNext('remove').failNext('complete');
      await expect(store.touch(key, c.fencingToken, 1_000)).rejects.toThrow(/touch failed/);
      await expect(store.remove(key, c.fencingToken)).rejects.toThrow(/remove failed/);
      await expect(store.complete(key, c.entry.complete(response()), c.fencingToken, 1_000)).rejects.toThrow(
        /complete failed/,
      );
      expect((await store.get(key))?.isCompleted()).toBe(false);
    });
  });

  describe('delayNext', () => {
    it('lets the next call reach the store ms later', async () => {
      const { inner, store, key } = setup();
      store.delayNext('tryInsert', 150);
      const started = Date.now();
      const claim = store.tryInsert(key, entry());
      // Not there yet (no timer has run since the call, so the 150 ms delay cannot have passed).
      expect(await inner.get(key)).toBeUndefined();
      expect((await claim).kind).toBe('claimed');
      expect(Date.now() - started).toBeGreaterThanOrEqual(145);
      expect(await inner.get(key)).toBeDefined();
    });

    it('delays only as many calls as asked, and refuses a bad delay', async () => {
      const { store, key } = setup();
      store.delayNext('get', 100, 2);
      expect(store.pending('get')).toBe(2);
      const started = Date.now();
      await store.get(key);
      await store.get(key);
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      expect(store.pending('get')).toBe(0);
      const quick = Date.now();
      await store.get(key);
      // Not delayed: a delayed call takes 100 ms at least (a timer never fires early).
      expect(Date.now() - quick).toBeLessThan(100);
      for (const bad of [-1, NaN, Infinity]) expect(() => store.delayNext('get', bad)).toThrow(RangeError);
    });
  });

  describe('loseReplyNext', () => {
    it('applies a claim, then throws as if the reply was lost', async () => {
      const { inner, store, key } = setup();
      store.loseReplyNext('tryInsert');
      await expect(store.tryInsert(key, entry())).rejects.toThrow(
        new IdempotencyStoreError('injected: the reply to tryInsert was lost'),
      );
      expect((await inner.get(key))?.isProcessing()).toBe(true);
      expect((await store.tryInsert(key, entry())).kind).toBe('exists');
    });

    it('applies a completion, then throws; the holder completing again gets Applied and the first response', async () => {
      const { inner, store, key } = setup();
      const c = await claimed(store, key);
      const done = c.entry.complete(response('first'));
      store.loseReplyNext('complete');
      await expect(store.complete(key, done, c.fencingToken, 60_000)).rejects.toThrow(/reply to complete was lost/);
      const stored = await inner.get(key);
      expect(stored?.isCompleted() && stored.response.text()).toBe('first');
      expect(await store.complete(key, done, c.fencingToken, 60_000)).toBe(FencedOutcome.Applied);
    });

    it('applies a removal, a touch and a purge, then throws', async () => {
      const { inner, store } = setup();
      const [a, b, c] = [IdempotencyKey.default(), IdempotencyKey.default(), IdempotencyKey.default()];
      const ca = await claimed(store, a);
      const cb = await claimed(store, b);
      await claimed(store, c);
      store.loseReplyNext('remove').loseReplyNext('touch').loseReplyNext('purge');
      await expect(store.remove(a, ca.fencingToken)).rejects.toThrow(/reply to remove was lost/);
      expect(await inner.get(a)).toBeUndefined();
      await expect(store.touch(b, cb.fencingToken, 123_000)).rejects.toThrow(/reply to touch was lost/);
      expect((await inner.get(b))?.ttl).toBe(123_000);
      await expect(store.purge(c)).rejects.toThrow(/reply to purge was lost/);
      expect(await inner.get(c)).toBeUndefined();
    });

    it('passes on the store’s own error when the operation itself fails', async () => {
      const inner = new MemoryStore();
      const store = new FaultyStore(new FaultyStore(inner).failNext('get', new Error('down')));
      store.loseReplyNext('get');
      await expect(store.get(IdempotencyKey.default())).rejects.toThrow('down');
    });
  });

  it('takes faults of one operation in the order they were asked for', async () => {
    const { store, key } = setup();
    const first = new Error('first');
    store.failNext('get', first).delayNext('get', 80).loseReplyNext('get');
    expect(store.pending('get')).toBe(3);
    await expect(store.get(key)).rejects.toBe(first);
    const started = Date.now();
    await expect(store.get(key)).resolves.toBeUndefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(75);
    await expect(store.get(key)).rejects.toThrow(/reply to get was lost/);
    await expect(store.get(key)).resolves.toBeUndefined();
    expect(store.calls.get).toBe(4);
  });

  it('heals one operation or all of them', async () => {
    const { store, key } = setup();
    store.failNext('get').failNext('purge').failNext('tryInsert');
    store.heal('get');
    expect(store.pending('get')).toBe(0);
    expect(store.pending('purge')).toBe(1);
    await expect(store.get(key)).resolves.toBeUndefined();
    store.heal();
    expect(store.pending('purge') + store.pending('tryInsert')).toBe(0);
    await expect(store.purge(key)).resolves.toBeUndefined();
    expect((await store.tryInsert(key, entry())).kind).toBe('claimed');
  });

  it('refuses an unknown operation and a count below 1', () => {
    const { store } = setup();
    expect(() => store.failNext('ping' as never)).toThrow(/unknown store operation "ping"/);
    expect(() => store.loseReplyNext('get', 0)).toThrow(RangeError);
    expect(() => store.delayNext('get', 10, NaN)).toThrow(RangeError);
  });

  it('disturbs the claim builder too, which goes through the wrapper', async () => {
    const { store, key } = setup();
    let runs = 0;
    store.loseReplyNext('complete');
    const run = () =>
      store
        .claim(key, 5_000)
        .fingerprint('POST /x', '')
        .executeOrReplay(60_000, async () => response(`run ${++runs}`));
    expect((await run()).kind).toBe('executed');
    expect(store.calls.complete).toBeGreaterThanOrEqual(2);
    const again = await run();
    expect(again.kind === 'replayed' && again.response.text()).toBe('run 1');
    expect(runs).toBe(1);
  });

  it('passes waitForChange, ping and close to the wrapped store', async () => {
    const { inner, store, key } = setup();
    const ping = jest.spyOn(inner, 'ping');
    await store.ping();
    expect(ping).toHaveBeenCalledTimes(1);
    const waiting = store.waitForChange(key, 5_000);
    const c = await claimed(inner, key);
    const started = Date.now();
    await inner.remove(key, c.fencingToken);
    await waiting;
    // Woken by the change, not by its 5 s timeout.
    expect(Date.now() - started).toBeLessThan(4_000);
    await claimed(store, key);
    await store.close();
    expect(inner.size).toBe(0);
  });
});

// A FaultyStore with no faults pending is the store it wraps.
storeContract(() => new FaultyStore(new MemoryStore()), { describe, it, name: 'FaultyStore over MemoryStore' });
