/**
 * `durability` on real servers: a primary with a replica (and a cluster with a replica per
 * primary). After every claim and completion the store sends WAIT (or WAITAOF) behind the script,
 * in the same write; fewer acknowledgements than asked is a StoreDurabilityError, and a claim that
 * fails so is removed. Replicas are paused with SIGSTOP; nothing here is mocked.
 */
import { Cluster, Redis } from 'ioredis';
import {
  FencedOutcome,
  IdempotencyKey,
  IdempotencyStoreError,
  InsertResult,
  StoreDurabilityError,
  ValkeyStore,
  type ValkeyStoreOptions,
} from '../../lib';
import {
  describeRedis7,
  describeValkey,
  startCluster,
  startReplica,
  startStandalone,
  waitForReplica,
  type ClusterServer,
  type StandaloneServer,
} from '../support/valkey-server';
import { commandStats, fewestWrites, freshPrefix, keysOf, processing, response, sleep, statsDelta } from './helpers';
import { startTcpProxy } from './tcp-proxy';

const LONG = 60_000;
const WAIT_MS = 300;
const DURABLE: ValkeyStoreOptions = {
  durability: { replicas: 1, timeoutMs: WAIT_MS },
  commandTimeoutMs: 3_000,
  onWarning: () => undefined,
};

/** The commands a client sends itself (commandstats also counts those scripts call, and the replica's). */
const sent = (delta: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(delta).filter(([name]) => /^(eval|evalsha|wait|waitaof|incrby)$/.test(name)));

function claimed(result: InsertResult): Extract<InsertResult, { kind: 'claimed' }> {
  if (result.kind !== 'claimed') throw new Error(`expected a claim, got ${result.kind}`);
  return result;
}

