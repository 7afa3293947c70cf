/**
 * ValkeyStore.waitForChange: the complete and remove scripts announce the end of a claim that
 * another claim found in flight (as a waiter's own claim does, before it waits) on a shard channel
 * named like the entry, and a waiter on another store (another client, as on another app
 * instance) wakes at once, on a standalone server, a 3-primary cluster and Redis 7. The waits here
 * are given 20 s; a working notification ends them in milliseconds, and the test fails if they run
 * into the 10 s sentinel.
 */
import { Cluster, Redis } from 'ioredis';
import { FencedOutcome, IdempotencyKey, ValkeyStore } from '../../lib';
import {
  type ClusterServer,
  describeRedis7,
  describeValkey,
  type StandaloneServer,
  startCluster,
  startStandalone,
} from '../support/valkey-server';
import { eventually } from '../support/eventually';
import { freshPrefix, keysOf, processing, response, sleep } from './helpers';

const LONG = 60_000;
const PATIENCE = 20_000;

/** Resolves to 'woken' when `wait` ends within 10 s, else 'not woken'. */
async function woken(wait: Promise<void>): Promise<'woken' | 'not woken'> {
  let timer: NodeJS.Timeout | undefined;
  const sentinel = new Promise<'not woken'>((resolve) => (timer = setTimeout(() => resolve('not woken'), 10_000)));
  const result = await Promise.race([wait.then(() => 'woken' as const), sentinel]);
  clearTimeout(timer);
  return result;
}

function notificationSuite(name: string, connect: () => Redis | Cluster) {
  describe(`waitForChange on ${name}`, () => {
    const clients: (Redis | Cluster)[] = [];
    const stores: ValkeyStore[] = [];
    const prefix = freshPrefix('notify');

    const store = () => {
      const client = connect();
      clients.push(client);
      const s = new ValkeyStore(client, { prefix, onWarning: () => undefined });
      stores.push(s);
      return s;
    };

    afterAll(async () => {
      for (const s of stores) await s.close();
      for (const c of clients) c.disconnect();
    });

    it('a waiter on another instance wakes when the holder completes, and when it releases', async () => {
      const holder = store();
      const waiter = store();
      for (const end of ['complete', 'remove'] as const) {
        const key = IdempotencyKey.default();
        const claim = await holder.tryInsert(key, processing(1, LONG));
        if (claim.kind !== 'claimed') throw new Error('expected a claim');
        // As the engine does: a claim that finds the key in flight, then a wait. The first wait on
        // a key ends when its subscription is confirmed (a completion could have landed before
        // it): the engine then claims again. The second wait is the one notified.
        expect((await waiter.tryInsert(key, processing(1, LONG))).kind).toBe('exists');
        await waiter.waitForChange(key, PATIENCE);
        expect((await waiter.tryInsert(key, processing(1, LONG))).kind).toBe('exists');
        const waiting = waiter.waitForChange(key, PATIENCE);
        await sleep(50);
        const outcome =
          end === 'complete'
            ? await holder.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG)
            : await holder.remove(key, claim.fencingToken);
        expect(outcome).toBe(FencedOutcome.Applied);
        expect(await woken(waiting)).toBe('woken');
      }
    });

    it('many waiters on one key share the subscription and all wake', async () => {
      const holder = store();
      const waiter = store();
      const key = IdempotencyKey.default();
      const claim = await holder.tryInsert(key, processing(1, LONG));
      if (claim.kind !== 'claimed') throw new Error('expected a claim');
      expect((await waiter.tryInsert(key, processing(1, LONG))).kind).toBe('exists');
      await waiter.waitForChange(key, PATIENCE);
      const waits = Array.from({ length: 20 }, () => woken(waiter.waitForChange(key, PATIENCE)));
      await sleep(50);
      await holder.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG);
      expect(await Promise.all(waits)).toEqual(Array(20).fill('woken'));
    });

    it('a wait ends at its timeout, and at once when its signal aborts', async () => {
      const waiter = store();
      const key = IdempotencyKey.default();
      await waiter.waitForChange(key, PATIENCE); // subscribed
      const started = Date.now();
      await waiter.waitForChange(key, 150);
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      const abort = new AbortController();
      const waiting = waiter.waitForChange(key, PATIENCE, abort.signal);
      abort.abort();
      expect(await woken(waiting)).toBe('woken');
    });
  });
}

