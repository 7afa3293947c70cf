// The database of the Postgres scenarios: a real PostgreSQL (Debian's postgresql, DESIGN.md 7.3)
// started by the harness, as test/support/postgres-server.ts does it for Jest: initdb into a temp
// dir, the postmaster on 127.0.0.1 and a free port, trust authentication for 127.0.0.1 only, no
// Unix socket, fsync off (synchronous_commit stays on: PostgresStore warns without it).
// PostgreSQL refuses to run as root: when the runner is root, initdb and postgres run as the
// `postgres` system user (spawned with its uid and gid, so the child is the postmaster itself).
// The child and its dir are registered with procs.js, so they go when the runner exits, however
// it exits.
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');
const procs = require('./procs');
const { freePort } = require('./valkey');

const HOST = '127.0.0.1';
const SUPERUSER = 'postgres';
const READY_TIMEOUT_MS = 30_000;

function executable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** `postgres` and `initdb` from PATH, else from Debian's /usr/lib/postgresql/<newest>/bin. */
function findPostgresBinaries() {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const debian = '/usr/lib/postgresql';
  const versions = fs.existsSync(debian)
    ? fs
        .readdirSync(debian)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  for (const dir of [...dirs, ...versions.map((v) => path.join(debian, v, 'bin'))]) {
    const postgres = path.join(dir, 'postgres');
    const initdb = path.join(dir, 'initdb');
    if (executable(postgres) && executable(initdb)) return { postgres, initdb };
  }
  return undefined;
}

/** Root runs the server as the `postgres` system user; anyone else as themselves. */
function runAs() {
  if (process.getuid?.() !== 0) return undefined;
  const entry = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[0] === 'postgres');
  if (entry === undefined) return 'no-user';
  return { uid: Number(entry[2]), gid: Number(entry[3]) };
}

/** Why PostgreSQL cannot run here, or undefined when it can. */
function postgresUnavailable() {
  if (findPostgresBinaries() === undefined)
    return 'postgres / initdb not found on PATH nor under /usr/lib/postgresql/*/bin';
  if (runAs() === 'no-user') return 'running as root, and there is no `postgres` system user to run the server as';
  return undefined;
}

const connectionString = (port) => `postgres://${SUPERUSER}@${HOST}:${port}/postgres`;

/** A client of the pg package for the harness's own queries (set-up, faults, the final read). */
async function query(port, sql, params = []) {
  const { Client } = require('pg');
  const client = new Client({ connectionString: connectionString(port), connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end().catch(() => undefined);
  }
}

class PostgresServer {
  /**
   * Starts a fresh server in a temp dir of its own (the server's user must own it and reach it, so
   * not under the run's root-only dir); `--keep` keeps it like the run's dir. `name` labels it.
   */
  static async start(name) {
    const bins = findPostgresBinaries();
    const why = postgresUnavailable();
    if (why !== undefined) throw new Error(`cannot start PostgreSQL: ${why}`);
    const user = runAs();
    const serverDir = procs.tempDir(`nestjs-idempotent-chaos-pg-${name}-`);
    if (user !== undefined) fs.chownSync(serverDir, user.uid, user.gid);
    const dataDir = path.join(serverDir, 'data');
    try {
      execFileSync(
        bins.initdb,
        ['-D', dataDir, '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'],
        { ...user, cwd: serverDir, stdio: 'pipe', timeout: 120_000, env: { ...process.env, LC_ALL: 'C' } },
      );
    } catch (error) {
      throw new Error(`initdb failed: ${error.message}\n${error.stdout ?? ''}${error.stderr ?? ''}`, { cause: error });
    }
    fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), `host all all ${HOST}/32 trust\n`);
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const settings = {
        listen_addresses: HOST,
        port: String(port),
        unix_socket_directories: '',
        fsync: 'off',
        max_connections: '100',
        // Backends of killed app processes are noticed at once, not after the TCP keepalive.
        tcp_keepalives_idle: '1',
        tcp_keepalives_interval: '1',
        tcp_keepalives_count: '2',
      };
      const args = ['-D', dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
      const logFile = path.join(serverDir, 'postgres.log');
      const out = fs.openSync(logFile, 'a');
      const child = procs.track(spawn(bins.postgres, args, { ...user, cwd: serverDir, stdio: ['ignore', out, out] }));
      fs.closeSync(out);
      const server = new PostgresServer(port, child, serverDir, logFile);
      const deadline = Date.now() + READY_TIMEOUT_MS;
      let last = 'no attempt';
      while (Date.now() < deadline && procs.alive(child)) {
        try {
          // Only a server on our own data directory counts (another run may have taken the port).
          const { rows } = await query(port, "SELECT current_setting('data_directory') AS dir");
          if (fs.realpathSync(rows[0].dir) === fs.realpathSync(dataDir)) return server;
          last = `port ${port} is another server's (${rows[0].dir})`;
          break;
        } catch (error) {
          last = error.message;
          await sleep(50);
        }
      }
      await server.kill();
      fs.rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
      if (attempt >= 3) {
        const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-2_000) : '';
        throw new Error(`postgres did not start on port ${port} (${last}):\n${log}`);
      }
    }
  }

  constructor(port, child, dir, logFile) {
    this.port = port;
    this.child = child;
    this.pid = child.pid;
    this.dir = dir;
    this.logFile = logFile;
    this.connectionString = connectionString(port);
  }

  get alive() {
    return procs.alive(this.child);
  }

  query(sql, params) {
    return query(this.port, sql, params);
  }

  /** SIGKILL; resolves once the postmaster is gone. */
  async kill() {
    if (!this.alive) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGKILL');
    await exited;
  }

  /** Fast shutdown (SIGINT: disconnects clients, exits); SIGKILL after 10 s. */
  async stop() {
    if (!this.alive) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    procs.removeDir(this.dir);
  }
}

/** The side effect the Postgres handler writes, one row per committed execution; no unique key. */
const EFFECTS_DDL = `CREATE TABLE IF NOT EXISTS effects (
  id bigserial PRIMARY KEY,
  key text NOT NULL,
  execution text NOT NULL,
  instance text NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
)`;

/** Every committed effect row, for the checker. */
async function readEffects(server) {
  const { rows } = await server.query(
    'SELECT key, execution, instance, (extract(epoch FROM at) * 1000)::float8 AS time FROM effects ORDER BY id',
  );
  return rows;
}

module.exports = { PostgresServer, postgresUnavailable, findPostgresBinaries, readEffects, EFFECTS_DDL };
