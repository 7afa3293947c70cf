/**
 * The store's own script path (`ScriptCalls`: EVALSHA frames sent as command objects of the
 * client) on real servers: NOSCRIPT recovery after SCRIPT FLUSH and a restart, the client's
 * keyPrefix, the offline queue, `stringNumbers`, a 3-primary cluster, and the defined-command
 * fallback for a client without `sendCommand`.
 */
import * as diagnostics from 'node:diagnostics_channel';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { FencedOutcome, IdempotencyKey, ValkeyStore } from '../../lib';
import { ScriptCalls } from '../../lib/stores/valkey-script-calls';
import {
  describeValkey,
  startCluster,
  startStandalone,
  type ClusterServer,
  type StandaloneServer,
} from '../support/valkey-server';
import { commandStats, freshPrefix, keysOf, processing, response, statsDelta } from './helpers';

const LONG = 60_000;

/** Claims, completes and replays one key; answers what each step saw. */
async function roundTrip(store: ValkeyStore, key = IdempotencyKey.default()) {
  const claim = await store.tryInsert(key, processing(1, LONG));
  if (claim.kind !== 'claimed') throw new Error(`expected a claim, got ${claim.kind}`);
  const outcome = await store.complete(key, claim.entry.complete(response('{"n":1}')), claim.fencingToken, LONG);
  const replay = await store.tryInsert(key, processing(1, LONG));
  const got = await store.get(key);
  return {
    outcome,
    replay:
      replay.kind === 'exists' && replay.entry.isCompleted() ? replay.entry.response.body.toString() : replay.kind,
    got: got?.isCompleted() ? got.response.body.toString() : String(got),
  };
}

const EXPECTED = { outcome: FencedOutcome.Applied, replay: '{"n":1}', got: '{"n":1}' };

