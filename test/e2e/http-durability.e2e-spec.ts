/**
 * `durability` over HTTP, on Express and Fastify: a ValkeyStore on a primary with one replica,
 * asking for `replicas: 1`. The replica is paused (SIGSTOP) to make acknowledgements fall short.
 */
import { Redis } from 'ioredis';
import {
  IDEMPOTENCY_PROBLEM_TYPES,
  IdempotencyEvent,
  IdempotencyKey,
  IdempotencyModule,
  StoreDurabilityError,
  storeKeyFor,
  ValkeyStore,
} from '../../lib';
import {
  describeValkey,
  startReplica,
  startStandalone,
  waitForReplica,
  type StandaloneServer,
} from '../support/valkey-server';
import { freshPrefix, keysOf, sleep } from '../valkey/helpers';
import { type Platform, startApp, type TestApp } from './http-app';
import type { HttpResponse } from './http-client';

const PLATFORMS: Platform[] = ['express', 'fastify'];
const WAIT_MS = 300;
const LEASE_MS = 1_500;

function expectProblem(response: HttpResponse, status: number, type: string): void {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(response.json()).toEqual(expect.objectContaining({ type, status }));
}

/** Polls `check` until it holds (or fails after `ms`). */
async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describeValkey('HTTP with ValkeyStore durability (replicas: 1), a primary with one replica', () => {
  let primary: StandaloneServer;
  let replica: StandaloneServer;
  let onReplica: Redis;

  beforeAll(async () => {
    primary = await startStandalone();
    replica = await startReplica(primary);
    onReplica = new Redis({ host: '127.0.0.1', port: replica.port });
  }, 30_000);

  afterAll(async () => {
    if (replica?.paused) replica.resume();
    onReplica?.disconnect();
    await replica?.stop();
    await primary?.stop();
  }, 30_000);

  describe.each(PLATFORMS)('on %s', (platform) => {
    let client: Redis;
    let store: ValkeyStore;
    let t: TestApp;
    /** Another instance of the app on the same Valkey (its own client and store). */
    let other: TestApp;
    let otherClient: Redis;
    let otherStore: ValkeyStore;
    const events: IdempotencyEvent[] = [];

    beforeAll(async () => {
      client = new Redis({ host: '127.0.0.1', port: primary.port, lazyConnect: true });
      await client.connect();
      store = new ValkeyStore(client, {
        prefix: freshPrefix('httpdur'),
        durability: { replicas: 1, timeoutMs: WAIT_MS },
        commandTimeoutMs: 3_000,
        onWarning: () => undefined,
      });
      t = await startApp(platform, {
        store,
        module: IdempotencyModule.forRoot({ store, leaseMs: LEASE_MS, onEvent: (e) => events.push(e) }),
      });
      otherClient = new Redis({ host: '127.0.0.1', port: primary.port, lazyConnect: true });
      await otherClient.connect();
      otherStore = new ValkeyStore(otherClient, {
        prefix: store.prefix,
        durability: { replicas: 1, timeoutMs: WAIT_MS },
        commandTimeoutMs: 3_000,
        onWarning: () => undefined,
      });
      other = await startApp(platform, {
        store: otherStore,
        module: IdempotencyModule.forRoot({ store: otherStore, leaseMs: LEASE_MS }),
      });
    });

    afterAll(async () => {
      await t?.close();
      await other?.close();
      await store?.close();
      await otherStore?.close();
      client?.disconnect();
      otherClient?.disconnect();
    });

    afterEach(async () => {
      if (replica.paused) replica.resume();
      await waitForReplica(primary.port, replica.port);
    });

    const post = (path: string, key: string) =>
      t.client.post(path, { headers: { 'idempotency-key': key }, body: { amount: 1 } });

    it('replica paused: 503 store-unavailable once the wait runs out, the handler does not run and the key stays free; resumed, the request runs once and replays', async () => {
      const key = `dur-claim-${platform}`;
      replica.pause();
      const started = Date.now();
      const refused = await post('/items', key);
      const elapsed = Date.now() - started;
      expectProblem(refused, 503, IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
      expect(refused.headers['retry-after']).toBeDefined();
      expect(elapsed).toBeGreaterThanOrEqual(WAIT_MS - 10);
      expect(elapsed).toBeLessThan(WAIT_MS + 3_000);
      expect(t.executions.count(key)).toBe(0);
      expect(await store.get(storeKeyFor(new IdempotencyKey(key), undefined))).toBeUndefined();
      const storeError = events.find((e) => e.type === 'store-error');
      expect(storeError?.error).toBeInstanceOf(StoreDurabilityError);
      expect(storeError?.error).toMatchObject({ operation: 'claim', asked: 1, acked: 0 });

      replica.resume();
      await waitForReplica(primary.port, replica.port);
      const first = await post('/items', key);
      expect(first.status).toBe(201);
      const replay = await post('/items', key);
      expect(replay.status).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body.equals(first.body)).toBe(true);
      expect(t.executions.count(key)).toBe(1);
    });

    it('replica paused while the handler runs: 503 once the lease runs out, the key is held (never a second run), and once the replica is back the background retry stores the result: retries replay it', async () => {
      const key = `dur-complete-${platform}`;
      const entryKey = keysOf(store.prefix, storeKeyFor(new IdempotencyKey(key), undefined)).entry;
      const pending = post('/items/gated', key);
      // The handler runs only under an acknowledged claim.
      await eventually(() => t.executions.count(key) === 1);
      expect(await onReplica.exists(entryKey)).toBe(1);
      replica.pause();
      t.executions.open(key);
      const first = await pending;
      expectProblem(first, 503, IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
      const deferred = events.find((e) => e.type === 'deferred');
      expect(deferred).toBeDefined();
      // Every completion attempt while the lease lasted was applied on the primary, not acknowledged.
      expect((deferred?.error as Error).cause).toBeInstanceOf(StoreDurabilityError);
      expect((deferred?.error as Error).cause).toMatchObject({ operation: 'complete', asked: 1, acked: 0 });
      // The primary holds the result, unacknowledged: no success is sent for it (issue 17, defect
      // 4). This process holds it unstored, so its own retry is in flight; another instance's
      // replay waits for the acknowledgements in vain: 503. The handler does not run again.
      const during = await post('/items/gated', key);
      expectProblem(during, 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
      const elsewhere = await other.client.post('/items/gated', {
        headers: { 'idempotency-key': key },
        body: { amount: 1 },
      });
      expectProblem(elsewhere, 503, IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
      expect(t.executions.count(key)).toBe(1);
      expect(other.executions.count(key)).toBe(0);
      expect(events.some((e) => e.type === 'completion-recovered')).toBe(false);

      replica.resume();
      await eventually(() => events.some((e) => e.type === 'completion-recovered'), 20_000);
      expect((await onReplica.getBuffer(entryKey))?.toString('latin1', 0, 2)).toBe('\x02c');
      const replay = await post('/items/gated', key);
      expect(replay.status).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.json()).toEqual({ n: 1 });
      const replayElsewhere = await other.client.post('/items/gated', {
        headers: { 'idempotency-key': key },
        body: { amount: 1 },
      });
      expect(replayElsewhere.status).toBe(201);
      expect(replayElsewhere.body.equals(replay.body)).toBe(true);
      expect(t.executions.count(key)).toBe(1);
      expect(other.executions.count(key)).toBe(0);
    }, 40_000);
  });
});
