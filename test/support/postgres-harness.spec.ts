import * as fs from 'node:fs';
import * as net from 'node:net';
import { Client } from 'pg';
import { describePostgres, findPostgresBinaries, startPostgres } from './postgres-server';

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

/** The real uid a process runs as, from /proc. */
function uidOf(pid: number): number {
  const line = fs
    .readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Uid:'))!;
  return Number(line.split(/\s+/)[1]);
}

describePostgres('postgres test harness', () => {
  it('finds postgres and initdb', () => {
    const bins = findPostgresBinaries()!;
    expect(bins.postgres).toMatch(/\/postgres$/);
    expect(bins.initdb).toMatch(/\/initdb$/);
  });

  it('starts a server on 127.0.0.1 that pg pools query, never as root, and stops it leaving nothing', async () => {
    const server = await startPostgres();
    const pid = server.pid;
    try {
      expect(server.host).toBe('127.0.0.1');
      expect(server.connectionString).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`);
      expect(fs.existsSync(server.dir)).toBe(true);
      expect(uidOf(pid)).not.toBe(0);
      if (process.getuid?.() === 0) expect(fs.statSync(server.dir).uid).toBe(uidOf(pid));
      const pool = server.pool({ max: 2 });
      const { rows } = await pool.query<{ version: string; fsync: string; listen: string }>(
        "SELECT version(), current_setting('fsync') AS fsync, current_setting('listen_addresses') AS listen",
      );
      expect(rows[0].version).toMatch(/^PostgreSQL \d+/);
      expect(rows[0].fsync).toBe('off');
      expect(rows[0].listen).toBe('127.0.0.1');
      // rowCount is what node-postgres answers for writes.
      await pool.query('CREATE TABLE t (id int PRIMARY KEY)');
      expect((await pool.query('INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING')).rowCount).toBe(1);
      expect((await pool.query('INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING')).rowCount).toBe(0);
      // A fresh database per caller, for stores that want their own.
      const other = new Client({ connectionString: await server.createDatabase() });
      await other.connect();
      expect((await other.query('SELECT count(*)::int AS n FROM pg_tables WHERE tablename = $1', ['t'])).rows).toEqual([
        { n: 0 },
      ]);
      await other.end();
    } finally {
      await server.stop(); // ends the pool too
    }
    expect(await portIsClosed(server.port)).toBe(true);
    expect(pidIsGone(pid)).toBe(true);
    expect(fs.existsSync(server.dir)).toBe(false);
    await server.stop(); // idempotent
  }, 60_000);

  it("never takes another server on its port for its own (another test run's, picking the same free port)", async () => {
    const theirs = await startPostgres();
    try {
      await expect(startPostgres({ port: theirs.port })).rejects.toThrow(
        /taken by another server|could not bind|already in use/i,
      );
      expect((await theirs.pool().query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await theirs.stop();
    }
  }, 60_000);

  it('runs two servers side by side on their own ports', async () => {
    const [a, b] = await Promise.all([startPostgres(), startPostgres()]);
    try {
      expect(a.port).not.toBe(b.port);
      await a.pool().query('CREATE TABLE only_in_a (x int)');
      await expect(b.pool().query('SELECT * FROM only_in_a')).rejects.toThrow(/does not exist/);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  }, 60_000);
});
