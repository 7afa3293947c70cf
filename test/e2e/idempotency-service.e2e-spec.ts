/**
 * IdempotencyService (DESIGN.md 6.4) inside a real Nest application context, on the memory store,
 * a standalone Valkey and a 3-primary Valkey cluster.
 */
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Cluster, Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import {
  IDEMPOTENCY_PROBLEM_TYPES,
  type IdempotencyClaim,
  IdempotencyConflictError,
  IdempotencyModule,
  IdempotencyService,
  type IdempotencyStore,
  MemoryStore,
  ValkeyStore,
} from '../../lib';
import { AtMostOnceLedger } from '../../lib/testing';
import {
  type ClusterServer,
  describeValkey,
  type StandaloneServer,
  startCluster,
  startStandalone,
} from '../support/valkey-server';
import { eventually } from '../support/eventually';
import { freshPrefix } from '../valkey/helpers';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A promise the test resolves: work held until the test has seen what it waits for. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

interface Fixture {
  store: IdempotencyStore;
  close(): Promise<void>;
}

function runServiceSuite(name: string, makeStore: () => Promise<Fixture>): void {
  describe(`IdempotencyService on ${name}`, () => {
    let fixture: Fixture;
    let service: IdempotencyService;
    let close: () => Promise<void>;

    beforeAll(async () => {
      fixture = await makeStore();
      @Module({ imports: [IdempotencyModule.forRoot({ store: fixture.store, leaseMs: 2_000 })] })
      class AppModule {}
      const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
      service = app.get(IdempotencyService);
      close = async () => {
        await app.close();
        await fixture.close();
      };
    }, 30_000);

    afterAll(async () => {
      await close?.();
    });

    it('runs work once with its claim, and replays the stored value to later calls', async () => {
      const key = randomUUID();
      const claims: IdempotencyClaim[] = [];
      const work = async (claim: IdempotencyClaim) => {
        claims.push(claim);
        return { charged: 42, at: new Date(0) };
      };
      const first = await service.run(key, work);
      const again = await service.run(key, work);
      expect(first).toEqual({ value: { charged: 42, at: '1970-01-01T00:00:00.000Z' }, replayed: false });
      expect(again).toEqual({ value: first.value, replayed: true });
      expect(claims).toHaveLength(1);
      expect(claims[0].key.toString()).toBe(key);
      expect(claims[0].storeKey.toString()).toBe(key);
      expect(claims[0].fencingToken.value).toBeGreaterThanOrEqual(1n);
      expect(claims[0].signal.aborted).toBe(false);
    });

    it('50 concurrent calls with one key and waitMs: one execution, 49 replays of the same value', async () => {
      const key = randomUUID();
      const ledger = new AtMostOnceLedger();
      const results = await Promise.all(
        Array.from({ length: 50 }, () =>
          service.run(
            key,
            async () => {
              ledger.record(key);
              await sleep(200);
              return { order: 'o-1' };
            },
            { waitMs: 5_000 },
          ),
        ),
      );
      ledger.assertAtMostOnce();
      expect(ledger.count(key)).toBe(1);
      expect(results.filter((r) => !r.replayed)).toHaveLength(1);
      expect(results.filter((r) => r.replayed)).toHaveLength(49);
      for (const r of results) expect(r.value).toEqual({ order: 'o-1' });
    });

    it('50 concurrent calls with one key without waitMs: one execution, 49 in-flight conflicts', async () => {
      const key = randomUUID();
      const ledger = new AtMostOnceLedger();
      const held = gate();
      const calls = Array.from({ length: 50 }, () =>
        service.run(key, async () => {
          ledger.record(key);
          await held.promise; // until the other 49 have their answer
          return 'done';
        }),
      );
      const all = Promise.allSettled(calls);
      let refusals = 0;
      for (const call of calls) call.catch(() => refusals++);
      await eventually(() => refusals === 49, 'the 49 duplicates to be refused');
      held.open();
      const settled = await all;
      expect(ledger.count(key)).toBe(1);
      const refused = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      expect(refused).toHaveLength(49);
      for (const r of refused) {
        expect(r.reason).toBeInstanceOf(IdempotencyConflictError);
        expect(r.reason).toMatchObject({ reason: 'in-flight', type: IDEMPOTENCY_PROBLEM_TYPES.inFlight });
      }
      expect(await service.run(key, async () => 'again')).toEqual({ value: 'done', replayed: true });
    });

    it('the same key with a different request is refused (key-reused); the same request replays', async () => {
      const key = randomUUID();
      await service.run(key, () => 1, { request: { amount: 10, currency: 'EUR' } });
      await expect(service.run(key, () => 2, { request: { amount: 11, currency: 'EUR' } })).rejects.toMatchObject({
        reason: 'key-reused',
        type: IDEMPOTENCY_PROBLEM_TYPES.keyReused,
      });
      // Key order does not matter.
      expect(await service.run(key, () => 3, { request: { currency: 'EUR', amount: 10 } })).toEqual({
        value: 1,
        replayed: true,
      });
    });

    it('work throwing releases the key and rethrows; the next call runs again', async () => {
      const key = randomUUID();
      const failure = new Error('downstream refused');
      await expect(service.run(key, () => Promise.reject(failure))).rejects.toBe(failure);
      expect(await service.run(key, () => 'second')).toEqual({ value: 'second', replayed: false });
    });

    it('with waitMs, a first run that throws lets exactly one waiter run next', async () => {
      const key = randomUUID();
      const ledger = new AtMostOnceLedger();
      let runs = 0;
      const work = async () => {
        ledger.record(`${key}#${++runs}`);
        await sleep(150);
        if (runs === 1) throw new Error('first fails');
        return `run ${runs}`;
      };
      const settled = await Promise.allSettled(
        Array.from({ length: 10 }, () => service.run(key, work, { waitMs: 5_000 })),
      );
      expect(runs).toBe(2);
      expect(settled.filter((s) => s.status === 'rejected')).toHaveLength(1);
      const values = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value);
      expect(values).toHaveLength(9);
      expect(values.filter((v) => !v.replayed)).toHaveLength(1);
      for (const v of values) expect(v.value).toBe('run 2');
    });

    it('still in flight when waitMs runs out: in-flight conflict', async () => {
      const key = randomUUID();
      const held = gate();
      let started = false;
      const first = service.run(key, () => ((started = true), held.promise.then(() => 'slow')));
      await eventually(() => started, 'the first run to start');
      const waitedFrom = Date.now();
      await expect(service.run(key, () => 'never', { waitMs: 300 })).rejects.toMatchObject({ reason: 'in-flight' });
      expect(Date.now() - waitedFrom).toBeGreaterThanOrEqual(280);
      held.open();
      expect((await first).value).toBe('slow');
    });

    it('an aborted signal stops waiting at once', async () => {
      const key = randomUUID();
      const held = gate();
      let started = false;
      const first = service.run(key, () => ((started = true), held.promise.then(() => 'slow')));
      await eventually(() => started, 'the first run to start');
      const abort = new AbortController();
      let ran = false;
      const waiting = service.run(key, () => (ran = true), { waitMs: 10_000, signal: abort.signal });
      await sleep(100); // let it wait a little (aborting before it waits must end it at once too)
      const abortedAt = Date.now();
      abort.abort();
      await expect(waiting).rejects.toMatchObject({ reason: 'in-flight' });
      // The first still runs: without the abort it would wait up to 10 s.
      expect(Date.now() - abortedAt).toBeLessThan(5_000);
      expect(ran).toBe(false);
      held.open();
      await first;
    });

    it('a value JSON cannot hold: TypeError, and the key is kept (later calls throw it too, work ran once)', async () => {
      const key = randomUUID();
      let runs = 0;
      const work = () => {
        runs++;
        return { big: 10n };
      };
      await expect(service.run(key, work)).rejects.toThrow(TypeError);
      await expect(service.run(key, work)).rejects.toThrow(/could not be stored as JSON/);
      expect(runs).toBe(1);
    });

    it('scopes keep keys of different tenants apart', async () => {
      const key = randomUUID();
      const a = await service.run(key, () => 'tenant a', { scope: 'tenant-a' });
      const b = await service.run(key, () => 'tenant b', { scope: 'tenant-b' });
      expect([a, b]).toEqual([
        { value: 'tenant a', replayed: false },
        { value: 'tenant b', replayed: false },
      ]);
    });

    it('refuses a malformed key and bad options with clear errors, running nothing', async () => {
      let ran = false;
      await expect(service.run('a:b', () => (ran = true))).rejects.toMatchObject({ code: 'INVALID_KEY' });
      await expect(service.run(randomUUID(), () => (ran = true), { ttlMs: 0 })).rejects.toThrow(/ttlMs/);
      await expect(service.run(randomUUID(), () => (ran = true), { waitMs: -1 })).rejects.toThrow(/waitMs/);
      await expect(service.run(randomUUID(), () => (ran = true), { scope: '' })).rejects.toThrow(/scope/);
      expect(ran).toBe(false);
    });
  });
}

runServiceSuite('MemoryStore', async () => {
  const store = new MemoryStore();
  return { store, close: () => store.close() };
});

describeValkey('IdempotencyService on Valkey', () => {
  let server: StandaloneServer;
  let cluster: ClusterServer;
  const clients: (Redis | Cluster)[] = [];

  beforeAll(async () => {
    [server, cluster] = await Promise.all([startStandalone(), startCluster({ primaries: 3 })]);
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.disconnect();
    await Promise.all([server?.stop(), cluster?.stop()]);
  }, 30_000);

  const fixture = (client: Redis | Cluster, prefix: string): Fixture => {
    clients.push(client);
    const store = new ValkeyStore(client, { prefix: freshPrefix(prefix), onWarning: () => undefined });
    return { store, close: () => store.close() };
  };

  runServiceSuite('a standalone Valkey', async () =>
    fixture(new Redis({ host: server.host, port: server.port }), 'svc'),
  );
  runServiceSuite('a 3-primary Valkey cluster', async () => fixture(new Cluster(cluster.nodes), 'svcc'));
});
