import {
  CachedResponse,
  CompletedEntry,
  CompletionFailedError,
  FencedOutcome,
  FencingToken,
  IdempotencyKey,
  LeaseLostError,
  MemoryStore,
} from '../index';

/** A memory store whose completions fail a given number of times (a fault injector). */
class FlakyCompletions extends MemoryStore {
  failures = 0;
  attempts = 0;
  override async complete(key: IdempotencyKey, entry: CompletedEntry, token: FencingToken, ttlMs: number) {
    this.attempts++;
    if (this.failures > 0) {
      this.failures--;
      throw new Error('injected: complete failed');
    }
    return super.complete(key, entry, token, ttlMs);
  }
}

const ok = () => new CachedResponse({ statusCode: 201, body: 'done' });

describe('executeOrReplay when storing the result fails', () => {
  let store: FlakyCompletions;
  beforeEach(() => (store = new FlakyCompletions()));
  afterEach(() => store.close());

  it('retries with the same token and stores the result once the store recovers', async () => {
    store.failures = 3;
    const key = IdempotencyKey.default();
    let runs = 0;
    const result = await store
      .claim(key, 2_000)
      .fingerprint('POST /x', '')
      .executeOrReplay(60_000, async () => {
        runs++;
        return ok();
      });
    expect(result.kind).toBe('executed');
    expect(store.attempts).toBe(4);
    expect(runs).toBe(1);
    expect((await store.get(key))?.isCompleted()).toBe(true);
  });

  it('gives up when the lease runs out (even though renewals still work) and never releases the key', async () => {
    store.failures = Number.POSITIVE_INFINITY;
    const key = IdempotencyKey.default();
    const started = Date.now();
    await expect(
      store
        .claim(key, 300)
        .fingerprint('POST /x', '')
        .executeOrReplay(60_000, async () => ok()),
    ).rejects.toThrow(CompletionFailedError);
    expect(Date.now() - started).toBeLessThan(2_000);
    // The side effect ran: the key stays claimed until its lease ends, so no retry runs it again now.
    const entry = await store.get(key);
    expect(entry?.isCompleted()).toBe(false);
    expect(await store.remove(key, new FencingToken(1n))).toBe(FencedOutcome.FencingMismatch);
  });
});

describe('executeOrReplay lease heartbeat', () => {
  class LosingStore extends MemoryStore {
    touches = 0;
    override async touch(): Promise<FencedOutcome> {
      this.touches++;
      return FencedOutcome.FencingMismatch; // as if another claim had taken the key over
    }
  }

  it('aborts the side effect signal with LeaseLostError when a renewal is refused', async () => {
    const store = new LosingStore();
    let reason: unknown;
    const result = await store
      .claim(IdempotencyKey.default(), 90)
      .fingerprint('POST /slow', '')
      .executeOrReplay(60_000, async (_token, signal) => {
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        reason = signal.reason;
        return ok();
      });
    expect(store.touches).toBeGreaterThanOrEqual(1);
    expect(reason).toBeInstanceOf(LeaseLostError);
    expect((reason as LeaseLostError).outcome).toBe(FencedOutcome.FencingMismatch);
    // The lease was only reported lost here (the memory store still holds the claim), so the
    // completion goes through.
    expect(result.kind).toBe('executed');
    await store.close();
  });
});
