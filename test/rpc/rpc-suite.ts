import { randomUUID } from 'node:crypto';
import { IDEMPOTENCY_PROBLEM_TYPES, type IdempotencyStore } from '../../lib';
import { eventually, handledEvents, ledger, type RpcFixture, type RpcTransport, startRpcApp } from './rpc-app';

export interface RpcSuiteSetup {
  transport: RpcTransport;
  makeStore(): Promise<{ store: IdempotencyStore; close(): Promise<void> }>;
  redis?: () => { host: string; port: number };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The message handler behaviour (DESIGN.md 6.4) over one real transport and store. */
export function runRpcSuite(name: string, setup: RpcSuiteSetup): void {
  describe(`@Idempotent() message handlers: ${name}`, () => {
    let app: RpcFixture;
    let closeStore: () => Promise<void>;

    beforeAll(async () => {
      const { store, close } = await setup.makeStore();
      closeStore = close;
      app = await startRpcApp(setup.transport, store, setup.redis?.());
    }, 30_000);

    afterAll(async () => {
      await app?.close();
      await closeStore?.();
    });

    it('concurrent duplicates: the handler runs once, the others are refused in flight; then replays', async () => {
      const key = randomUUID();
      const data = { idempotencyKey: key, amount: 42, delayMs: 1_000 };
      const first = app.send('charge', data);
      await eventually(() => ledger.count(`charge:${key}`) === 1);
      const settled = await Promise.allSettled(Array.from({ length: 20 }, () => app.send('charge', data)));
      for (const s of settled) {
        expect(s.status).toBe('rejected');
        expect((s as PromiseRejectedResult).reason).toEqual({
          type: IDEMPOTENCY_PROBLEM_TYPES.inFlight,
          title: 'Request in progress',
          status: 409,
          detail: 'A message with this idempotency key is still being processed; retry later.',
        });
      }
      // The first caller gets the result as the handler returned it (the transport serialises it).
      expect(await first).toEqual({ charged: 42, run: 1, at: '1970-01-01T00:00:00.000Z' });
      const replays = await Promise.all(Array.from({ length: 5 }, () => app.send('charge', data)));
      for (const r of replays) expect(r).toEqual({ charged: 42, run: 1, at: '1970-01-01T00:00:00.000Z' });
      expect(ledger.count(`charge:${key}`)).toBe(1);
    });

    it('20 duplicates sent at once: the handler runs once; each caller gets its result or in-flight', async () => {
      const key = randomUUID();
      const data = { idempotencyKey: key, amount: 9, delayMs: 100 };
      const settled = await Promise.allSettled(Array.from({ length: 20 }, () => app.send('charge', data)));
      expect(ledger.count(`charge:${key}`)).toBe(1);
      for (const s of settled) {
        if (s.status === 'fulfilled') expect(s.value).toEqual({ charged: 9, run: 1, at: '1970-01-01T00:00:00.000Z' });
        else expect(s.reason).toMatchObject({ status: 409 });
      }
    });

    it('a changed payload under the same key is refused with the 422 problem', async () => {
      const key = randomUUID();
      await app.send('charge', { idempotencyKey: key, amount: 1 });
      const refusal = await app.refusal('charge', { idempotencyKey: key, amount: 2 });
      expect(refusal).toEqual({
        type: IDEMPOTENCY_PROBLEM_TYPES.keyReused,
        title: 'Idempotency key reused',
        status: 422,
        detail: 'This idempotency key was already used for a different message (pattern or data).',
      });
      // Key order does not matter: canonical JSON.
      expect(await app.send('charge', { amount: 1, idempotencyKey: key })).toMatchObject({ charged: 1, run: 1 });
      expect(ledger.count(`charge:${key}`)).toBe(1);
    });

    it('the same key on another pattern is another operation: refused, not replayed', async () => {
      const key = randomUUID();
      await app.send('charge', { idempotencyKey: key, amount: 1 });
      expect(await app.refusal('claim', { idempotencyKey: key, amount: 1 })).toMatchObject({ status: 422 });
    });

    it('no key: the handler runs unguarded every time', async () => {
      await app.send('charge', { amount: 5 });
      await app.send('charge', { amount: 5 });
      expect(ledger.count('charge:-')).toBeGreaterThanOrEqual(2);
    });

    it('required: no key is a 400 problem and the handler does not run; a malformed key is a 400 problem', async () => {
      expect(await app.refusal('required', {})).toEqual({
        type: IDEMPOTENCY_PROBLEM_TYPES.keyMissing,
        title: 'Idempotency key required',
        status: 400,
        detail: 'This handler requires an idempotency key (data.idempotencyKey).',
      });
      expect(ledger.count('required:undefined')).toBe(0);
      expect(await app.refusal('required', { idempotencyKey: 'a/b' })).toMatchObject({
        type: IDEMPOTENCY_PROBLEM_TYPES.keyInvalid,
        status: 400,
      });
      expect(await app.refusal('charge', { idempotencyKey: 12, amount: 1 })).toMatchObject({
        type: IDEMPOTENCY_PROBLEM_TYPES.keyInvalid,
        status: 400,
      });
    });

    it('a handler without parameter decorators still gets its payload through its pipes', async () => {
      const key = randomUUID();
      const first = await app.send('double', { idempotencyKey: key, value: 21 });
      expect(first).toEqual({ doubled: 42, dto: true });
      expect(await app.send('double', { idempotencyKey: key, value: 21 })).toEqual(first);
      expect(ledger.count(`double:${key}`)).toBe(1);
      // The pipe still validates: a bad payload is refused before anything is claimed.
      const invalid = await app.refusal('double', { idempotencyKey: randomUUID(), value: 'x' });
      expect(invalid).toMatchObject({ status: 'error' });
    });

    it("an Observable's last value is the result, stored and replayed", async () => {
      const key = randomUUID();
      expect(await app.send({ cmd: 'stream' }, { idempotencyKey: key })).toBe(3);
      expect(await app.send({ cmd: 'stream' }, { idempotencyKey: key })).toBe(3);
      expect(ledger.count(`stream:${key}`)).toBe(1);
    });

    it('the key option picks the key from the data', async () => {
      const order = `o-${randomUUID()}`;
      const first = await app.send('by-order', { orderId: order, note: 'a' });
      expect(await app.send('by-order', { orderId: order, note: 'a' })).toEqual(first);
      expect(await app.refusal('by-order', { orderId: order, note: 'b' })).toMatchObject({ status: 422 });
      expect(ledger.count(`by-order:${order}`)).toBe(1);
    });

    it('@Idempotent() on the controller class guards its handlers', async () => {
      const id = randomUUID();
      expect(await app.send('class-wide', { id, n: 1 })).toEqual({ n: 1, run: 1 });
      expect(await app.send('class-wide', { id, n: 1 })).toEqual({ n: 1, run: 1 });
      expect(await app.refusal('class-wide', { id, n: 2 })).toMatchObject({ status: 422 });
    });

    it('a handler that throws releases the key: the retry runs again', async () => {
      const key = randomUUID();
      expect(await app.refusal('flaky', { idempotencyKey: key })).toMatchObject({ status: 'error' });
      expect(await app.send('flaky', { idempotencyKey: key })).toEqual({ attempt: 2 });
      expect(await app.send('flaky', { idempotencyKey: key })).toEqual({ attempt: 2 });
      expect(ledger.count(`flaky:${key}`)).toBe(2);
    });

    it('@IdempotencyClaim() gives the claim, and undefined when unguarded', async () => {
      const key = randomUUID();
      const guarded = await app.send<Record<string, unknown>>('claim', { idempotencyKey: key });
      expect(guarded).toEqual({ key, token: expect.stringMatching(/^\d+$/), aborted: false, hasContext: true });
      expect(await app.send('claim', {})).toEqual({ key: null, token: null, aborted: null, hasContext: true });
    });

    it('waitMs: concurrent duplicates wait for the first and get its result', async () => {
      const key = randomUUID();
      const results = await Promise.all(
        Array.from({ length: 5 }, () => app.send('waits', { idempotencyKey: key, delayMs: 200 })),
      );
      for (const r of results) expect(r).toEqual({ run: 1 });
      expect(ledger.count(`waits:${key}`)).toBe(1);
    });

    it('events: duplicates (concurrent and later) are acknowledged and dropped; the handler runs once', async () => {
      const key = randomUUID();
      const data = { idempotencyKey: key, order: 'o-1', delayMs: 100 };
      await Promise.all(Array.from({ length: 10 }, () => app.emit('order.created', data)));
      await eventually(() => ledger.count(`event:${key}`) >= 1);
      await sleep(300);
      await app.emit('order.created', data);
      await sleep(100);
      expect(ledger.count(`event:${key}`)).toBe(1);
      expect(handledEvents.filter((e) => (e as { idempotencyKey?: string }).idempotencyKey === key)).toHaveLength(1);
      // The same key with different data is dropped too (and logged), never run.
      await app.emit('order.created', { ...data, order: 'o-2' });
      await sleep(100);
      expect(ledger.count(`event:${key}`)).toBe(1);
      // The service still answers: nothing was thrown at it.
      expect(await app.send('charge', { amount: 1 })).toMatchObject({ charged: 1 });
    });

    it('events without a key run every time', async () => {
      const order = `o-${randomUUID()}`;
      await app.emit('order.created', { order });
      await app.emit('order.created', { order });
      await eventually(() => ledger.count(`event:${order}`) === 2);
    });
  });
}
