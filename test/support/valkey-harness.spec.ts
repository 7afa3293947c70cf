import * as fs from 'node:fs';
import * as net from 'node:net';
import { Redis, Cluster } from 'ioredis';
import {
  describeValkey,
  findCliBinary,
  findServerBinary,
  startCluster,
  startReplica,
  startStandalone,
  type ClusterServer,
  type StandaloneServer,
} from './valkey-server';

function portIsClosed(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(true));
  });
}

function pidIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

function client(server: StandaloneServer, extra: Record<string, unknown> = {}): Redis {
  return new Redis({ host: server.host, port: server.port, maxRetriesPerRequest: 1, ...extra });
}

describeValkey('valkey test harness', () => {
  it('finds the server and cli binaries', () => {
    expect(findServerBinary('valkey')).toMatch(/valkey-server$/);
    expect(findCliBinary('valkey')).toMatch(/valkey-cli$/);
  });

  it('starts a standalone server that answers PING and stops it', async () => {
    const server = await startStandalone();
    const redis = client(server);
    try {
      expect(server.host).toBe('127.0.0.1');
      expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
      expect(fs.existsSync(server.dir)).toBe(true);
      expect(await redis.ping()).toBe('PONG');
      const info = await redis.info('server');
      expect(info).toMatch(/valkey_version:/);
    } finally {
      redis.disconnect();
      await server.stop();
    }
    expect(await portIsClosed(server.port)).toBe(true);
    expect(pidIsGone(server.pid)).toBe(true);
    expect(fs.existsSync(server.dir)).toBe(false); // harness-created temp dir is removed
    await server.stop(); // idempotent
  }, 30_000);

  it('pause makes commands time out and resume recovers', async () => {
    const server = await startStandalone();
    const redis = client(server, { commandTimeout: 300 });
    try {
      await redis.set('k', 'v');
      server.pause();
      expect(server.paused).toBe(true);
      await expect(redis.get('k')).rejects.toThrow(/timed out/i);
      server.resume();
      expect(server.paused).toBe(false);
      expect(await redis.get('k')).toBe('v');
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
      await server.stop();
    }
  }, 30_000);

  it('starts a replica that streams at once (WAIT gets its acknowledgement), and kill() is a crash', async () => {
    const primary = await startStandalone();
    const replica = await startReplica(primary);
    const redis = client(primary);
    const onReplica = client(replica);
    try {
      const [, acked] = (await redis.pipeline().set('k', 'v').call('WAIT', '1', '5000').exec())!;
      expect(acked[1]).toBe(1);
      expect(await onReplica.get('k')).toBe('v');
      redis.disconnect();
      await primary.kill();
      expect(pidIsGone(primary.pid)).toBe(true);
    } finally {
      redis.disconnect();
      onReplica.disconnect();
      await replica.stop();
      await primary.stop();
    }
  }, 30_000);

  it('stop works while paused', async () => {
    const server = await startStandalone();
    server.pause();
    await server.stop();
    expect(await portIsClosed(server.port)).toBe(true);
    expect(pidIsGone(server.pid)).toBe(true);
  }, 30_000);

  it('restart with appendonly keeps data, port and dir', async () => {
    const server = await startStandalone({ appendonly: true });
    const pidBefore = server.pid;
    const portBefore = server.port;
    try {
      const before = client(server);
      await before.set('survivor', 'yes');
      before.disconnect();

      await server.restart();
      expect(server.port).toBe(portBefore);
      expect(server.pid).not.toBe(pidBefore);
      expect(pidIsGone(pidBefore)).toBe(true);

      const after = client(server);
      try {
        expect(await after.get('survivor')).toBe('yes');
      } finally {
        after.disconnect();
      }
    } finally {
      await server.stop();
    }
  }, 30_000);

  it('forms a 3-primary cluster usable through ioredis Cluster, then stops it', async () => {
    let cluster: ClusterServer | undefined;
    let rc: Cluster | undefined;
    try {
      cluster = await startCluster();
      expect(cluster.nodes).toHaveLength(3);
      rc = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
      // Keys hashing to different slots (and so, most likely, different nodes).
      const keys = ['alpha', 'bravo', 'charlie', 'delta', 'echo', '{tag}one', '{tag}two'];
      for (const k of keys) await rc.set(k, `v-${k}`);
      for (const k of keys) expect(await rc.get(k)).toBe(`v-${k}`);
      expect(await rc.mget('{tag}one', '{tag}two')).toEqual(['v-{tag}one', 'v-{tag}two']);
    } finally {
      rc?.disconnect();
      await cluster?.stop();
    }
    for (const n of cluster!.nodes) expect(await portIsClosed(n.port)).toBe(true);
  }, 90_000);
});