/** What `promise` rejected with (fails the test if it resolved). */
/** Polls `check` until it holds (or fails after `ms`). */
async function eventually(check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

/** Waits until the completed entry of `key` is marked acknowledged (state `c`, not `u`). */
function eventuallyAcknowledged(admin: Redis | Cluster, store: ValkeyStore, key: IdempotencyKey): Promise<void> {
  const entry = keysOf(store.prefix, key).entry;
  return eventually(async () => (await admin.getBuffer(entry))?.toString('latin1', 0, 2) === '\x02c');
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

describe('ValkeyStore durability option', () => {
  const client = { isCluster: false, defineCommand: () => undefined, pipeline: () => undefined } as never;
  // defineCommand is a no-op here, so the store cannot find its commands: validation must come first.
  const make = (options: ValkeyStoreOptions) => () => new ValkeyStore(client, options);

  it('refuses what is not a whole number, an empty ask, a wait as long as the command limit, and unknown options', () => {
    expect(make({ durability: { replicas: -1, timeoutMs: 100 } })).toThrow(
      'durability.replicas must be a whole number from 0 to 1000, got -1',
    );
    expect(make({ durability: { replicas: 1.5, timeoutMs: 100 } })).toThrow(/durability\.replicas .* got 1\.5/);
    expect(make({ durability: { replicas: 0, timeoutMs: 100 } })).toThrow(/replicas is 0 without aof/);
    expect(make({ durability: { replicas: 1, timeoutMs: 0 } })).toThrow(/durability\.timeoutMs must be a whole number/);
    expect(make({ durability: { replicas: 1, timeoutMs: 2.5 } })).toThrow(/durability\.timeoutMs/);
    expect(make({ durability: { replicas: 1, timeoutMs: 1000 } })).toThrow(
      /durability\.timeoutMs \(1000\) must be below commandTimeoutMs \(1000\).*e\.g\. to 2000/,
    );
    expect(make({ commandTimeoutMs: 500, durability: { replicas: 1, timeoutMs: 800 } })).toThrow(
      /below commandTimeoutMs/,
    );
    expect(make({ durability: { replicas: 1, timeoutMs: 100, replica: 2 } as never })).toThrow(
      'durability has no option "replica" (replicas, aof, timeoutMs)',
    );
    expect(make({ durability: { replicas: 1, timeoutMs: 100, aof: 'yes' } as never })).toThrow(/aof must be a boolean/);
    expect(make({ durability: 1 as never })).toThrow(/durability must be an object/);
    const noPipeline = { isCluster: false, defineCommand: () => undefined } as never;
    expect(() => new ValkeyStore(noPipeline, { durability: { replicas: 1, timeoutMs: 100 } })).toThrow(
      /needs a client with pipeline\(\)/,
    );
  });
});

describe('StoreDurabilityError', () => {
  it('is a store error carrying what was asked and acknowledged', () => {
    const error = new StoreDurabilityError('claim', { asked: 2, acked: 1 }, { timeoutMs: 100 });
    expect(error).toBeInstanceOf(IdempotencyStoreError);
    expect(error).toMatchObject({ name: 'StoreDurabilityError', operation: 'claim', asked: 2, acked: 1, aof: false });
    expect(error.localAcked).toBeUndefined();
    expect(error.message).toBe('claim: 1 of 2 replicas acknowledged the write within 100 ms');
    const aof = new StoreDurabilityError('complete', { asked: 1, acked: 1, aof: true, localAcked: false });
    expect(aof.message).toBe(
      'complete: 1 of 1 replicas wrote the write to their AOF, and the primary did not write it to its own AOF in time',
    );
  });
});

describeValkey('ValkeyStore durability, a primary with one replica', () => {
  let primary: StandaloneServer;
  let replica: StandaloneServer;
  let admin: Redis;
  let onReplica: Redis;
  const clients = new Set<Redis>();
  const connect = async (port = primary.port): Promise<Redis> => {
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
    clients.add(client);
    await client.connect();
    return client;
  };
  const disconnect = (client: Redis): void => {
    if (clients.delete(client)) client.disconnect();
  };

  beforeAll(async () => {
    primary = await startStandalone();
    replica = await startReplica(primary);
    admin = await connect();
    onReplica = await connect(replica.port);
  }, 30_000);
  afterAll(async () => {
    if (replica?.paused) replica.resume();
    for (const client of [...clients]) disconnect(client);
    await replica?.stop();
    await primary?.stop();
  }, 30_000);
  afterEach(async () => {
    if (replica.paused) replica.resume();
    await waitForReplica(primary.port, replica.port);
  });

  it('claims and completions are on the replica when they return; replays and the rest work as before', async () => {
    const client = await connect();
    const store = new ValkeyStore(client, { ...DURABLE, prefix: freshPrefix('dur') });
    for (let i = 0; i < 3; i++) {
      const key = IdempotencyKey.default();
      const keys = keysOf(store.prefix, key);
      const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
      expect((await onReplica.getBuffer(keys.entry))?.toString('latin1', 0, 2)).toBe('\x02p');
      const done = claim.entry.complete(response('{"ok":1}'));
      expect(await store.complete(key, done, claim.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      // On the replica, completed: as written (`u`), or already marked acknowledged (`c`).
      expect(['\x02u', '\x02c']).toContain((await onReplica.getBuffer(keys.entry))?.toString('latin1', 0, 2));
      await eventuallyAcknowledged(admin, store, key);
      const replay = await store.tryInsert(key, processing(1, LONG));
      expect(replay.kind === 'exists' && replay.entry.isCompleted()).toBe(true);
      // Repeated by its holder: Applied again, and acknowledged again.
      expect(await store.complete(key, done, claim.fencingToken, LONG)).toBe(FencedOutcome.Applied);
    }
    // The other operations do not wait, and answer as they do without durability.
    const key = IdempotencyKey.default();
    const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
    expect(await store.touch(key, claim.fencingToken, LONG)).toBe(FencedOutcome.Applied);
    expect(await store.remove(key, claim.fencingToken)).toBe(FencedOutcome.Applied);
    expect(await store.get(key)).toBeUndefined();
    // Behind every command sent on the connection: no acknowledgement mark of this test is left
    // to land in the next one's command counts.
    await client.ping();
  });

  it('the WAIT rides with the script: one write per operation, 2 round trips per fresh request and 1 per replay', async () => {
    const store = new ValkeyStore(await connect(), { ...DURABLE, prefix: freshPrefix('durw') });
    // Warm up: the first use of each script on a connection sends its source (EVAL).
    const warm = IdempotencyKey.default();
    const w = claimed(await store.tryInsert(warm, processing(1)));
    await store.complete(warm, w.entry.complete(response()), w.fencingToken, LONG);
    await eventuallyAcknowledged(admin, store, warm);

    // /proc/self/io counts the whole process's writes, so a stray one elsewhere (a log line) can
    // land inside a measurement: the fewest of three rounds, each on a fresh key, is the store's.
    const writes: number[][] = [];
    for (let round = 0; round < 3; round++) {
      const key = IdempotencyKey.default();
      let claim!: Extract<InsertResult, { kind: 'claimed' }>;
      let before = await commandStats(admin);
      const claimWrites = await fewestWrites(
        async () => (claim = claimed(await store.tryInsert(key, processing(1)))),
        1,
      );
      expect(sent(statsDelta(before, await commandStats(admin)))).toEqual({ evalsha: 1, wait: 1 });
      before = await commandStats(admin);
      const completeWrites = await fewestWrites(
        () => store.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG),
        1,
      );
      // The completion, written as not yet acknowledged, is marked acknowledged behind it (the
      // ack script, not awaited by the caller).
      await eventuallyAcknowledged(admin, store, key);
      expect(sent(statsDelta(before, await commandStats(admin)))).toEqual({ evalsha: 2, incrby: 1, wait: 1 });
      before = await commandStats(admin);
      const replayWrites = await fewestWrites(() => store.tryInsert(key, processing(1)), 1);
      // The replay answers without waiting for its WAIT (sent in the same write), which the server
      // counts once it has answered: after the acknowledgement mark of the completion reached the
      // replica.
      await eventually(async () => (sent(statsDelta(before, await commandStats(admin))).wait ?? 0) >= 1);
      expect(sent(statsDelta(before, await commandStats(admin)))).toEqual({ evalsha: 1, wait: 1 });
      if (claimWrites !== undefined) writes.push([claimWrites, completeWrites!, replayWrites!]);
    }
    // Where /proc/self/io counts system calls (Linux): one socket write each.
    if (writes.length > 0) {
      const fewest = [0, 1, 2].map((i) => Math.min(...writes.map((w) => w[i])));
      expect(fewest).toEqual([1, 1, 1]);
    }
  });

  it('replica paused: a claim fails with StoreDurabilityError after the wait, and is removed; resumed, claims succeed', async () => {
    const store = new ValkeyStore(await connect(), { ...DURABLE, prefix: freshPrefix('durp') });
    const key = IdempotencyKey.default();
    const keys = keysOf(store.prefix, key);
    replica.pause();
    const started = Date.now();
    const error = await rejection(store.tryInsert(key, processing(1, LONG)));
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(StoreDurabilityError);
    expect(error).toMatchObject({ operation: 'claim', asked: 1, acked: 0, aof: false });
    expect((error as Error).message).toBe(`claim: 0 of 1 replicas acknowledged the write within ${WAIT_MS} ms`);
    expect(elapsed).toBeGreaterThanOrEqual(WAIT_MS - 10);
    expect(elapsed).toBeLessThan(WAIT_MS + 2_500);
    // The claim was removed on the primary: the key is free, and the token was used up.
    expect(await admin.exists(keys.entry)).toBe(0);
    expect(await admin.get(keys.fence)).toBe('1');

    replica.resume();
    await waitForReplica(primary.port, replica.port);
    const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
    expect(claim.fencingToken.value).toBe(2n);
    expect(await onReplica.exists(keys.entry)).toBe(1);
  });

  it('replica paused after the claim: the completion is applied on the primary but fails; sent again once the replica is back, it is acknowledged', async () => {
    const store = new ValkeyStore(await connect(), { ...DURABLE, prefix: freshPrefix('durc') });
    const key = IdempotencyKey.default();
    const keys = keysOf(store.prefix, key);
    const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
    const done = claim.entry.complete(response('{"paid":true}'));
    replica.pause();
    const error = await rejection(store.complete(key, done, claim.fencingToken, LONG));
    expect(error).toBeInstanceOf(StoreDurabilityError);
    expect(error).toMatchObject({ operation: 'complete', asked: 1, acked: 0 });
    // The primary has it, marked not yet acknowledged (`u`); the replica does not. No replay (nor a
    // read) answers with it until the replicas acknowledge it (issue 17, defect 4).
    expect((await admin.getBuffer(keys.entry))?.toString('latin1', 0, 2)).toBe('\x02u');
    const replay = await rejection(store.tryInsert(key, processing(1, LONG)));
    expect(replay).toBeInstanceOf(StoreDurabilityError);
    expect(replay).toMatchObject({ operation: 'replay', asked: 1, acked: 0 });
    expect(await rejection(store.get(key))).toBeInstanceOf(StoreDurabilityError);

    replica.resume();
    await waitForReplica(primary.port, replica.port);
    expect(await store.complete(key, done, claim.fencingToken, LONG)).toBe(FencedOutcome.Applied);
    await eventuallyAcknowledged(admin, store, key);
    expect((await onReplica.getBuffer(keys.entry))?.toString('latin1', 0, 2)).toBe('\x02c');
  });

  it('a replay of a completion not acknowledged yet waits for the replicas; acknowledged, it is marked so and answers', async () => {
    const store = new ValkeyStore(await connect(), { ...DURABLE, prefix: freshPrefix('durua') });
    const key = IdempotencyKey.default();
    const keys = keysOf(store.prefix, key);
    const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
    replica.pause();
    await rejection(store.complete(key, claim.entry.complete(response('{"paid":1}')), claim.fencingToken, LONG));
    // Another instance's store (no shared state in the process) refuses to replay it, then replays.
    const other = new ValkeyStore(await connect(), { ...DURABLE, prefix: store.prefix });
    expect(await rejection(other.tryInsert(key, processing(1, LONG)))).toBeInstanceOf(StoreDurabilityError);
    replica.resume();
    await waitForReplica(primary.port, replica.port);
    const replay = await other.tryInsert(key, processing(1, LONG));
    expect(replay.kind === 'exists' && replay.entry.isCompleted()).toBe(true);
    await eventually(async () => (await admin.getBuffer(keys.entry))?.toString('latin1', 0, 2) === '\x02c');
  });

  it('a replay of an acknowledged completion answers without waiting for the replicas', async () => {
    const client = await connect();
    const store = new ValkeyStore(client, {
      durability: { replicas: 1, timeoutMs: 4_000 },
      commandTimeoutMs: 8_000,
      prefix: freshPrefix('durr'),
    });
    const key = IdempotencyKey.default();
    const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
    await store.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG);
    const entryKey = keysOf(store.prefix, key).entry;
    await eventually(async () => (await admin.getBuffer(entryKey))?.toString('latin1', 0, 2) === '\x02c');
    replica.pause();
    // A write the replica will not acknowledge, on the store's connection: a WAIT now blocks.
    await client.set(`${store.prefix}other`, 'x');
    const started = Date.now();
    const replay = await store.tryInsert(key, processing(1, LONG));
    expect(replay.kind === 'exists' && replay.entry.isCompleted()).toBe(true);
    // The WAIT behind it runs 4 s; the replay did not wait for it.
    expect(Date.now() - started).toBeLessThan(3_000);
    replica.resume();
    await client.ping(); // the WAIT has answered: the connection is free again
  }, 20_000);

  it('a claim re-sent after a reconnect finds itself, and is acknowledged by a new WAIT behind a write', async () => {
    const proxy = await startTcpProxy(primary.port);
    try {
      const client = new Redis({ host: '127.0.0.1', port: proxy.port, lazyConnect: true });
      clients.add(client);
      await client.connect();
      const store = new ValkeyStore(client, { ...DURABLE, prefix: freshPrefix('dursr') });
      const key = IdempotencyKey.default();
      const keys = keysOf(store.prefix, key);
      const before = await commandStats(admin);
      const cut = proxy.dropNextReply();
      const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
      await cut;
      expect(claim.fencingToken.value).toBe(1n);
      // The script ran twice (the second found its own claim), then one more bump and WAIT.
      const delta = statsDelta(before, await commandStats(admin));
      expect((delta.eval ?? 0) + (delta.evalsha ?? 0)).toBe(2);
      expect(delta.incrby).toBe(1);
      expect(await onReplica.exists(keys.entry)).toBe(1);
      disconnect(client);
    } finally {
      await proxy.close();
    }
  });

  it('SCRIPT FLUSH: the script is sent again with its wait, and still acknowledged', async () => {
    const store = new ValkeyStore(await connect(), { ...DURABLE, prefix: freshPrefix('durf') });
    const warm = IdempotencyKey.default();
    claimed(await store.tryInsert(warm, processing(1)));
    await admin.script('FLUSH');
    const key = IdempotencyKey.default();
    const before = await commandStats(admin);
    const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
    const delta = statsDelta(before, await commandStats(admin));
    expect(delta.eval).toBe(1);
    expect(delta.wait).toBe(2); // one behind the refused EVALSHA, one behind the EVAL
    replica.pause();
    await admin.script('FLUSH');
    // The completion's script meets NOSCRIPT too; its second WAIT (behind the EVAL) falls short.
    const error = await rejection(store.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG));
    expect(error).toBeInstanceOf(StoreDurabilityError);
  });

  it('checkServer counts the replicas in sync against the ones asked for', async () => {
    const asksTwo = new ValkeyStore(admin, { durability: { replicas: 2, timeoutMs: 100 }, onWarning: () => undefined });
    const check = await asksTwo.checkServer();
    expect(check.nodes).toEqual([
      expect.objectContaining({ address: `127.0.0.1:${primary.port}`, connectedReplicas: 1 }),
    ]);
    expect(check.warnings).toContain(
      `127.0.0.1:${primary.port} has 1 replica in sync, and durability.replicas asks for 2: claims there fail ` +
        '(HTTP 503) until enough replicas are connected',
    );
    const asksOne = new ValkeyStore(admin, DURABLE);
    expect((await asksOne.checkServer()).warnings.filter((w) => /durability/.test(w))).toEqual([]);
    const aof = new ValkeyStore(admin, { ...DURABLE, durability: { replicas: 1, timeoutMs: 100, aof: true } });
    expect((await aof.checkServer()).warnings).toEqual([
      expect.stringMatching(
        new RegExp(`^AOF is off on 127\\.0\\.0\\.1:${primary.port} \\(appendonly no\\), and durability\\.aof waits`),
      ),
    ]);
  });

  it('aof on a server without AOF: every claim fails with a StoreDurabilityError that says why, and is removed', async () => {
    const store = new ValkeyStore(await connect(), {
      ...DURABLE,
      durability: { replicas: 0, aof: true, timeoutMs: 100 },
      prefix: freshPrefix('durnoaof'),
    });
    const key = IdempotencyKey.default();
    const error = await rejection(store.tryInsert(key, processing(1, LONG)));
    expect(error).toBeInstanceOf(StoreDurabilityError);
    expect(error).toMatchObject({ operation: 'claim', asked: 0, acked: 0, aof: true, localAcked: false });
    expect((error as Error).message).toMatch(/appendonly is disabled.*durability\.aof needs appendonly yes/);
    expect(await store.get(key)).toBeUndefined();
  });
});

describeValkey('ValkeyStore durability with aof: WAITAOF, a primary and a replica with AOF', () => {
  let primary: StandaloneServer;
  let replica: StandaloneServer;
  let client: Redis;

  beforeAll(async () => {
    const args = ['--appendfsync', 'always'];
    primary = await startStandalone({ appendonly: true, extraArgs: args });
    replica = await startReplica(primary, { appendonly: true, extraArgs: args });
    client = new Redis({ host: '127.0.0.1', port: primary.port, lazyConnect: true });
    await client.connect();
  }, 30_000);
  afterAll(async () => {
    if (replica?.paused) replica.resume();
    client?.disconnect();
    await replica?.stop();
    await primary?.stop();
  }, 30_000);

  it('claims and completions wait for AOF writes on both; a paused replica fails them; the check is quiet', async () => {
    // A replica reports its AOF writes with its once-a-second acknowledgement: about 1 s per WAITAOF.
    const store = new ValkeyStore(client, {
      durability: { replicas: 1, aof: true, timeoutMs: 2_500 },
      commandTimeoutMs: 5_000,
      prefix: freshPrefix('aof'),
    });
    expect(await store.checkServer()).toMatchObject({ ok: true, warnings: [] });
    const key = IdempotencyKey.default();
    const before = await commandStats(client);
    const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
    expect(await store.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG)).toBe(
      FencedOutcome.Applied,
    );
    expect(statsDelta(before, await commandStats(client)).waitaof).toBe(2);

    replica.pause();
    try {
      const error = await rejection(store.tryInsert(IdempotencyKey.default(), processing(1, LONG)));
      expect(error).toBeInstanceOf(StoreDurabilityError);
      expect(error).toMatchObject({ asked: 1, acked: 0, aof: true, localAcked: true });
      expect((error as Error).message).toBe('claim: 0 of 1 replicas wrote the write to their AOF within 2500 ms');
    } finally {
      replica.resume();
    }
  });

  it("aof with replicas: 0 waits for the primary's own AOF write only", async () => {
    const store = new ValkeyStore(client, {
      durability: { replicas: 0, aof: true, timeoutMs: 500 },
      prefix: freshPrefix('aof0'),
    });
    replica.pause();
    try {
      const key = IdempotencyKey.default();
      const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
      expect(await store.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
    } finally {
      replica.resume();
    }
  });
});

describeRedis7('ValkeyStore durability on Redis 7.0 (no WAITAOF)', () => {
  let primary: StandaloneServer;
  let replica: StandaloneServer;
  let client: Redis;

  beforeAll(async () => {
    primary = await startStandalone({ binary: 'redis', appendonly: true });
    replica = await startReplica(primary, { binary: 'redis' });
    client = new Redis({ host: '127.0.0.1', port: primary.port, lazyConnect: true });
    await client.connect();
  }, 30_000);
  afterAll(async () => {
    client?.disconnect();
    await replica?.stop();
    await primary?.stop();
  }, 30_000);

  it('aof: the check warns, and claims fail with an error that names WAITAOF and 7.2', async () => {
    const store = new ValkeyStore(client, {
      durability: { replicas: 1, aof: true, timeoutMs: 200 },
      prefix: freshPrefix('r7aof'),
    });
    const check = await store.checkServer();
    expect(check.warnings).toEqual([
      expect.stringMatching(
        new RegExp(`^127\\.0\\.0\\.1:${primary.port} runs Redis 7\\.0\\.\\d+, which has no WAITAOF .*leave aof off$`),
      ),
    ]);
    const key = IdempotencyKey.default();
    const error = await rejection(store.tryInsert(key, processing(1, LONG)));
    expect(error).toBeInstanceOf(StoreDurabilityError);
    expect((error as Error).message).toMatch(/unknown command.*WAITAOF.*since 7\.2/i);
    expect(await store.get(key)).toBeUndefined();
  });

  it('WAIT works there', async () => {
    const store = new ValkeyStore(client, { durability: { replicas: 1, timeoutMs: 200 }, prefix: freshPrefix('r7') });
    const key = IdempotencyKey.default();
    const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
    expect(await store.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG)).toBe(
      FencedOutcome.Applied,
    );
  });
});

