/**
 * Several Nest app instances sharing one Valkey (DESIGN.md section 4, Reliability): each instance
 * is its own NestFactory app on its own 127.0.0.1 port with its own ioredis client and
 * ValkeyStore, all with the same key prefix. Plus Valkey faults under real HTTP traffic: a
 * paused server, a restart, and a lease taken over by another instance. Real servers, no mocks.
 */
import { Body, Controller, Headers, Inject, Post, Query } from '@nestjs/common';
import { Cluster, Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import * as net from 'node:net';
import { IDEMPOTENCY_PROBLEM_TYPES, IdempotencyKey, IdempotencyOptions, Idempotent, ValkeyStore } from '../../lib';
import {
  type ClusterServer,
  describeValkey,
  startCluster,
  startStandalone,
  type StandaloneServer,
} from '../support/valkey-server';
import { freshPrefix, sleep } from '../valkey/helpers';
import { type Platform, startApp, type TestApp } from './http-app';
import type { HttpResponse } from './http-client';

const PLATFORMS: Platform[] = ['express', 'fastify'];

/** Handler executions across every instance of one test: one counter the apps share. */
class SharedRuns {
  private readonly counts = new Map<string, number>();
  private readonly gates = new Map<string, { promise: Promise<void>; open: () => void }>();
  readonly log: { key: string; n: number; instance: string }[] = [];

  hit(key: string, instance: string): number {
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    this.log.push({ key, n, instance });
    return n;
  }

  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  /** Resolves once `open(key, n)` is called for the n-th execution of `key`. */
  gate(key: string, n: number): Promise<void> {
    return this.gateOf(`${key}#${n}`).promise;
  }

  open(key: string, n: number): void {
    this.gateOf(`${key}#${n}`).open();
  }

  private gateOf(name: string) {
    let gate = this.gates.get(name);
    if (gate === undefined) {
      let open!: () => void;
      const promise = new Promise<void>((resolve) => (open = resolve));
      gate = { promise, open };
      this.gates.set(name, gate);
    }
    return gate;
  }
}

const INSTANCE = 'INSTANCE_NAME';

@Controller('orders')
class OrdersController {
  constructor(
    private readonly runs: SharedRuns,
    @Inject(INSTANCE) private readonly instance: string,
  ) {}

  @Post()
  @Idempotent()
  async create(@Body() body: unknown, @Query('ms') ms: string, @Headers('idempotency-key') key: string) {
    const n = this.runs.hit(key, this.instance);
    await sleep(Number(ms ?? 0));
    return { n, instance: this.instance, echo: body ?? null };
  }

  @Post('gated')
  @Idempotent()
  async gated(@Headers('idempotency-key') key: string) {
    const n = this.runs.hit(key, this.instance);
    await this.runs.gate(key, n);
    return { n, instance: this.instance };
  }
}

interface Instance {
  readonly name: string;
  readonly app: TestApp;
  readonly client: Redis | Cluster;
  readonly store: ValkeyStore;
  /** App first, then the client: before the server it talks to stops. */
  close(): Promise<void>;
}

interface InstanceOptions {
  name: string;
  runs: SharedRuns;
  prefix: string;
  /** Where the ioredis client connects (a proxy in front of the server, or the server). */
  port: number;
  commandTimeoutMs?: number;
  moduleOptions?: IdempotencyOptions;
  /** The instance's client (a Cluster, say); by default a Redis client to `port`. */
  connect?: () => Redis | Cluster;
}

async function startInstance(platform: Platform, options: InstanceOptions): Promise<Instance> {
  const client = options.connect?.() ?? new Redis({ host: '127.0.0.1', port: options.port, lazyConnect: true });
  if (client.status === 'wait') await client.connect();
  const store = new ValkeyStore(client, { prefix: options.prefix, commandTimeoutMs: options.commandTimeoutMs });
  let app: TestApp;
  try {
    app = await startApp(platform, {
      store,
      moduleOptions: options.moduleOptions,
      controllers: [OrdersController],
      providers: [
        { provide: SharedRuns, useValue: options.runs },
        { provide: INSTANCE, useValue: options.name },
      ],
    });
  } catch (error) {
    client.disconnect();
    throw error;
  }
  let closed = false;
  return {
    name: options.name,
    app,
    client,
    store,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await store.close();
      client.disconnect();
    },
  };
}

