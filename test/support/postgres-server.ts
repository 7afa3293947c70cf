/**
 * Test harness for a real PostgreSQL (DESIGN.md 7.3): Debian's `postgresql` (15), started by the
 * tests and stopped after.
 *
 * - `initdb` into a fresh temp dir, then `postgres` as a child process on 127.0.0.1 and a random
 *   free port, trust authentication for 127.0.0.1 only, no Unix socket, `fsync=off`.
 * - PostgreSQL refuses to run as root: when this process is root, `initdb` and `postgres` run as
 *   the `postgres` system user (spawned with its uid and gid, so the child is the postmaster
 *   itself and its pid is the one to signal), and the temp dir belongs to that user.
 * - Every started server is tracked; `stop()` ends the pools it handed out, shuts the server down
 *   (fast shutdown) and removes its dir; leftovers are shut down when their `describePostgres`
 *   suite ends, and when the host process exits or gets SIGTERM / SIGHUP.
 * - Where no PostgreSQL is installed, `describePostgres` suites skip with a loud notice; with
 *   `POSTGRES_REQUIRED=1` (set in .ci/run) they fail instead.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { setTimeout as setRealTimeout, clearTimeout as clearRealTimeout } from 'node:timers';
import { Client, Pool, type PoolConfig } from 'pg';
import { getFreePort } from './valkey-server';
import { hostProcess, isAlive } from './host-process';

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 30_000;
const STOP_KILL_AFTER_MS = 10_000;
const SUPERUSER = 'postgres';

export interface PostgresOptions {
  /** Extra server settings (`-c name=value`), e.g. `{ max_connections: '50' }`. */
  settings?: Record<string, string>;
  /** A fixed port (default: a free one, another one tried if it is taken meanwhile). */
  port?: number;
}

