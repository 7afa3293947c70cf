/**
 * ValkeyStore specifics on a real server: options, key layout, TTLs, the stored encoding, the
 * server check, and a differential test against MemoryStore (same answers, same token numbers).
 */
import fc from 'fast-check';
import { Redis } from 'ioredis';
import {
  AnyEntry,
  FencedOutcome,
  FencingToken,
  IdempotencyKey,
  IdempotencyStore,
  IdempotencyStoreError,
  InsertResult,
  MemoryStore,
  ValkeyStore,
} from '../../lib';
import { bucketOf } from '../../lib/core/key-bucket';
import { valkeyScripts } from '../../lib/stores/valkey-scripts';
import { describeValkey, getFreePort, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { freshPrefix, keysOf, processing, response, sleep } from './helpers';

const LONG = 60_000;

function claimed(result: InsertResult): Extract<InsertResult, { kind: 'claimed' }> {
  if (result.kind !== 'claimed') throw new Error(`expected a claim, got ${result.kind}`);
  return result;
}

/** A key other than `key` in the same fencing bucket. */
function sameBucketAs(key: string): string {
  const bucket = bucketOf(key);
  for (let i = 0; ; i++) if (`${key}-${i}` !== key && bucketOf(`${key}-${i}`) === bucket) return `${key}-${i}`;
}

describe('ValkeyStore scripts', () => {
  it('ships six Lua scripts, each starting with a #!lua shebang; only touch, remove and ack may run out of memory', () => {
    const scripts = valkeyScripts();
    expect(Object.keys(scripts).sort()).toEqual(['ack', 'claim', 'complete', 'get', 'remove', 'touch']);
    for (const source of Object.values(scripts)) expect(source).toMatch(/^#!lua( flags=[a-z-]+(,[a-z-]+)*)?\n/);
    expect(Object.fromEntries(Object.entries(scripts).map(([op, source]) => [op, source.split('\n')[0]]))).toEqual({
      claim: '#!lua',
      complete: '#!lua',
      touch: '#!lua flags=allow-oom',
      remove: '#!lua flags=allow-oom',
      get: '#!lua flags=no-writes',
      ack: '#!lua flags=allow-oom',
    });
  });

  it('rejects a client that is not an ioredis client', () => {
    expect(() => new ValkeyStore({} as never)).toThrow(TypeError);
    expect(() => new ValkeyStore(null as never)).toThrow(TypeError);
  });
});

describeValkey('ValkeyStore', () => {
  let server: StandaloneServer;
  let client: Redis;
  const extra = new Set<Redis>();
  const connect = async (port: number): Promise<Redis> => {
    const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
    extra.add(c);
    await c.connect();
    return c;
  };
  // Once each, and before its server stops (ioredis otherwise waits 2 s for a stream that is gone).
  const disconnect = (c: Redis): void => {
    if (extra.delete(c)) c.disconnect();
  };
  beforeAll(async () => {
    server = await startStandalone();
    client = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await client.connect();
  }, 30_000);
  afterAll(async () => {
    for (const c of [...extra]) disconnect(c);
    client?.disconnect();
    await server?.stop();
  }, 30_000);

  describe('options', () => {
    it('has defaults: kind valkey, prefix idem:, 1 s command timeout', () => {
      const store = new ValkeyStore(client);
      expect(store.kind).toBe('valkey');
      expect(store.prefix).toBe('idem:');
      expect(store.commandTimeoutMs).toBe(1000);
    });

    it('rejects prefixes with braces, spaces or over 64 characters, and bad timeouts', () => {
      for (const prefix of ['a{b', 'a}b', '{x}:', 'has space', 'x'.repeat(65), 'tab\t']) {
        expect(() => new ValkeyStore(client, { prefix })).toThrow(RangeError);
      }
      for (const commandTimeoutMs of [0, -1, 1.5, NaN]) {
        expect(() => new ValkeyStore(client, { commandTimeoutMs })).toThrow(/commandTimeoutMs/);
      }
      expect(new ValkeyStore(client, { prefix: '' }).prefix).toBe('');
    });

    it("leaves the client's options alone and never disconnects it", async () => {
      const before = JSON.stringify(client.options);
      const store = new ValkeyStore(client, { prefix: freshPrefix(), commandTimeoutMs: 250 });
      const key = IdempotencyKey.default();
      const c = claimed(await store.tryInsert(key, processing(1)));
      await store.complete(key, c.entry.complete(response()), c.fencingToken, LONG);
      await store.close();
      expect(JSON.stringify(client.options)).toBe(before);
      expect(client.options.commandTimeout).toBeUndefined();
      expect(client.status).toBe('ready');
      expect(await client.ping()).toBe('PONG');
    });
  });

  describe('ping and close', () => {
    it('ping answers; after close every operation fails with IdempotencyStoreError', async () => {
      const store = new ValkeyStore(client, { prefix: freshPrefix() });
      await expect(store.ping()).resolves.toBeUndefined();
      const key = IdempotencyKey.default();
      const c = claimed(await store.tryInsert(key, processing(1)));
      await store.close();
      const operations = [
        () => store.tryInsert(key, processing(1)),
        () => store.complete(key, c.entry.complete(response()), c.fencingToken, LONG),
        () => store.touch(key, c.fencingToken, LONG),
        () => store.remove(key, c.fencingToken),
        () => store.purge(key),
        () => store.get(key),
        () => store.ping(),
      ];
      for (const operation of operations) await expect(operation()).rejects.toThrow(IdempotencyStoreError);
      await expect(store.get(key)).rejects.toThrow(/closed/);
      // Another store on the same client still sees the claim.
      expect((await new ValkeyStore(client, { prefix: store.prefix }).get(key))?.isProcessing()).toBe(true);
    });
  });

  it('quits the client on close only when handed it with closeClient: true', async () => {
    const own = await connect(server.port);
    const store = new ValkeyStore(own, { prefix: freshPrefix(), closeClient: true });
    await store.ping();
    await store.close();
    await store.close();
    if (own.status !== 'end') await new Promise((resolve) => own.once('end', resolve));
    expect(own.status).toBe('end');
    extra.delete(own);
    await expect(store.ping()).rejects.toThrow(IdempotencyStoreError);
  });

  describe('key layout', () => {
    it('hashes the key into <prefix>{<bucket>}:e:<digest> and keeps the counter at <prefix>{<bucket>}:fence', async () => {
      const prefix = freshPrefix('layout');
      const store = new ValkeyStore(client, { prefix });
      const text = '{smuggled}order-42';
      const key = new IdempotencyKey(text);
      await store.tryInsert(key, processing(1));
      const bucket = bucketOf(text);
      const stored = (await client.keys(`${prefix}*`)).sort();
      expect(stored).toHaveLength(2);
      const [entry, fence] = stored;
      expect(entry).toMatch(new RegExp(`^${prefix}\\{${bucket}\\}:e:[A-Za-z0-9_-]{22}$`));
      expect(fence).toBe(`${prefix}{${bucket}}:fence`);
      expect(entry).not.toContain('smuggled');
      expect(keysOf(prefix, key)).toEqual({ entry, fence });
    });

    it('gives every entry a TTL (lease, renewed lease, replay window) and the counters none', async () => {
      const prefix = freshPrefix('ttl');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const { entry, fence } = keysOf(prefix, key);
      const c = claimed(await store.tryInsert(key, processing(1, 5_000)));
      expect(await client.pttl(entry)).toBeGreaterThan(4_000);
      expect(await client.pttl(entry)).toBeLessThanOrEqual(5_000);
      expect(await store.touch(key, c.fencingToken, 20_000)).toBe(FencedOutcome.Applied);
      expect(await client.pttl(entry)).toBeGreaterThan(19_000);
      expect(await store.complete(key, c.entry.complete(response()), c.fencingToken, 3_600_000)).toBe(
        FencedOutcome.Applied,
      );
      expect(await client.pttl(entry)).toBeGreaterThan(3_590_000);
      expect(await client.pttl(fence)).toBe(-1);
      // A refused touch of a completed entry leaves its TTL alone.
      expect(await store.touch(key, c.fencingToken, 1_000)).toBe(FencedOutcome.KeyExpired);
      expect(await client.pttl(entry)).toBeGreaterThan(3_590_000);
    });

    it('counts tokens per bucket: two keys of one bucket share a counter, as in MemoryStore', async () => {
      const a = new IdempotencyKey('order-1');
      const b = new IdempotencyKey(sameBucketAs('order-1'));
      const valkey = new ValkeyStore(client, { prefix: freshPrefix('bucket') });
      const memory = new MemoryStore();
      for (const store of [valkey, memory] as IdempotencyStore[]) {
        expect(claimed(await store.tryInsert(a, processing(1))).fencingToken.value).toBe(1n);
        expect(claimed(await store.tryInsert(b, processing(1))).fencingToken.value).toBe(2n);
      }
      await memory.close();
    });
  });

  describe('checkServer', () => {
    it('warns about AOF off (naming the server and what to do), and is otherwise happy with noeviction', async () => {
      const check = await new ValkeyStore(client).checkServer();
      expect(check.ok).toBe(false);
      expect(check.warnings).toEqual([
        `AOF is off on 127.0.0.1:${server.port} (appendonly no): if that server restarts, it forgets every claim ` +
          'and stored response, and retries of those requests run their handlers again. In production, set ' +
          'appendonly yes (CONFIG SET appendonly yes, and in the configuration file)',
      ]);
      expect(check.nodes).toEqual([
        {
          address: `127.0.0.1:${server.port}`,
          maxmemoryPolicy: 'noeviction',
          appendonly: false,
          appendfsync: 'everysec',
          connectedReplicas: 0,
        },
      ]);
    });

    it('passes with AOF on and noeviction; warns about an eviction policy and appendfsync no', async () => {
      const durable = await startStandalone({ appendonly: true });
      try {
        const c = await connect(durable.port);
        const store = new ValkeyStore(c);
        expect(await store.checkServer()).toEqual({
          ok: true,
          warnings: [],
          nodes: [
            {
              address: `127.0.0.1:${durable.port}`,
              maxmemoryPolicy: 'noeviction',
              appendonly: true,
              appendfsync: 'everysec',
              connectedReplicas: 0,
            },
          ],
        });
        await c.config('SET', 'maxmemory-policy', 'allkeys-lru');
        await c.config('SET', 'appendfsync', 'no');
        const check = await store.checkServer();
        expect(check.ok).toBe(false);
        expect(check.warnings).toEqual([
          expect.stringMatching(/maxmemory-policy is allkeys-lru .*noeviction/),
          expect.stringMatching(/appendfsync is no/),
        ]);
        disconnect(c);
      } finally {
        await durable.stop();
      }
    });

    it('reports "could not read config" when CONFIG is renamed away, and still checks through INFO', async () => {
      const locked = await startStandalone({ extraArgs: ['--rename-command', 'CONFIG', ''] });
      try {
        const c = await connect(locked.port);
        const check = await new ValkeyStore(c).checkServer();
        expect(check.ok).toBe(false);
        expect(check.warnings).toEqual([
          expect.stringMatching(
            new RegExp(
              `^could not read config on 127\\.0\\.0\\.1:${locked.port} \\(.*unknown command.*\\); read INFO instead`,
              'i',
            ),
          ),
          expect.stringMatching(/AOF is off/),
        ]);
        expect(check.nodes[0]).toMatchObject({ maxmemoryPolicy: 'noeviction', appendonly: false });
        disconnect(c);
      } finally {
        await locked.stop();
      }
    });

    it('runs once on module init, in the background, and hands the warnings to onWarning', async () => {
      const warnings: string[] = [];
      let reported!: () => void;
      const done = new Promise<void>((resolve) => (reported = resolve));
      const store = new ValkeyStore(client, {
        onWarning: (w) => {
          warnings.push(w);
          reported();
        },
      });
      await store.onModuleInit();
      await store.onModuleInit();
      await done;
      await sleep(200);
      expect(warnings).toEqual([expect.stringMatching(/^ValkeyStore: AOF is off on 127\.0\.0\.1:\d+ /)]);
      const quiet = new ValkeyStore(client, { checkServerOnInit: false, onWarning: (w) => warnings.push(w) });
      await quiet.onModuleInit();
      await sleep(200);
      expect(warnings).toHaveLength(1);
    });

    it('an unreachable server: start-up does not wait for the check, which says so once, plainly', async () => {
      // A port nobody listens on: ioredis keeps reconnecting, commands wait in its offline queue.
      const port = await getFreePort();
      const c = new Redis({ host: '127.0.0.1', port, retryStrategy: () => 50, lazyConnect: true });
      c.on('error', () => undefined);
      c.connect().catch(() => undefined);
      const warnings: string[] = [];
      let reported!: () => void;
      const done = new Promise<void>((resolve) => (reported = resolve));
      const store = new ValkeyStore(c, {
        commandTimeoutMs: 300,
        onWarning: (w) => {
          warnings.push(w);
          reported();
        },
      });
      try {
        await store.onModuleInit();
        // The hook returned before the check's commands could time out.
        expect(warnings).toEqual([]);
        await done;
        await sleep(100);
        expect(warnings).toEqual([
          expect.stringMatching(
            new RegExp(
              `^ValkeyStore: cannot reach the server at 127\\.0\\.0\\.1:${port} \\(no answer within 300 ms; ` +
                'the client is (connecting|reconnecting)\\)\\. Until it answers, requests with an idempotency key fail',
            ),
          ),
        ]);
        const check = await store.checkServer();
        expect(check.warnings).toHaveLength(1);
        expect(check.nodes).toEqual([{ address: `127.0.0.1:${port}` }]);
      } finally {
        await store.close();
        c.disconnect();
      }
    });

    it('a store closed before its start-up check ends reports nothing', async () => {
      const port = await getFreePort();
      const c = new Redis({ host: '127.0.0.1', port, retryStrategy: () => 50, lazyConnect: true });
      c.on('error', () => undefined);
      c.connect().catch(() => undefined);
      const warnings: string[] = [];
      const store = new ValkeyStore(c, { commandTimeoutMs: 100, onWarning: (w) => warnings.push(w) });
      await store.onModuleInit();
      await store.close();
      await sleep(400);
      c.disconnect();
      expect(warnings).toEqual([]);
    });
  });

  describe('same answers as MemoryStore', () => {
    // Three keys, two of them sharing a fencing bucket; long leases so no answer depends on time.
    const KEYS = ['order-1', sameBucketAs('order-1'), 'order-2/alice'].map((k) => IdempotencyKey.fromJSON(k));
    type Op =
      | { op: 'claim'; k: number; f: number; lease: number }
      | { op: 'complete'; k: number; t: number; f: number; body: number; ttl: number }
      | { op: 'touch'; k: number; t: number; ttl: number }
      | { op: 'remove'; k: number; t: number }
      | { op: 'purge'; k: number }
      | { op: 'get'; k: number };
    const k = fc.constantFrom(0, 0, 1, 2);
    const f = fc.constantFrom(0, 0, 0, 1);
    // A token: -2 the latest one issued, -1 a forged one, n >= 0 the n-th issued (mod the count).
    const t = fc.constantFrom(-2, -2, -2, -1, 0, 1, 2, 3);
    const ttl = fc.constantFrom(LONG, LONG * 2);
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ op: fc.constant('claim' as const), k, f, lease: ttl }) },
      {
        weight: 4,
        arbitrary: fc.record({
          op: fc.constant('complete' as const),
          k,
          t,
          f,
          body: fc.integer({ min: 0, max: 2 }),
          ttl,
        }),
      },
      { weight: 2, arbitrary: fc.record({ op: fc.constant('touch' as const), k, t, ttl }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('remove' as const), k, t }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('purge' as const), k }) },
      { weight: 2, arbitrary: fc.record({ op: fc.constant('get' as const), k }) },
    );
    const BODIES = ['one', 'two', ''];

    const describeEntry = (e: AnyEntry | undefined) =>
      e === undefined
        ? undefined
        : {
            state: e.state,
            fp: e.fingerprint.toString(),
            ttl: e.ttl,
            response: e.isCompleted()
              ? { status: e.response.statusCode, body: e.response.text(), meta: e.response.metadata }
              : undefined,
          };

    async function apply(store: IdempotencyStore, issued: FencingToken[], op: Op): Promise<unknown> {
      const key = KEYS[op.k];
      const token = (i: number) =>
        i === -1 || issued.length === 0
          ? new FencingToken(1n, 'forged')
          : issued[i === -2 ? issued.length - 1 : i % issued.length];
      switch (op.op) {
        case 'claim': {
          const r = await store.tryInsert(key, processing(op.f, op.lease));
          if (r.kind === 'claimed') {
            issued.push(r.fencingToken);
            return { kind: 'claimed', token: r.fencingToken.value, entry: describeEntry(r.entry) };
          }
          return { kind: 'exists', entry: describeEntry(r.entry) };
        }
        case 'complete': {
          const done = processing(op.f, LONG).complete(response(BODIES[op.body], 200 + op.body));
          return store.complete(key, done, token(op.t), op.ttl);
        }
        case 'touch':
          return store.touch(key, token(op.t), op.ttl);
        case 'remove':
          return store.remove(key, token(op.t));
        case 'purge':
          return store.purge(key);
        case 'get':
          return describeEntry(await store.get(key));
      }
    }

    it('answers random operation sequences exactly as MemoryStore does, token numbers included', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 10, maxLength: 50, size: 'max' }), async (ops) => {
          const memory = new MemoryStore();
          const valkey = new ValkeyStore(client, { prefix: freshPrefix('diff') });
          const issuedM: FencingToken[] = [];
          const issuedV: FencingToken[] = [];
          try {
            for (const op of ops) {
              const expected = await apply(memory, issuedM, op);
              const actual = await apply(valkey, issuedV, op);
              expect({ op, answer: actual }).toEqual({ op, answer: expected });
            }
            for (const key of KEYS)
              expect(describeEntry(await valkey.get(key))).toEqual(describeEntry(await memory.get(key)));
          } finally {
            await memory.close();
          }
        }),
        { numRuns: 100 },
      );
    });
  });
});