describeValkey('ValkeyStore durability on a cluster: 3 primaries with a replica each', () => {
  let cluster: ClusterServer;
  let client: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3, replicas: 1 });
    client = new Cluster(cluster.nodes, { lazyConnect: true });
    await client.connect();
  }, 90_000);
  afterAll(async () => {
    for (const server of cluster?.servers ?? []) if (server.paused) server.resume();
    client?.disconnect();
    await cluster?.stop();
  }, 30_000);

  it('the WAIT reaches the primary that owns the key: a paused replica fails exactly the keys of its primary', async () => {
    const store = new ValkeyStore(client, { ...DURABLE, commandTimeoutMs: 10_000, prefix: freshPrefix('durcl') });
    const check = await store.checkServer();
    expect(check.nodes).toHaveLength(3);
    expect(check.nodes.every((node) => node.connectedReplicas === 1)).toBe(true);
    expect(check.warnings.filter((w) => /durability/.test(w))).toEqual([]);

    const keys = Array.from({ length: 24 }, () => IdempotencyKey.default());
    // Every key works while the replicas are in sync.
    for (const key of keys) {
      const claim = claimed(await store.tryInsert(key, processing(1, LONG)));
      expect(await store.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
    }

    for (const key of keys) await eventuallyAcknowledged(client, store, key);
    const [shard] = await cluster.shards();
    const owner = `${shard.primary.host}:${shard.primary.port}`;
    const ownerOf = async (key: IdempotencyKey): Promise<string> => {
      const slot = Number(await client.cluster('KEYSLOT', keysOf(store.prefix, key).entry));
      return client.slots[slot][0];
    };
    shard.replicas[0].pause();
    try {
      const fresh = Array.from({ length: 24 }, () => IdempotencyKey.default());
      const owners = await Promise.all(fresh.map(ownerOf));
      expect(owners).toContain(owner);
      expect(owners.some((o) => o !== owner)).toBe(true);
      const outcomes = await Promise.all(
        fresh.map((key) =>
          store.tryInsert(key, processing(1, LONG)).then(
            (result) => result.kind,
            (error: unknown) => (error instanceof StoreDurabilityError ? 'durability' : String(error)),
          ),
        ),
      );
      expect(outcomes).toEqual(owners.map((o) => (o === owner ? 'durability' : 'claimed')));
      // Replays of acknowledged completions on the paused replica's primary still answer.
      const replays = await Promise.all(keys.map((key) => store.tryInsert(key, processing(1, LONG))));
      expect(replays.every((r) => r.kind === 'exists' && r.entry.isCompleted())).toBe(true);
    } finally {
      shard.replicas[0].resume();
    }
    await sleep(0);
  }, 60_000);
});