/**
 * A TCP proxy that can hold what a client sends (buffered, not forwarded) and release it later:
 * the server stays up for everyone else while this one client's commands get no answer.
 */
interface StallProxy {
  readonly port: number;
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

async function startStallProxy(upstreamPort: number): Promise<StallProxy> {
  const links = new Set<{ client: net.Socket; upstream: net.Socket; held: Buffer[] }>();
  let holding = false;
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: upstreamPort });
    const link = { client, upstream, held: [] as Buffer[] };
    links.add(link);
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
      links.delete(link);
    };
    client.on('data', (chunk: Buffer) => {
      if (holding) link.held.push(chunk);
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    for (const socket of [client, upstream]) {
      socket.on('error', closeBoth);
      socket.on('close', closeBoth);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      for (const link of links) {
        for (const chunk of link.held.splice(0)) link.upstream.write(chunk);
      }
    },
    close() {
      for (const link of links) {
        link.client.destroy();
        link.upstream.destroy();
      }
      links.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function expectProblem(response: HttpResponse, status: number, type: string): void {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(response.json()).toEqual(expect.objectContaining({ type, status }));
}

function expectReplayOf(replay: HttpResponse, first: HttpResponse): void {
  expect(replay.status).toBe(first.status);
  expect(replay.headers['idempotent-replayed']).toBe('true');
  expect(replay.body.equals(first.body)).toBe(true);
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

describeValkey('several app instances sharing one Valkey', () => {
  let server: StandaloneServer;

  beforeAll(async () => {
    // AOF on, as in production (the store's start-up check then has nothing to warn about).
    server = await startStandalone({ appendonly: true });
  }, 30_000);

  afterAll(async () => {
    await server?.stop();
  }, 30_000);

  describe.each(PLATFORMS)('three %s instances, one key prefix', (platform) => {
    const runs = new SharedRuns();
    const instances: Instance[] = [];

    beforeAll(async () => {
      const prefix = freshPrefix('multi');
      for (const name of ['a', 'b', 'c']) {
        instances.push(await startInstance(platform, { name, runs, prefix, port: server.port }));
      }
    }, 30_000);

    afterAll(async () => {
      for (const instance of instances) await instance.close();
    }, 30_000);

    it('listens on three ports with three clients', () => {
      expect(new Set(instances.map((i) => i.app.client.baseUrl)).size).toBe(3);
      expect(new Set(instances.map((i) => i.client)).size).toBe(3);
    });

    it.each([
      ['a slow handler (150 ms): mostly 409s', 150],
      ['a quick handler (10 ms): 409s and replays', 10],
      ['an instant handler: mostly replays', 0],
    ])('30 concurrent duplicates spread over the instances, %s: the handler runs once in total', async (_name, ms) => {
      const key = randomUUID();
      const body = { amount: 42, currency: 'EUR' };
      const headers = { 'idempotency-key': key };
      const responses = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          instances[i % instances.length].app.client.post(`/orders?ms=${ms}`, { headers, body }),
        ),
      );
      expect(runs.count(key)).toBe(1);

      const originals = responses.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] === undefined);
      expect(originals).toHaveLength(1);
      const original = originals[0];
      expect(original.json()).toEqual({ n: 1, instance: expect.stringMatching(/^[abc]$/), echo: body });
      for (const r of responses) {
        if (r === original) continue;
        if (r.status === 409) {
          expectProblem(r, 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
          expect(r.headers['retry-after']).toMatch(/^\d+$/);
        } else {
          expectReplayOf(r, original);
        }
      }

      // The first has completed (it answered): every instance now replays it, byte for byte.
      for (const instance of instances) {
        expectReplayOf(await instance.app.client.post(`/orders?ms=${ms}`, { headers, body }), original);
      }
      // And refuses the same key with another body, whichever instance ran it.
      for (const instance of instances) {
        expectProblem(
          await instance.app.client.post(`/orders?ms=${ms}`, { headers, body: { ...body, amount: 43 } }),
          422,
          IDEMPOTENCY_PROBLEM_TYPES.keyReused,
        );
      }
      expect(runs.count(key)).toBe(1);
    });

    it('30 concurrent duplicates, the winner held until the 29 others answered: 29 409s from all three instances', async () => {
      const key = randomUUID();
      const headers = { 'idempotency-key': key };
      const answered: { instance: string; response: HttpResponse }[] = [];
      const requests = Array.from({ length: 30 }, (_, i) => {
        const instance = instances[i % instances.length];
        return instance.app.client.post('/orders/gated', { headers }).then((response) => {
          answered.push({ instance: instance.name, response });
          return response;
        });
      });
      await waitFor('29 answers', () => answered.length === 29, 10_000);
      expect(runs.count(key)).toBe(1);
      for (const { response } of answered) {
        expectProblem(response, 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
        expect(response.headers['retry-after']).toMatch(/^\d+$/);
      }
      expect(new Set(answered.map((a) => a.instance))).toEqual(new Set(['a', 'b', 'c']));
      runs.open(key, 1);
      const responses = await Promise.all(requests);
      const original = responses.find((r) => r.status === 201);
      expect(original?.headers['idempotent-replayed']).toBeUndefined();
      for (const instance of instances) {
        expectReplayOf(await instance.app.client.post('/orders/gated', { headers }), original!);
      }
      expect(runs.count(key)).toBe(1);
    });

    it('a key in flight on one instance is 409 on the others until it completes there', async () => {
      const key = randomUUID();
      const headers = { 'idempotency-key': key };
      const [a, b, c] = instances;
      const first = a.app.client.post('/orders/gated', { headers });
      await waitFor('the handler to start', () => runs.count(key) === 1);
      for (const other of [b, c]) {
        const r = await other.app.client.post('/orders/gated', { headers });
        expectProblem(r, 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
        expect(r.headers['retry-after']).toMatch(/^\d+$/);
      }
      runs.open(key, 1);
      const done = await first;
      expect(done.status).toBe(201);
      expect(done.json()).toEqual({ n: 1, instance: 'a' });
      for (const other of [b, c]) expectReplayOf(await other.app.client.post('/orders/gated', { headers }), done);
      expect(runs.count(key)).toBe(1);
    });
  });

  describe.each(PLATFORMS)('Valkey faults under HTTP traffic on %s', (platform) => {
    let faulty: StandaloneServer;
    const runs = new SharedRuns();
    const open: Instance[] = [];
    const start = async (options: Omit<InstanceOptions, 'runs' | 'port'> & { port?: number }): Promise<Instance> => {
      const instance = await startInstance(platform, { runs, port: faulty.port, ...options });
      open.push(instance);
      return instance;
    };

    beforeAll(async () => {
      faulty = await startStandalone({ appendonly: true });
    }, 30_000);

    afterEach(async () => {
      if (faulty?.paused) faulty.resume();
      for (const instance of open.splice(0)) await instance.close();
    }, 30_000);

    afterAll(async () => {
      await faulty?.stop();
    }, 30_000);

    it('Valkey paused (SIGSTOP): 503 with Retry-After within the command time limit, handler not run; after resume the key works', async () => {
      const leaseMs = 10_000;
      const instance = await start({
        name: 'a',
        prefix: freshPrefix('pause'),
        commandTimeoutMs: 300,
        moduleOptions: { leaseMs },
      });
      const key = randomUUID();
      const headers = { 'idempotency-key': key };
      const body = { amount: 7 };
      faulty.pause();
      const startedAt = Date.now();
      const refused = await instance.app.client.post('/orders', { headers, body });
      const elapsed = Date.now() - startedAt;
      expectProblem(refused, 503, IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
      expect(refused.headers['retry-after']).toMatch(/^\d+$/);
      expect(elapsed).toBeGreaterThanOrEqual(250);
      // Bounded by the command limit (300 ms), not by the 10 s lease: generous for a loaded machine.
      expect(elapsed).toBeLessThan(3_000);
      expect(runs.count(key)).toBe(0);
      instance.app.logger.clear();

      faulty.resume();
      // The timed-out claim script still reaches the server once it runs again and claims the key
      // for nobody; the store releases that orphaned claim as soon as its late answer arrives, so a
      // retry gets through long before the lease would have ended (a 409 meanwhile, never a run).
      const resumedAt = Date.now();
      let retry: HttpResponse;
      for (;;) {
        retry = await instance.app.client.post('/orders', { headers, body });
        if (retry.status !== 409) break;
        expect(Date.now() - resumedAt).toBeLessThan(leaseMs / 2);
        expect(runs.count(key)).toBe(0);
        await sleep(50);
      }
      expect(retry.status).toBe(201);
      expect(retry.headers['idempotent-replayed']).toBeUndefined();
      expect(retry.json()).toEqual({ n: 1, instance: 'a', echo: body });
      expectReplayOf(await instance.app.client.post('/orders', { headers, body }), retry);
      expect(runs.count(key)).toBe(1);
    });

    it('Valkey restarted (AOF) between the first request and its retry: the retry replays, no second run', async () => {
      const prefix = freshPrefix('restart');
      const a = await start({ name: 'a', prefix });
      const b = await start({ name: 'b', prefix });
      const key = randomUUID();
      const headers = { 'idempotency-key': key };
      const first = await a.app.client.post('/orders', { headers, body: { x: 1 } });
      expect(first.status).toBe(201);

      await faulty.restart();
      await waitFor('both clients to reconnect', () => a.client.status === 'ready' && b.client.status === 'ready');
      for (const instance of [a, b]) {
        expectReplayOf(await instance.app.client.post('/orders', { headers, body: { x: 1 } }), first);
      }
      expect(runs.count(key)).toBe(1);
    });

    it('Valkey restarted (AOF) while the handler runs: the claim survives (409 elsewhere), the result is stored once', async () => {
      const prefix = freshPrefix('restart-running');
      const a = await start({ name: 'a', prefix });
      const b = await start({ name: 'b', prefix });
      const key = randomUUID();
      const headers = { 'idempotency-key': key };
      const first = a.app.client.post('/orders/gated', { headers });
      await waitFor('the handler to start', () => runs.count(key) === 1);

      await faulty.restart();
      await waitFor('both clients to reconnect', () => a.client.status === 'ready' && b.client.status === 'ready');
      expectProblem(await b.app.client.post('/orders/gated', { headers }), 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);

      runs.open(key, 1);
      const done = await first;
      expect(done.status).toBe(201);
      expect(done.json()).toEqual({ n: 1, instance: 'a' });
      expectReplayOf(await b.app.client.post('/orders/gated', { headers }), done);
      expect(runs.count(key)).toBe(1);
    });

    it('Valkey refuses the completion (maxmemory reached while the handler ran): 503, the key stays held past its lease on every instance, and the result is stored and replayed once memory frees', async () => {
      const leaseMs = 300;
      const prefix = freshPrefix('oom');
      const a = await start({ name: 'a', prefix, moduleOptions: { leaseMs } });
      const b = await start({ name: 'b', prefix, moduleOptions: { leaseMs } });
      const admin = new Redis({ host: '127.0.0.1', port: faulty.port });
      const key = randomUUID();
      const headers = { 'idempotency-key': key };
      try {
        const first = a.app.client.post('/orders/gated', { headers });
        await waitFor('the handler to start', () => runs.count(key) === 1);
        // Out of memory from now on: scripts that write refuse to run (noeviction), the
        // allow-oom lease renewal still runs.
        await admin.config('SET', 'maxmemory-policy', 'noeviction');
        await admin.config('SET', 'maxmemory', '1');
        runs.open(key, 1);
        const refused = await first;
        expectProblem(refused, 503, IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
        expect(refused.json().detail).toMatch(/processed/);
        // Past the lease, on both instances: held, never a second run.
        await sleep(leaseMs + 200);
        for (const instance of [a, b]) {
          expectProblem(
            await instance.app.client.post('/orders/gated', { headers }),
            409,
            IDEMPOTENCY_PROBLEM_TYPES.inFlight,
          );
        }
        expect(runs.count(key)).toBe(1);

        await admin.config('SET', 'maxmemory', '0');
        await waitFor(
          'the background completion',
          async () => (await b.store.get(new IdempotencyKey(key)))?.isCompleted() === true,
        );
        const replay = await b.app.client.post('/orders/gated', { headers });
        expect(replay.status).toBe(201);
        expect(replay.headers['idempotent-replayed']).toBe('true');
        expect(replay.json()).toEqual({ n: 1, instance: 'a' });
        expect(runs.count(key)).toBe(1);
      } finally {
        await admin.config('SET', 'maxmemory', '0');
        admin.disconnect();
      }
    });

    it("a lease taken over by another instance: the stalled holder's completion is refused and its client gets the stored answer", async () => {
      const leaseMs = 600;
      const prefix = freshPrefix('takeover');
      const proxy = await startStallProxy(faulty.port);
      try {
        const a = await start({
          name: 'a',
          prefix,
          port: proxy.port,
          commandTimeoutMs: 200,
          moduleOptions: { leaseMs },
        });
        const b = await start({ name: 'b', prefix, moduleOptions: { leaseMs } });
        const key = randomUUID();
        const storeKey = new IdempotencyKey(key);
        const headers = { 'idempotency-key': key };

        const slow = a.app.client.post('/orders/gated', { headers });
        await waitFor('the first handler to start', () => runs.count(key) === 1);
        // A's heartbeat renews the lease while its connection works...
        await sleep(leaseMs);
        expect((await b.store.get(storeKey))?.isProcessing()).toBe(true);
        // ...then A's commands stop getting through: its lease runs out unrenewed.
        proxy.hold();
        await waitFor('the lease to run out', async () => (await b.store.get(storeKey)) === undefined, 3 * leaseMs);

        const taker = b.app.client.post('/orders/gated', { headers });
        await waitFor('the second handler to start', () => runs.count(key) === 2);
        runs.open(key, 2);
        const taken = await taker;
        expect(taken.status).toBe(201);
        expect(taken.json()).toEqual({ n: 2, instance: 'b' });

        // A's connection works again and its handler finishes: its completion is refused by the
        // fencing token, so B's stored answer stands and A's client gets it as a replay.
        proxy.release();
        runs.open(key, 1);
        const first = await slow;
        expectReplayOf(first, taken);
        const stored = await b.store.get(storeKey);
        expect(stored?.isCompleted() && Buffer.from(stored.response.body).equals(taken.body)).toBe(true);
        // Nest's `Logger` is process-wide: the interceptor's warnings land in the last app's logger.
        const warnings = [a, b].flatMap((instance) => instance.app.logger.warnings).join('\n');
        expect(warnings).toMatch(/lease/);
        for (const instance of [a, b])
          expectReplayOf(await instance.app.client.post('/orders/gated', { headers }), taken);
        expect(runs.count(key)).toBe(2);
      } finally {
        for (const instance of open.splice(0)) await instance.close();
        await proxy.close();
      }
    });
  });
});

describeValkey('waitMs across app instances: duplicates wait for the first and get its replay', () => {
  let server: StandaloneServer;
  let cluster: ClusterServer;

  beforeAll(async () => {
    [server, cluster] = await Promise.all([startStandalone(), startCluster({ primaries: 3 })]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([server?.stop(), cluster?.stop()]);
  }, 30_000);

  describe.each(PLATFORMS)('on %s', (platform) => {
    it.each(['one Valkey', 'a 3-primary cluster'])(
      'three instances on %s: 20 concurrent duplicates of a 300 ms handler, one run, 19 replays',
      async (where) => {
        const runs = new SharedRuns();
        const prefix = freshPrefix('waiters');
        const instances: Instance[] = [];
        try {
          for (const name of ['a', 'b', 'c']) {
            instances.push(
              await startInstance(platform, {
                name,
                runs,
                prefix,
                port: server.port,
                moduleOptions: { waitMs: 5_000 },
                connect: where === 'one Valkey' ? undefined : () => new Cluster(cluster.nodes),
              }),
            );
          }
          const key = randomUUID();
          const body = { amount: 5 };
          const responses = await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              instances[i % 3].app.client.post('/orders?ms=300', { headers: { 'idempotency-key': key }, body }),
            ),
          );
          expect(runs.count(key)).toBe(1);
          expect(responses.map((r) => r.status)).toEqual(Array(20).fill(201));
          const originals = responses.filter((r) => r.headers['idempotent-replayed'] === undefined);
          expect(originals).toHaveLength(1);
          for (const r of responses) if (r !== originals[0]) expectReplayOf(r, originals[0]);
        } finally {
          for (const instance of instances) await instance.close();
        }
      },
    );
  });
});
