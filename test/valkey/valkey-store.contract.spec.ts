/**
 * The shared store contract (the test kit's `storeContract`) on real servers: ValkeyStore over
 * standalone Valkey, a 3-primary Valkey cluster, standalone Redis 7, and with `durability` over a
 * Valkey primary with one replica (the same outcomes, each write acknowledged by the replica).
 */
import { Cluster, Redis } from 'ioredis';
import { Fingerprint, IdempotencyEntry, IdempotencyKey, ValkeyStore } from '../../lib';
import { storeContract } from '../../lib/testing';
import {
  describeRedis7,
  describeValkey,
  startCluster,
  startReplica,
  startStandalone,
  type ClusterServer,
  type StandaloneServer,
} from '../support/valkey-server';
import { freshPrefix, keysOf } from './helpers';

// Each contract case gets a fresh prefix on a shared connection: its own fencing counters (so
// tokens start at 1, as on a fresh store) and no leftovers from other cases.
function standaloneContract(binary: 'valkey' | 'redis'): void {
  let server: StandaloneServer;
  let client: Redis;
  beforeAll(async () => {
    server = await startStandalone({ binary });
    client = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await client.connect();
  }, 30_000);
  afterAll(async () => {
    client?.disconnect();
    await server?.stop();
  }, 30_000);
  storeContract(() => new ValkeyStore(client, { prefix: freshPrefix(binary) }), {
    describe,
    it,
    name: `ValkeyStore on standalone ${binary}`,
  });
}

describeValkey('ValkeyStore contract, standalone Valkey', () => standaloneContract('valkey'));

describeRedis7('ValkeyStore contract, standalone Redis 7', () => standaloneContract('redis'));

describeValkey('ValkeyStore contract with durability (replicas: 1), a Valkey primary with one replica', () => {
  let primary: StandaloneServer;
  let replica: StandaloneServer;
  let client: Redis;
  beforeAll(async () => {
    primary = await startStandalone();
    replica = await startReplica(primary);
    client = new Redis({ host: primary.host, port: primary.port, lazyConnect: true });
    await client.connect();
  }, 30_000);
  afterAll(async () => {
    client?.disconnect();
    await replica?.stop();
    await primary?.stop();
  }, 30_000);
  storeContract(
    () =>
      new ValkeyStore(client, {
        prefix: freshPrefix('durable'),
        durability: { replicas: 1, timeoutMs: 1_000 },
        commandTimeoutMs: 3_000,
      }),
    { describe, it, name: 'ValkeyStore with durability' },
  );
});

describeValkey('ValkeyStore contract, 3-primary Valkey cluster', () => {
  let cluster: ClusterServer;
  let client: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
    client = new Cluster(cluster.nodes, { lazyConnect: true });
    await client.connect();
  }, 60_000);
  afterAll(async () => {
    client?.disconnect();
    await cluster?.stop();
  }, 30_000);

  it('spreads keys over all three primaries', async () => {
    const store = new ValkeyStore(client, { prefix: freshPrefix('spread') });
    for (let i = 0; i < 60; i++) {
      await store.tryInsert(
        new IdempotencyKey(`spread-${i}`),
        new IdempotencyEntry(Fingerprint.fromBigInt(1n), 60_000),
      );
    }
    const perNode = await Promise.all(client.nodes('master').map((node) => node.dbsize()));
    expect(perNode).toHaveLength(3);
    for (const count of perNode) expect(count).toBeGreaterThan(0);
  });

  it('keeps an entry and its fencing counter in one slot, and checks every primary', async () => {
    const store = new ValkeyStore(client, { prefix: freshPrefix('slot') });
    for (const text of ['a', '{b}', 'order-9/alice', IdempotencyKey.default().toString()]) {
      const { entry, fence } = keysOf(store.prefix, text);
      const slots = await Promise.all([client.cluster('KEYSLOT', entry), client.cluster('KEYSLOT', fence)]);
      expect(slots[0]).toBe(slots[1]);
    }
    const check = await store.checkServer();
    expect(check.nodes.map((n) => n.address).sort()).toEqual(cluster.nodes.map((n) => `${n.host}:${n.port}`).sort());
    expect(check.warnings).toEqual(
      Array.from({ length: 3 }, () => expect.stringMatching(/AOF is off on 127\.0\.0\.1:/)),
    );
  });

  storeContract(() => new ValkeyStore(client, { prefix: freshPrefix('cluster') }), {
    describe,
    it,
    name: 'ValkeyStore on a 3-primary Valkey cluster',
  });
});
