import { Test, TestingModule } from '@nestjs/testing';
import { IdempotencyModule, IdempotencyService, IdempotencyStoreError, MemoryStore } from 'nestjs-idempotent';
import { AtMostOnceLedger, FaultyStore } from 'nestjs-idempotent/testing';

describe('charging, when the store misbehaves', () => {
  let app: TestingModule;
  let store: FaultyStore;
  let ledger: AtMostOnceLedger;
  let charge: (orderId: string) => Promise<{ value: { charged: number }; replayed: boolean }>;

  beforeEach(async () => {
    store = new FaultyStore(new MemoryStore()); // or new FaultyStore(yourStore)
    ledger = new AtMostOnceLedger();
    app = await Test.createTestingModule({
      imports: [IdempotencyModule.forRoot({ store, leaseMs: 200 })],
    }).compile();
    const idempotency = app.get(IdempotencyService);
    charge = (orderId) =>
      idempotency.run(orderId, async () => {
        ledger.record(orderId); // the side effect under test
        return { charged: 100 };
      });
  });

  afterEach(async () => {
    await app.close();
    ledger.assertAtMostOnce(); // throws naming every order charged more than once
  });

  it('a lost completion reply is retried with the same token: one charge, then replays', async () => {
    store.loseReplyNext('complete');
    expect(await charge('order-1')).toEqual({ value: { charged: 100 }, replayed: false });
    expect(await charge('order-1')).toEqual({ value: { charged: 100 }, replayed: true });
    expect(store.calls.complete).toBe(2);
  });

  it('a lost claim reply holds the key until its lease ends; then it runs once', async () => {
    store.loseReplyNext('tryInsert');
    await expect(charge('order-2')).rejects.toMatchObject({ reason: 'in-flight' });
    expect(ledger.count('order-2')).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 250)); // the orphaned lease runs out
    expect(await charge('order-2')).toEqual({ value: { charged: 100 }, replayed: false });
  });

  it('an unreachable store runs nothing', async () => {
    store.failNext('tryInsert', undefined, Infinity);
    await expect(charge('order-3')).rejects.toThrow(IdempotencyStoreError);
    store.heal();
    expect(ledger.count('order-3')).toBe(0);
  });

  it('a slow store: ten duplicates at once still charge once', async () => {
    store.delayNext('tryInsert', 50, 10);
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => charge('order-4')));
    // One ran; the others replayed it or found it in flight (an IdempotencyConflictError).
    expect(results.filter((r) => r.status === 'fulfilled' && !r.value.replayed)).toHaveLength(1);
    expect(ledger.count('order-4')).toBe(1);
  });
});