describeValkey('ValkeyStore notifications, standalone Valkey', () => {
  let server: StandaloneServer;
  beforeAll(async () => {
    server = await startStandalone();
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  });
  notificationSuite('a standalone Valkey', () => new Redis({ host: server.host, port: server.port }));

  it('re-subscribes after its subscriber connection is killed', async () => {
    const prefix = freshPrefix('notify-kill');
    const admin = new Redis({ host: server.host, port: server.port });
    const holderClient = new Redis({ host: server.host, port: server.port });
    const waiterClient = new Redis({ host: server.host, port: server.port });
    const holder = new ValkeyStore(holderClient, { prefix, onWarning: () => undefined });
    const waiter = new ValkeyStore(waiterClient, { prefix, onWarning: () => undefined });
    try {
      const key = IdempotencyKey.default();
      const claim = await holder.tryInsert(key, processing(1, LONG));
      if (claim.kind !== 'claimed') throw new Error('expected a claim');
      expect((await waiter.tryInsert(key, processing(1, LONG))).kind).toBe('exists');
      await waiter.waitForChange(key, PATIENCE);
      expect(Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'))).toBeGreaterThanOrEqual(1);
      // ioredis reconnects and subscribes its channels again.
      for (let i = 0; i < 250; i++) {
        if (((await admin.call('PUBSUB', 'SHARDCHANNELS')) as string[]).length > 0) break;
        await sleep(20);
      }
      expect(((await admin.call('PUBSUB', 'SHARDCHANNELS')) as string[]).length).toBeGreaterThan(0);
      const waiting = waiter.waitForChange(key, PATIENCE);
      await sleep(50);
      await holder.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG);
      expect(await woken(waiting)).toBe('woken');
    } finally {
      await holder.close();
      await waiter.close();
      for (const c of [admin, holderClient, waiterClient]) c.disconnect();
    }
  });

  it('announces the end of an entry only when a claim found it in flight', async () => {
    const prefix = freshPrefix('notify-which');
    const holderClient = new Redis({ host: server.host, port: server.port });
    const otherClient = new Redis({ host: server.host, port: server.port });
    const listener = new Redis({ host: server.host, port: server.port });
    const holder = new ValkeyStore(holderClient, { prefix, onWarning: () => undefined });
    const other = new ValkeyStore(otherClient, { prefix, onWarning: () => undefined });
    const heard: string[] = [];
    listener.on('smessage', (channel: string, message: string) => heard.push(`${channel} ${message}`));
    try {
      const cases = [
        { end: 'complete', foundInFlight: false },
        { end: 'remove', foundInFlight: false },
        { end: 'complete', foundInFlight: true },
        { end: 'remove', foundInFlight: true },
      ] as const;
      for (const { end, foundInFlight } of cases) {
        const key = IdempotencyKey.default();
        const channel = keysOf(prefix, key).entry;
        await listener.ssubscribe(channel);
        const claim = await holder.tryInsert(key, processing(1, LONG));
        if (claim.kind !== 'claimed') throw new Error('expected a claim');
        if (foundInFlight) expect((await other.tryInsert(key, processing(1, LONG))).kind).toBe('exists');
        // A get is not a claim: it never marks the entry.
        expect((await other.get(key))?.isProcessing()).toBe(true);
        const outcome =
          end === 'complete'
            ? await holder.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG)
            : await holder.remove(key, claim.fencingToken);
        expect(outcome).toBe(FencedOutcome.Applied);
        const expected = foundInFlight ? [`${channel} ${end === 'complete' ? 'c' : 'r'}`] : [];
        // A message arrives within milliseconds (waited for generously); 300 ms of silence after
        // it, or without one, means no other was sent.
        await eventually(() => heard.length >= expected.length, 'the notification');
        await sleep(300);
        expect([end, foundInFlight, heard.splice(0)]).toEqual([end, foundInFlight, expected]);
        await listener.sunsubscribe(channel);
      }
    } finally {
      await holder.close();
      await other.close();
      for (const c of [holderClient, otherClient, listener]) c.disconnect();
    }
  });
});

describeValkey('ValkeyStore notifications, 3-primary Valkey cluster', () => {
  let cluster: ClusterServer;
  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  notificationSuite('a 3-primary Valkey cluster', () => new Cluster(cluster.nodes));
});

describeRedis7('ValkeyStore notifications, Redis 7', () => {
  let server: StandaloneServer;
  beforeAll(async () => {
    server = await startStandalone({ binary: 'redis' });
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  });
  notificationSuite('Redis 7', () => new Redis({ host: server.host, port: server.port }));
});
