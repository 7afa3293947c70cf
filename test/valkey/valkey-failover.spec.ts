/**
 * Failover: the primary dies (SIGKILL) right after a request was answered, its replica is
 * promoted (REPLICAOF NO ONE) and a new client retries there.
 *
 * - With `durability: { replicas: 1 }` the completion was on the replica before the request was
 *   answered: the retry replays it, the work never runs again.
 * - Without it, replication is asynchronous: a completion the replica had not received when the
 *   primary died is lost, and once the claim's lease ends on the promoted replica a retry runs the
 *   work a second time. That window is real; the test makes it happen every time by holding the
 *   replication link (a TCP proxy) before the completion.
 */
import { Redis } from 'ioredis';
import { CachedResponse, IdempotencyKey, ValkeyStore, type ValkeyStoreOptions } from '../../lib';
import {
  describeValkey,
  sendCommand,
  startReplica,
  startStandalone,
  type StandaloneServer,
} from '../support/valkey-server';
import { freshPrefix, keysOf, sleep } from './helpers';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

const LEASE_MS = 1_000;
const TTL_MS = 60_000;

const charge = (runs: { n: number }) => (): CachedResponse => {
  runs.n++;
  return new CachedResponse({ statusCode: 201, body: JSON.stringify({ charge: runs.n }) });
};