export interface PostgresServer {
  readonly host: string;
  readonly port: number;
  /** The temp dir (data dir and log), removed by `stop()`. */
  readonly dir: string;
  /** pid of the postmaster. */
  readonly pid: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  readonly connectionString: string;
  /**
   * A `pg.Pool` on this server (database `postgres` unless `config` says otherwise); `stop()` ends
   * it, so a test need not (ending it first is fine).
   */
  pool(config?: PoolConfig): Pool;
  /** Creates a fresh, empty database and answers its connection string. */
  createDatabase(name?: string): Promise<string>;
  /** The server's log so far. */
  log(): string;
  /** Ends its pools, shuts the server down (SIGKILL after 10 s) and removes its dir. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Binaries and the user to run as
// ---------------------------------------------------------------------------

interface Binaries {
  postgres: string;
  initdb: string;
}

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** `postgres` and `initdb` from PATH, else from Debian's /usr/lib/postgresql/<newest>/bin. */
export function findPostgresBinaries(): Binaries | undefined {
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

interface RunAs {
  uid: number;
  gid: number;
}

/** Root runs the server as the `postgres` system user; anyone else as themselves. */
function runAs(): RunAs | undefined | 'no-user' {
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
export function postgresUnavailable(): string | undefined {
  if (findPostgresBinaries() === undefined)
    return `postgres / initdb not found on PATH nor under /usr/lib/postgresql/*/bin (PATH=${process.env.PATH ?? ''})`;
  if (runAs() === 'no-user') return 'running as root, and there is no `postgres` system user to run the server as';
  return undefined;
}

export function postgresAvailable(): boolean {
  return postgresUnavailable() === undefined;
}

// ---------------------------------------------------------------------------
// Jest helper
// ---------------------------------------------------------------------------

/** `describe` that runs against a real PostgreSQL; skips loudly (or fails with POSTGRES_REQUIRED=1) without it. */
export function describePostgres(name: string, fn: () => void): void {
  const why = postgresUnavailable();
  if (why !== undefined) {
    if (process.env.POSTGRES_REQUIRED === '1') {
      describe(name, () => {
        it('requires PostgreSQL', () => {
          throw new Error(
            `${why}, but POSTGRES_REQUIRED=1; install Debian's postgresql (.ci/install-servers.sh) or unset POSTGRES_REQUIRED.`,
          );
        });
      });
      return;
    }
    const bar = '!'.repeat(78);
    console.warn(
      `\n${bar}\n!! SKIPPING "${name}": ${why}.\n` +
        `!! These tests did NOT run. Install Debian's postgresql (.ci/install-servers.sh);\n` +
        `!! set POSTGRES_REQUIRED=1 to make this a failure instead of a skip.\n${bar}\n`,
    );
    describe.skip(name, fn);
    return;
  }
  describe(name, () => {
    let before = new Set<Tracked>();
    beforeAll(() => {
      before = new Set(registry().servers);
    });
    fn();
    afterAll(async () => {
      const leaked = [...registry().servers].filter((s) => !before.has(s));
      if (leaked.length > 0) {
        console.warn(`postgres harness: suite "${name}" left ${leaked.length} server(s) running; stopping them.`);
        await Promise.all(leaked.map((s) => s.stop()));
      }
    });
  });
}

// ---------------------------------------------------------------------------
// Process tracking (on the real process, shared across Jest module registries)
// ---------------------------------------------------------------------------

interface Tracked {
  child: ChildProcess;
  dir: string;
  stop(): Promise<void>;
}

interface Registry {
  servers: Set<Tracked>;
}

const REGISTRY_KEY = Symbol.for('nestjs-idempotent.postgres-harness.registry');

/** Whether `pid` has exited (gone, or a zombie not reaped yet: the exit hook cannot reap). */
function hasExited(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * At exit, synchronously: immediate shutdown (SIGQUIT: the postmaster stops its backends and
 * releases its shared memory), SIGKILL if it has not gone within 2 s, then the dirs go.
 */
function shutDownAllSync(reg: Registry): void {
  const pids = [...reg.servers].flatMap((s) => (s.child.pid !== undefined && isAlive(s.child) ? [s.child.pid] : []));
  for (const pid of pids) signalQuietly(pid, 'SIGQUIT');
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (let waited = 0; waited < 2_000 && !pids.every(hasExited); waited += 20) Atomics.wait(wait, 0, 0, 20);
  for (const pid of pids) if (!hasExited(pid)) signalQuietly(pid, 'SIGKILL');
  for (const s of reg.servers) removeDir(s.dir);
  reg.servers.clear();
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function registry(): Registry {
  const host = hostProcess() as NodeJS.Process & { [REGISTRY_KEY]?: Registry };
  let reg = host[REGISTRY_KEY];
  if (!reg) {
    const created: Registry = { servers: new Set() };
    reg = created;
    host[REGISTRY_KEY] = created;
    host.on('exit', () => shutDownAllSync(created));
    for (const sig of ['SIGTERM', 'SIGHUP'] as const) {
      host.once(sig, () => {
        shutDownAllSync(created);
        // Re-raise with default behaviour if nobody else handles it.
        if (host.listenerCount(sig) === 0) host.kill(host.pid, sig);
      });
    }
  }
  return reg;
}

function removeDir(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isAlive(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setRealTimeout(() => {
      child.off('exit', onExit);
      resolve(!isAlive(child));
    }, timeoutMs);
    const onExit = (): void => {
      clearRealTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

function readTail(file: string, max = 8_000): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.length > max ? `...${text.slice(-max)}` : text;
  } catch {
    return '(no log output)';
  }
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

class AddressInUseError extends Error {}

function sameDir(a: string, b: string): boolean {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return false;
  }
}

const connectionString = (port: number, database = 'postgres') => `postgres://${SUPERUSER}@${HOST}:${port}/${database}`;

/** A temp dir the server's user owns: the data dir goes in it (initdb makes it 0700). */
function makeDir(user: RunAs | undefined): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postgres-test-'));
  if (user !== undefined) fs.chownSync(dir, user.uid, user.gid);
  return dir;
}

function initdb(bin: string, dataDir: string, user: RunAs | undefined): void {
  try {
    execFileSync(
      bin,
      [
        '-D',
        dataDir,
        '-U',
        SUPERUSER,
        '--auth=trust',
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ],
      { ...user, cwd: path.dirname(dataDir), stdio: 'pipe', timeout: 120_000, env: { ...process.env, LC_ALL: 'C' } },
    );
  } catch (e) {
    const err = e as Error & { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`initdb failed: ${err.message}\n${err.stdout?.toString() ?? ''}${err.stderr?.toString() ?? ''}`, {
      cause: e,
    });
  }
  // TCP from 127.0.0.1 only, no password; nothing else (there is no Unix socket either).
  fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), `host all all ${HOST}/32 trust\n`);
}

/** Spawns the postmaster and waits until it accepts connections and answers a query. */
async function launch(
  bin: string,
  dir: string,
  dataDir: string,
  port: number,
  user: RunAs | undefined,
  settings: Record<string, string>,
): Promise<ChildProcess> {
  const logFile = path.join(dir, 'postgres.log');
  const all: Record<string, string> = {
    listen_addresses: HOST,
    port: String(port),
    unix_socket_directories: '',
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '100',
    ...settings,
  };
  const args = ['-D', dataDir, ...Object.entries(all).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  const fd = fs.openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(bin, args, { ...user, cwd: dir, stdio: ['ignore', fd, fd], shell: false });
  } finally {
    fs.closeSync(fd);
  }
  child.unref(); // a forgotten server must not keep Jest alive; the exit hook shuts it down
  let spawnError: Error | undefined;
  child.once('error', (e) => (spawnError = e));

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = 'no attempt';
  while (Date.now() < deadline && spawnError === undefined && isAlive(child)) {
    const probe = new Client({ connectionString: connectionString(port), connectionTimeoutMillis: 2_000 });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      // The port was free when picked, but another test process (another worktree's run) can
      // pick it too: then the server answering is theirs, and ours exits unable to bind. Only a
      // server on our own data directory counts as started.
      const { rows } = await probe.query<{ dir: string }>("SELECT current_setting('data_directory') AS dir");
      await probe.end();
      if (sameDir(rows[0].dir, dataDir)) return child;
      if (isAlive(child)) {
        child.kill('SIGKILL');
        await waitForExit(child, STOP_KILL_AFTER_MS);
      }
      fs.rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
      throw new AddressInUseError(`postgres on ${HOST}:${port}: the port is taken by another server (${rows[0].dir})`);
    } catch (e) {
      if (e instanceof AddressInUseError) throw e;
      lastError = (e as Error).message; // ECONNREFUSED, "the database system is starting up"
      await probe.end().catch(() => undefined);
    }
    await sleep(50);
  }
  const exitInfo = spawnError
    ? `spawn failed: ${spawnError.message}`
    : isAlive(child)
      ? `not answering after ${READY_TIMEOUT_MS} ms (last: ${lastError})`
      : `exited early (code ${child.exitCode}, signal ${child.signalCode})`;
  if (isAlive(child)) {
    child.kill('SIGKILL');
    await waitForExit(child, STOP_KILL_AFTER_MS);
  }
  const log = readTail(logFile);
  const message =
    `postgres on ${HOST}:${port} failed to start: ${exitInfo}\n` +
    `command: ${bin} ${args.map((a) => JSON.stringify(a)).join(' ')}\n--- server log (${logFile}) ---\n${log}`;
  if (/could not bind|Address already in use/i.test(log)) throw new AddressInUseError(message);
  throw new Error(message);
}

/** Starts a PostgreSQL on 127.0.0.1:<random free port> in a fresh temp dir. */
export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const why = postgresUnavailable();
  if (why !== undefined) throw new Error(`cannot start PostgreSQL: ${why}`);
  const bins = findPostgresBinaries()!;
  const user = runAs() as RunAs | undefined;
  const dir = makeDir(user);
  const dataDir = path.join(dir, 'data');
  const reg = registry();
  const pools = new Set<Pool>();
  let child: ChildProcess | undefined;
  let port = 0;
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await Promise.all([...pools].map((p) => (p.ended ? undefined : p.end().catch(() => undefined))));
      if (child !== undefined && isAlive(child)) {
        child.kill('SIGINT'); // fast shutdown: disconnects clients, checkpoints, exits
        if (!(await waitForExit(child, STOP_KILL_AFTER_MS))) {
          child.kill('SIGKILL');
          await waitForExit(child, STOP_KILL_AFTER_MS);
        }
      }
      removeDir(dir);
      reg.servers.delete(tracked);
    })());
  const tracked: Tracked = {
    get child() {
      return child!;
    },
    dir,
    stop,
  };

  try {
    initdb(bins.initdb, dataDir, user);
    for (let attempt = 1; child === undefined; attempt++) {
      port = options.port ?? (await getFreePort());
      try {
        child = await launch(bins.postgres, dir, dataDir, port, user, options.settings ?? {});
      } catch (e) {
        // Port grabbed between probing and binding: try another one.
        if (!(e instanceof AddressInUseError) || options.port !== undefined || attempt >= 3) throw e;
      }
    }
  } catch (e) {
    removeDir(dir);
    throw e;
  }
  reg.servers.add(tracked);

  let databases = 0;
  return {
    host: HOST,
    port,
    dir,
    pid: child.pid ?? -1,
    connectionString: connectionString(port),
    pool(config: PoolConfig = {}) {
      if (stopping !== undefined) throw new Error('this PostgreSQL was stopped');
      const pool = new Pool({ connectionString: connectionString(port), ...config });
      // pool.end() resolves once its clients are told to end, not once their connections are
      // closed: the shutdown that stop() then starts can reach a client still closing, whose
      // "terminating connection due to administrator command" the pool emits as an 'error'
      // (unhandled: it would crash the test process). Expected while stopping; loud otherwise.
      pool.on('error', (error) => {
        if (stopping === undefined) throw error;
      });
      pools.add(pool);
      return pool;
    },
    async createDatabase(name = `test_${process.pid}_${++databases}`) {
      const admin = new Client({ connectionString: connectionString(port) });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      } finally {
        await admin.end();
      }
      return connectionString(port, encodeURIComponent(name));
    },
    log: () => readTail(path.join(dir, 'postgres.log'), Number.MAX_SAFE_INTEGER),
    stop,
  };
}