describeValkey('ValkeyStore script path on a standalone server', () => {
  let server: StandaloneServer;
  const clients: Redis[] = [];
  const stores: ValkeyStore[] = [];
  let admin: Redis;

  const connect = (options: RedisOptions = {}): Redis => {
    const client = new Redis(server.port, server.host, { maxRetriesPerRequest: null, ...options });
    clients.push(client);
    return client;
  };
  const storeOn = (client: Redis | Cluster, prefix = freshPrefix('calls')): ValkeyStore => {
    const store = new ValkeyStore(client, { prefix, checkServerOnInit: false });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await startStandalone();
    admin = connect();
  });

  afterAll(async () => {
    for (const store of stores) await store.close();
    for (const client of clients) client.disconnect();
    await server?.stop();
  });

  it('is in use on an ioredis Redis: scripts go as EVALSHA, with no EVAL once loaded', async () => {
    const client = connect();
    const store = storeOn(client);
    // (The store's defineCommand calls made the Command class reachable.)
    expect(ScriptCalls.of(client as never, 'nestjsIdempotentV2Claim', {})).toBeDefined();
    await roundTrip(store);
    const before = await commandStats(admin);
    expect(await roundTrip(store)).toEqual(EXPECTED);
    const delta = statsDelta(before, await commandStats(admin));
    // (commandstats counts the commands the scripts run too)
    expect(delta.evalsha).toBe(4);
    expect(delta.eval).toBeUndefined();
  });

  it("leaves no unfinished trace in ioredis' tracing channel (a subscriber sees every command it is told of end)", async () => {
    const channel = diagnostics.tracingChannel('ioredis:command');
    let started = 0;
    let ended = 0;
    const handlers = {
      start: () => void started++,
      end: () => undefined,
      asyncStart: () => undefined,
      asyncEnd: () => void ended++,
      error: () => undefined,
    };
    channel.subscribe(handlers);
    try {
      const client = connect();
      const store = storeOn(client);
      for (let i = 0; i < 5; i++) expect(await roundTrip(store)).toEqual(EXPECTED);
      // The channel is live: a command of the application's own is traced, start to end.
      await client.get('not-the-store');
      await new Promise((resolve) => setImmediate(resolve));
      expect(started).toBeGreaterThan(0);
      expect(ended).toBe(started);
    } finally {
      channel.unsubscribe(handlers);
    }
  });

  it('recovers from SCRIPT FLUSH without the caller seeing an error (EVAL once per script)', async () => {
    const store = storeOn(connect());
    expect(await roundTrip(store)).toEqual(EXPECTED);
    await admin.script('FLUSH');
    const before = await commandStats(admin);
    expect(await roundTrip(store)).toEqual(EXPECTED);
    const delta = statsDelta(before, await commandStats(admin));
    // claim, complete, claim (loaded now), get: NOSCRIPT then EVAL for each script's first call.
    expect(delta.eval).toBe(3);
    expect(delta.evalsha).toBe(4);
    // Calls sent together in one turn after a flush all recover.
    await admin.script('FLUSH');
    const results = await Promise.all(Array.from({ length: 20 }, () => roundTrip(store)));
    for (const result of results) expect(result).toEqual(EXPECTED);
  });

  it('recovers after a server restart (scripts gone), once the client has reconnected', async () => {
    const client = connect();
    const store = storeOn(client);
    expect(await roundTrip(store)).toEqual(EXPECTED);
    await server.restart();
    // The offline queue holds what is sent while the client reconnects.
    expect(await roundTrip(store)).toEqual(EXPECTED);
  });

  it("applies the client's keyPrefix to the script's keys (the other arguments untouched)", async () => {
    const prefix = freshPrefix('kp');
    const client = connect({ keyPrefix: 'client-prefix:' });
    const store = storeOn(client, prefix);
    const key = IdempotencyKey.default();
    expect(await roundTrip(store, key)).toEqual(EXPECTED);
    const { entry, fence } = keysOf(prefix, key);
    expect(await admin.exists(`client-prefix:${entry}`)).toBe(1);
    expect(await admin.exists(`client-prefix:${fence}`)).toBe(1);
    expect(await admin.exists(entry)).toBe(0);
    // Another client with the same keyPrefix sees it; after SCRIPT FLUSH too (the EVAL re-send).
    await admin.script('FLUSH');
    const other = storeOn(connect({ keyPrefix: 'client-prefix:' }), prefix);
    const replay = await other.tryInsert(key, processing(1, LONG));
    expect(replay.kind).toBe('exists');
    const removeKey = IdempotencyKey.default();
    const claim = await other.tryInsert(removeKey, processing(1, LONG));
    if (claim.kind !== 'claimed') throw new Error('expected a claim');
    expect(await other.touch(removeKey, claim.fencingToken, LONG)).toBe(FencedOutcome.Applied);
    expect(await admin.exists(`client-prefix:${keysOf(prefix, removeKey).entry}`)).toBe(1);
    expect(await other.remove(removeKey, claim.fencingToken)).toBe(FencedOutcome.Applied);
    expect(await admin.exists(`client-prefix:${keysOf(prefix, removeKey).entry}`)).toBe(0);
  });

  it('sends through the offline queue: calls made before the client is ready', async () => {
    const client = connect({ lazyConnect: true });
    const store = storeOn(client);
    expect(client.status).toBe('wait');
    const key = IdempotencyKey.default();
    const claiming = store.tryInsert(key, processing(1, LONG));
    const claim = await claiming;
    expect(claim.kind).toBe('claimed');
    expect(await store.get(key)).toBeDefined();
  });

  it('reads integer replies as decimal strings with stringNumbers', async () => {
    const store = storeOn(connect({ stringNumbers: true }));
    expect(await roundTrip(store)).toEqual(EXPECTED);
  });

  it("falls back to ioredis' defined commands for a client without sendCommand", async () => {
    const client = connect();
    const bare = new Proxy(client, {
      get(target, property) {
        if (property === 'sendCommand') return undefined;
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const store = storeOn(bare);
    expect(await roundTrip(store)).toEqual(EXPECTED);
    await admin.script('FLUSH');
    expect(await roundTrip(store)).toEqual(EXPECTED);
  });

  it('fails a call the server refuses with a store error, not a NOSCRIPT loop', async () => {
    const client = connect();
    const store = storeOn(client);
    const key = IdempotencyKey.default();
    const { entry } = keysOf(store.prefix, key);
    await admin.hset(entry, 'not', 'an entry');
    await expect(store.tryInsert(key, processing(1, LONG))).rejects.toThrow(/not an idempotency entry/);
  });
});

describeValkey('ValkeyStore script path on a cluster: 3 primaries', () => {
  let cluster: ClusterServer;
  const clients: Cluster[] = [];
  const stores: ValkeyStore[] = [];

  const connect = (options: ConstructorParameters<typeof Cluster>[1] = {}): Cluster => {
    const client = new Cluster(cluster.nodes, options);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
  });

  afterAll(async () => {
    for (const store of stores) await store.close();
    for (const client of clients) client.disconnect();
    await cluster?.stop();
  });

  it('routes each call to the primary of its slot, with and without a keyPrefix, and recovers from SCRIPT FLUSH', async () => {
    for (const keyPrefix of [undefined, 'cluster-prefix:']) {
      const client = connect(keyPrefix === undefined ? {} : { keyPrefix });
      const prefix = freshPrefix('cl');
      const store = new ValkeyStore(client, { prefix, checkServerOnInit: false });
      stores.push(store);
      expect(ScriptCalls.of(client as never, 'nestjsIdempotentV2Claim', {})).toBeDefined();
      // Sent before the cluster client is ready: its offline queue, then slot routing.
      const keys = Array.from({ length: 40 }, () => IdempotencyKey.default());
      for (const result of await Promise.all(keys.map((key) => roundTrip(store, key))))
        expect(result).toEqual(EXPECTED);
      for (const { primary } of await cluster.shards()) {
        const node = new Redis(primary.port, primary.host);
        await node.script('FLUSH');
        node.disconnect();
      }
      for (const result of await Promise.all(keys.map((key) => roundTrip(store, key).catch(String)))) {
        // The keys are completed already: a new claim is a replay.
        expect(result).toBe('Error: expected a claim, got exists');
      }
      for (const key of keys) {
        const got = await store.get(key);
        expect(got?.isCompleted() && got.response.body.toString()).toBe('{"n":1}');
      }
      const fresh = await Promise.all(Array.from({ length: 20 }, () => roundTrip(store)));
      for (const result of fresh) expect(result).toEqual(EXPECTED);
      // The entries sit under the client's prefix, on the node of their slot.
      const admin = connect(keyPrefix === undefined ? {} : { keyPrefix });
      expect(await admin.exists(keysOf(prefix, keys[0]).entry)).toBe(1);
    }
  });
});