describeValkey('failover to a replica', () => {
  const servers: StandaloneServer[] = [];
  const clients = new Set<Redis>();
  const proxies: TcpProxy[] = [];
  const connect = async (port: number): Promise<Redis> => {
    // No reconnecting to a killed primary: the application would be pointed at the new one.
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null });
    client.on('error', () => undefined);
    clients.add(client);
    await client.connect();
    return client;
  };
  const pair = async (): Promise<{ primary: StandaloneServer; replica: StandaloneServer }> => {
    const primary = await startStandalone();
    servers.push(primary);
    const replica = await startReplica(primary);
    servers.push(replica);
    return { primary, replica };
  };
  // Before its server goes: ioredis otherwise keeps a 2 s timer for a stream that is gone.
  const disconnect = (client: Redis): void => {
    if (clients.delete(client)) client.disconnect();
  };
  const promote = async (replica: StandaloneServer): Promise<void> => {
    expect(await sendCommand(replica.port, ['REPLICAOF', 'NO', 'ONE'])).toBe('OK');
  };

  afterEach(async () => {
    for (const client of clients) client.disconnect();
    clients.clear();
    for (const proxy of proxies.splice(0)) await proxy.close();
    for (const server of servers.splice(0)) await server.stop();
  }, 30_000);

  it('with durability (replicas: 1): the retry on the promoted replica replays; the work ran once', async () => {
    const { primary, replica } = await pair();
    const options: ValkeyStoreOptions = {
      durability: { replicas: 1, timeoutMs: 500 },
      commandTimeoutMs: 2_000,
      prefix: freshPrefix('fo'),
      onWarning: () => undefined,
    };
    const key = IdempotencyKey.default();
    const runs = { n: 0 };
    const onPrimary = await connect(primary.port);
    const store = new ValkeyStore(onPrimary, options);
    const first = await store
      .claim(key, LEASE_MS)
      .fingerprint('POST /charges', '{}')
      .executeOrReplay(TTL_MS, charge(runs));
    expect(first.kind).toBe('executed');
    // Acknowledged by the replica, and marked so (state c, not u) on it too.
    const onReplica = await connect(replica.port);
    const entryKey = keysOf(options.prefix!, key).entry;
    while ((await onReplica.getBuffer(entryKey))?.toString('latin1', 0, 2) !== '\x02c') await sleep(5);
    disconnect(onReplica);

    disconnect(onPrimary);
    await primary.kill();
    await promote(replica);
    const after = new ValkeyStore(await connect(replica.port), options);
    // The promoted server has no replica of its own: a replay of an acknowledged result needs none.
    const retry = await after
      .claim(key, LEASE_MS)
      .fingerprint('POST /charges', '{}')
      .executeOrReplay(TTL_MS, charge(runs));
    expect(retry.kind).toBe('replayed');
    expect(retry.kind === 'replayed' && Buffer.from(retry.response.body).toString()).toBe('{"charge":1}');
    expect(runs.n).toBe(1);
  });

  it('with durability: a failover before the acknowledged mark reached the replica refuses the replay (503) until a replica acknowledges it; never a second run', async () => {
    const { primary, replica } = await pair();
    const options: ValkeyStoreOptions = {
      durability: { replicas: 1, timeoutMs: 300 },
      commandTimeoutMs: 2_000,
      prefix: freshPrefix('fou'),
      onWarning: () => undefined,
    };
    const key = IdempotencyKey.default();
    const entryKey = keysOf(options.prefix!, key).entry;
    const runs = { n: 0 };
    const onPrimary = await connect(primary.port);
    const store = new ValkeyStore(onPrimary, options);
    await store.claim(key, LEASE_MS).fingerprint('POST /charges', '{}').executeOrReplay(TTL_MS, charge(runs));
    // The promoted replica holds the completion as written, not yet marked acknowledged (as when the
    // primary dies between the acknowledgement and the mark reaching the replica).
    const onReplica = await connect(replica.port);
    disconnect(onPrimary);
    await primary.kill();
    await promote(replica);
    await onReplica.setrange(entryKey, 1, 'u');
    const after = new ValkeyStore(await connect(replica.port), options);
    const retry = () =>
      after.claim(key, LEASE_MS).fingerprint('POST /charges', '{}').executeOrReplay(TTL_MS, charge(runs));
    // No replica acknowledges it: no success is sent for it.
    await expect(retry()).rejects.toMatchObject({ name: 'StoreDurabilityError', operation: 'replay' });
    // A replica joins the promoted server: the replay is acknowledged, marked, and answered.
    const joined = await startReplica(replica);
    servers.push(joined);
    const replayed = await retry();
    expect(replayed.kind).toBe('replayed');
    expect(replayed.kind === 'replayed' && Buffer.from(replayed.response.body).toString()).toBe('{"charge":1}');
    while ((await onReplica.getBuffer(entryKey))?.toString('latin1', 0, 2) !== '\x02c') await sleep(5);
    expect(runs.n).toBe(1);
  });

  it('without durability: a completion the replica never received is lost, and after the lease a retry runs the work again (the known window)', async () => {
    // The replica replicates through a proxy, so the test can stall the link.
    const primary = await startStandalone();
    servers.push(primary);
    const link = await startTcpProxy(primary.port);
    proxies.push(link);
    const replica = await startReplica(primary, { via: { host: '127.0.0.1', port: link.port } });
    servers.push(replica);
    const options: ValkeyStoreOptions = { prefix: freshPrefix('fo'), onWarning: () => undefined };
    const key = IdempotencyKey.default();
    const entryKey = keysOf(options.prefix!, key).entry;
    const onReplica = await connect(replica.port);
    const runs = { n: 0 };
    const onPrimary = await connect(primary.port);
    const store = new ValkeyStore(onPrimary, options);
    const first = await store
      .claim(key, LEASE_MS)
      .fingerprint('POST /charges', '{}')
      .executeOrReplay(TTL_MS, async () => {
        // The claim reaches the replica; then the link stalls, so the completion never does.
        for (let i = 0; (await onReplica.exists(entryKey)) === 0; i++) {
          if (i > 200) throw new Error('the claim never reached the replica');
          await sleep(10);
        }
        link.hold();
        return charge(runs)();
      });
    expect(first.kind).toBe('executed'); // the client was told it succeeded

    disconnect(onPrimary);
    await primary.kill();
    await link.close();
    await promote(replica);
    const after = new ValkeyStore(await connect(replica.port), options);
    const retry = () =>
      after.claim(key, LEASE_MS).fingerprint('POST /charges', '{}').executeOrReplay(TTL_MS, charge(runs));
    // The promoted replica holds the claim but not the completion: in flight until the lease ends...
    expect((await retry()).kind).toBe('in-flight');
    await sleep(LEASE_MS + 200);
    // ...then the work runs a second time. `durability` closes this window.
    expect((await retry()).kind).toBe('executed');
    expect(runs.n).toBe(2);
  });
});
