/**
 * Test harness for real Valkey / Redis servers (DESIGN.md section 5).
 *
 * - Servers run as child processes on 127.0.0.1 with random free ports and
 *   their own temp dirs; nothing is ever started through a shell.
 * - Every started process is tracked; leftovers are killed when the owning
 *   `describeValkey` / `describeRedis7` suite ends, and (SIGKILL) when the
 *   host process exits or gets SIGTERM / SIGHUP.
 * - Waits use `node:timers` directly, so tests using Jest fake timers do not
 *   freeze the harness.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { setTimeout as setRealTimeout, clearTimeout as clearRealTimeout } from 'node:timers';
import { hostProcess, isAlive } from './host-process';

export type ServerKind = 'valkey' | 'redis';

export interface StandaloneOptions {
  /** Which server binary to run. Default: 'valkey'. */
  binary?: ServerKind;
  /** Start with `--appendonly yes` (data survives `restart()`). Default: false. */
  appendonly?: boolean;
  /** Working dir (AOF, logs). Default: a fresh mkdtemp dir, removed by `stop()`. */
  dir?: string;
  /** Extra command-line arguments, e.g. ['--maxmemory', '10mb']. */
  extraArgs?: string[];
}

export interface StandaloneServer {
  readonly kind: ServerKind;
  readonly host: string;
  readonly port: number;
  /** pid of the current process (changes after `restart()`). */
  readonly pid: number;
  readonly dir: string;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly paused: boolean;
  /** SIGSTOP: the server keeps its socket open but answers nothing. */
  pause(): void;
  /** SIGCONT */
  resume(): void;
  /** SIGKILL, as a crash: no shutdown, no final AOF write. Resolves once it is gone; `stop()` still cleans up. */
  kill(): Promise<void>;
  /** SIGTERM (after SIGCONT if paused), wait for exit, SIGKILL after 5 s. Idempotent; removes the temp dir if the harness created it. */
  stop(): Promise<void>;
  /** Stop and start again on the same port, dir and arguments (AOF data survives when appendonly). */
  restart(): Promise<void>;
  /** The server's stdout/stderr log so far. */
  log(): string;
}

export interface ClusterOptions {
  /** Number of primaries. Default: 3. Valkey requires at least 3. */
  primaries?: number;
  /** Replicas per primary (`--cluster-replicas`). Default: 0. */
  replicas?: number;
  /** Which server binary to run. Default: 'valkey'. */
  binary?: ServerKind;
}

export interface ClusterServer {
  /** Every node (primaries and replicas). */
  readonly nodes: { host: string; port: number }[];
  /** The individual nodes (pause/resume/restart a single node). */
  readonly servers: StandaloneServer[];
  /** Which nodes are primaries now, each with its replicas (read from the nodes' INFO replication). */
  shards(): Promise<{ primary: StandaloneServer; replicas: StandaloneServer[] }[]>;
  stop(): Promise<void>;
}

export interface ReplicaOptions extends StandaloneOptions {
  /**
   * Replicate through this address instead of the primary's own (e.g. a TCP proxy in front of
   * it, so a test can hold or cut the replication link).
   */
  via?: { host: string; port: number };
}

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 10_000;
const STOP_KILL_AFTER_MS = 5_000;
const CLUSTER_TIMEOUT_MS = 20_000;
const CLUSTER_SLOTS = 16384;

// ---------------------------------------------------------------------------
// Binary discovery
// ---------------------------------------------------------------------------

function findOnPath(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      const st = fs.statSync(candidate);
      if (!st.isFile()) continue;
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Absolute path of `valkey-server` / `redis-server` on PATH, or undefined. */
export function findServerBinary(kind: ServerKind): string | undefined {
  return findOnPath(`${kind}-server`);
}

/** Absolute path of the matching cli (`valkey-cli` / `redis-cli`) on PATH, or undefined. */
export function findCliBinary(kind: ServerKind): string | undefined {
  return findOnPath(`${kind}-cli`);
}

/** Both binaries, or undefined unless both the server and its cli are on PATH. */
export function findBinaries(kind: ServerKind): { server: string; cli: string } | undefined {
  const server = findServerBinary(kind);
  const cli = findCliBinary(kind);
  return server && cli ? { server, cli } : undefined;
}

/** e.g. '8.0.1' from `valkey-server --version`, or undefined if not installed. */
export function serverVersion(kind: ServerKind): string | undefined {
  const bin = findServerBinary(kind);
  if (!bin) return undefined;
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    return /\bv=(\S+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

export function valkeyAvailable(): boolean {
  return findBinaries('valkey') !== undefined;
}

export function redisAvailable(): boolean {
  return findBinaries('redis') !== undefined;
}

// ---------------------------------------------------------------------------
// Jest helpers
// ---------------------------------------------------------------------------

function describeWith(kind: ServerKind, name: string, fn: () => void): void {
  const binName = `${kind}-server`;
  if (!findBinaries(kind)) {
    if (process.env.VALKEY_REQUIRED === '1') {
      describe(name, () => {
        it(`requires ${binName}`, () => {
          throw new Error(
            `${binName} not found but VALKEY_REQUIRED=1 (PATH=${process.env.PATH ?? ''}); ` +
              `install it (see DESIGN.md section 5) or unset VALKEY_REQUIRED.`,
          );
        });
      });
      return;
    }
    const bar = '!'.repeat(78);
    console.warn(
      `\n${bar}\n!! SKIPPING "${name}": ${binName} / ${kind}-cli not found on PATH.\n` +
        `!! These tests did NOT run. Install ${binName} (DESIGN.md section 5);\n` +
        `!! set VALKEY_REQUIRED=1 to make this a failure instead of a skip.\n${bar}\n`,
    );
    describe.skip(name, fn);
    return;
  }
  describe(name, () => {
    let before = new Set<TrackedProcess>();
    let dirsBefore = new Set<string>();
    beforeAll(() => {
      before = new Set(registry().processes);
      dirsBefore = new Set(registry().ownedDirs);
    });
    fn();
    afterAll(async () => {
      const reg = registry();
      const leaked = [...reg.processes].filter((p) => !before.has(p));
      if (leaked.length > 0) {
        console.warn(`valkey harness: suite "${name}" left ${leaked.length} server(s) running; stopping them.`);
        await Promise.all(leaked.map((p) => p.stop()));
      }
      for (const dir of [...reg.ownedDirs]) if (!dirsBefore.has(dir)) releaseOwnedDir(dir);
    });
  });
}

/** `describe` that runs against valkey-server; skips loudly (or fails with VALKEY_REQUIRED=1) without it. */
export function describeValkey(name: string, fn: () => void): void {
  describeWith('valkey', name, fn);
}

/** `describe` that runs against redis-server (Debian 12: Redis 7.0); same skip/fail rules. Use `{ binary: 'redis' }`. */
export function describeRedis7(name: string, fn: () => void): void {
  describeWith('redis', name, fn);
}

// ---------------------------------------------------------------------------
// Process tracking (shared across Jest module registries via the real process)
// ---------------------------------------------------------------------------

interface TrackedProcess {
  child: ChildProcess;
  stop(): Promise<void>;
}

interface Registry {
  processes: Set<TrackedProcess>;
  /** Harness-created temp dirs, removed when their owner stops or the process exits. */
  ownedDirs: Set<string>;
  reservedPorts: Set<number>;
}

const REGISTRY_KEY = Symbol.for('nestjs-idempotent.valkey-harness.registry');

function killAllSync(reg: Registry): void {
  for (const p of reg.processes) {
    if (p.child.pid !== undefined && isAlive(p.child)) {
      try {
        process.kill(p.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  reg.processes.clear();
  for (const dir of reg.ownedDirs) removeDir(dir);
  reg.ownedDirs.clear();
}

function removeDir(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

function makeOwnedDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  registry().ownedDirs.add(dir);
  return dir;
}

function releaseOwnedDir(dir: string): void {
  removeDir(dir);
  registry().ownedDirs.delete(dir);
}

function registry(): Registry {
  const host = hostProcess() as NodeJS.Process & { [REGISTRY_KEY]?: Registry };
  let reg = host[REGISTRY_KEY];
  if (!reg) {
    const created: Registry = { processes: new Set(), ownedDirs: new Set(), reservedPorts: new Set() };
    reg = created;
    host[REGISTRY_KEY] = created;
    host.on('exit', () => killAllSync(created));
    for (const sig of ['SIGTERM', 'SIGHUP'] as const) {
      const onSignal = (): void => {
        killAllSync(created);
        // Re-raise with default behaviour if nobody else handles it.
        if (host.listenerCount(sig) === 0) host.kill(host.pid, sig);
      };
      host.once(sig, onSignal);
    }
  }
  return reg;
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(port, HOST, () => {
      const addr = srv.address() as net.AddressInfo;
      srv.close(() => resolve(addr.port));
    });
  });
}

/** A currently free TCP port on 127.0.0.1 not handed out before by this harness. */
export async function getFreePort(): Promise<number> {
  const reg = registry();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listenOnce(0);
    if (!reg.reservedPorts.has(port)) {
      reg.reservedPorts.add(port);
      return port;
    }
  }
  throw new Error('valkey harness: could not find a free port');
}

function encodeCommand(args: string[]): Buffer {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) parts.push(`$${Buffer.byteLength(a)}\r\n${a}\r\n`);
  return Buffer.from(parts.join(''));
}

/** Minimal RESP2 client: one command, one reply (simple string, error, integer or bulk string). */
export function sendCommand(port: number, args: string[], timeoutMs = 1_000, host = HOST): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let done = false;
    const sock = net.connect({ host, port });
    const finish = (err: Error | undefined, value?: string): void => {
      if (done) return;
      done = true;
      clearRealTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value ?? '');
    };
    const timer = setRealTimeout(
      () => finish(new Error(`timeout after ${timeoutMs} ms: ${args.join(' ')}`)),
      timeoutMs,
    );
    sock.once('error', (e) => finish(e));
    sock.once('close', () => finish(new Error('connection closed before reply')));
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const type = String.fromCharCode(buf[0]);
      const line = buf.subarray(1, eol).toString();
      if (type === '+' || type === ':') return finish(undefined, line);
      if (type === '-') return finish(new Error(line));
      if (type === '$') {
        const len = Number(line);
        if (len < 0) return finish(undefined, '');
        if (buf.length < eol + 2 + len + 2) return;
        return finish(undefined, buf.subarray(eol + 2, eol + 2 + len).toString());
      }
      finish(new Error(`unsupported reply type ${JSON.stringify(type)}`));
    });
    sock.once('connect', () => sock.write(encodeCommand(args)));
  });
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
// Server processes
// ---------------------------------------------------------------------------

interface LaunchSpec {
  kind: ServerKind;
  bin: string;
  port: number;
  dir: string;
  logFile: string;
  args: string[];
}

class AddressInUseError extends Error {}

/** Spawn one server process and wait until it answers PING. */
async function launch(spec: LaunchSpec): Promise<TrackedProcess> {
  fs.mkdirSync(spec.dir, { recursive: true });
  const fd = fs.openSync(spec.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(spec.bin, spec.args, { cwd: spec.dir, stdio: ['ignore', fd, fd], shell: false });
  } finally {
    fs.closeSync(fd);
  }
  const reg = registry();
  const tracked: TrackedProcess = {
    child,
    stop: async () => {
      if (isAlive(child) && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGCONT');
          process.kill(child.pid, 'SIGTERM');
        } catch {
          // gone
        }
        if (!(await waitForExit(child, STOP_KILL_AFTER_MS))) {
          try {
            process.kill(child.pid, 'SIGKILL');
          } catch {
            // gone
          }
          await waitForExit(child, STOP_KILL_AFTER_MS);
        }
      }
      reg.processes.delete(tracked);
    },
  };
  reg.processes.add(tracked);
  child.unref(); // a forgotten server must not keep Jest alive; the exit hook kills it

  let spawnError: Error | undefined;
  child.once('error', (e) => {
    spawnError = e;
  });

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = 'no attempt';
  while (Date.now() < deadline) {
    if (spawnError || !isAlive(child)) break;
    try {
      const reply = await sendCommand(spec.port, ['PING'], 500);
      if (reply === 'PONG') {
        // The port was free when picked, but another test process (another worktree's run) can
        // pick it too: then the server answering is theirs, and ours exits with "Address already
        // in use". Only our own process counts as started.
        const owner = parseInfo(await sendCommand(spec.port, ['INFO', 'server'], 1_000)).process_id;
        if (owner === String(child.pid)) return tracked;
        await tracked.stop();
        throw new AddressInUseError(
          `${spec.kind}-server on ${HOST}:${spec.port}: the port is taken by another process's server (pid ${owner})`,
        );
      }
      lastError = `PING replied ${reply}`;
    } catch (e) {
      if (e instanceof AddressInUseError) throw e;
      lastError = (e as Error).message; // e.g. ECONNREFUSED, LOADING
    }
    await sleep(50);
  }

  const exitInfo = spawnError
    ? `spawn failed: ${spawnError.message}`
    : isAlive(child)
      ? `not answering PING after ${READY_TIMEOUT_MS} ms (last: ${lastError})`
      : `exited early (code ${child.exitCode}, signal ${child.signalCode})`;
  await tracked.stop();
  const log = readTail(spec.logFile);
  const msg =
    `${spec.kind}-server on ${HOST}:${spec.port} failed to start: ${exitInfo}\n` +
    `command: ${spec.bin} ${spec.args.map((a) => JSON.stringify(a)).join(' ')}\n` +
    `--- server log (${spec.logFile}) ---\n${log}`;
  if (/Address already in use/i.test(log)) throw new AddressInUseError(msg);
  throw new Error(msg);
}

function resolveServerBinary(kind: ServerKind): string {
  const bin = findServerBinary(kind);
  if (!bin) throw new Error(`${kind}-server not found on PATH`);
  return bin;
}

interface InternalStartOptions extends StandaloneOptions {
  /** Fixed port; otherwise free ports are tried. */
  port?: number;
  /** Extra args computed from the port (cluster mode). */
  argsForPort?: (port: number, dir: string) => Promise<string[]> | string[];
  logName?: string;
}

async function startServer(opts: InternalStartOptions): Promise<StandaloneServer> {
  const kind = opts.binary ?? 'valkey';
  const bin = resolveServerBinary(kind);
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ? path.resolve(opts.dir) : makeOwnedDir(`${kind}-test-`);
  const appendonly = opts.appendonly ?? false;

  const makeSpec = async (port: number): Promise<LaunchSpec> => ({
    kind,
    bin,
    port,
    dir,
    logFile: path.join(dir, opts.logName ?? `${kind}-${port}.log`),
    args: [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--save',
      '',
      '--daemonize',
      'no',
      '--dir',
      dir,
      '--appendonly',
      appendonly ? 'yes' : 'no',
      ...(opts.argsForPort ? await opts.argsForPort(port, dir) : []),
      ...(opts.extraArgs ?? []),
    ],
  });

  let spec: LaunchSpec | undefined;
  let proc: TrackedProcess | undefined;
  try {
    for (let attempt = 1; !proc; attempt++) {
      spec = await makeSpec(opts.port ?? (await getFreePort()));
      try {
        proc = await launch(spec);
      } catch (e) {
        // Port grabbed between probing and binding: try another one.
        if (!(e instanceof AddressInUseError) || opts.port !== undefined || attempt >= 3) throw e;
      }
    }
  } catch (e) {
    if (ownsDir) releaseOwnedDir(dir);
    throw e;
  }

  const launchSpec = spec as LaunchSpec;
  let current: TrackedProcess = proc;
  let paused = false;
  let stopped = false;
  let busy: Promise<void> = Promise.resolve();
  const serialize = (fn: () => Promise<void>): Promise<void> => {
    const next = busy.then(fn, fn);
    busy = next.catch(() => undefined);
    return next;
  };
  const signal = (sig: NodeJS.Signals): void => {
    const pid = current.child.pid;
    if (pid === undefined || !isAlive(current.child))
      throw new Error(`${kind}-server on port ${launchSpec.port} is not running`);
    process.kill(pid, sig);
  };

  const server: StandaloneServer = {
    kind,
    host: HOST,
    port: launchSpec.port,
    get pid() {
      return current.child.pid ?? -1;
    },
    dir,
    url: `redis://${HOST}:${launchSpec.port}`,
    get paused() {
      return paused;
    },
    pause() {
      signal('SIGSTOP');
      paused = true;
    },
    resume() {
      signal('SIGCONT');
      paused = false;
    },
    async kill() {
      if (isAlive(current.child)) {
        signal('SIGKILL');
        await waitForExit(current.child, STOP_KILL_AFTER_MS);
      }
      paused = false;
    },
    stop: () =>
      serialize(async () => {
        if (stopped) return;
        stopped = true;
        paused = false;
        await current.stop();
        if (ownsDir) releaseOwnedDir(dir);
      }),
    restart: () =>
      serialize(async () => {
        if (stopped) throw new Error(`${kind}-server on port ${launchSpec.port} was stopped; cannot restart`);
        paused = false;
        await current.stop();
        // The port was just released by our own process; retry briefly if something races us.
        for (let attempt = 1; ; attempt++) {
          try {
            current = await launch(launchSpec);
            return;
          } catch (e) {
            if (!(e instanceof AddressInUseError) || attempt >= 5) throw e;
            await sleep(200 * attempt);
          }
        }
      }),
    log: () => readTail(launchSpec.logFile, Number.MAX_SAFE_INTEGER),
  };
  return server;
}

/** Start a standalone server on 127.0.0.1:<random free port>. */
export function startStandalone(opts: StandaloneOptions = {}): Promise<StandaloneServer> {
  return startServer({ ...opts });
}

/** INFO replication of the server on `port`, as fields. */
export async function replicationInfo(port: number): Promise<Record<string, string>> {
  return parseInfo(await sendCommand(port, ['INFO', 'replication'], 2_000));
}

/**
 * Waits until the primary on `primaryPort` counts a replica listening on `replicaPort` as in sync,
 * and streams writes to it: after a full sync, Valkey lists the replica as online but streams only
 * once it gets the replica's next acknowledgement, which can be a second away (the replica's first
 * one may arrive too early). Until then WAIT gets no acknowledgement from it.
 */
export async function waitForReplica(
  primaryPort: number,
  replicaPort: number,
  timeoutMs = READY_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await replicationInfo(primaryPort).catch(
      (e: Error) => ({ error: e.message }) as Record<string, string>,
    );
    const replica = Object.entries(info).find(
      ([field, value]) => /^slave\d+$/.test(field) && value.includes(`port=${replicaPort},`),
    );
    if (replica?.[1].includes('state=online')) return waitForStreaming(primaryPort, replicaPort, deadline);
    if (Date.now() > deadline) {
      const last = JSON.stringify(replica?.[1] ?? info.error ?? `connected_slaves=${info.connected_slaves}`);
      throw new Error(`replica on ${replicaPort} not in sync with ${primaryPort} after ${timeoutMs} ms: ${last}`);
    }
    await sleep(50);
  }
}

/** Writes a key the primary owns, and waits until the replica has read that far in the stream. */
async function waitForStreaming(primaryPort: number, replicaPort: number, deadline: number): Promise<void> {
  // On a cluster node, a key of one of its own slots (the others answer MOVED).
  let marker: string | undefined;
  for (let i = 0; marker === undefined && i < 2_000; i++) {
    const candidate = `valkey-harness:ready:${i}`;
    try {
      await sendCommand(primaryPort, ['SET', candidate, String(replicaPort)]);
      marker = candidate;
    } catch (e) {
      if (!/^(MOVED|ASK)\b/.test((e as Error).message)) throw e;
    }
  }
  if (marker === undefined) throw new Error(`no key of ${primaryPort}'s slots found`);
  const offset = Number((await replicationInfo(primaryPort)).master_repl_offset);
  for (;;) {
    const read = Number((await replicationInfo(replicaPort)).slave_repl_offset ?? -1);
    if (read >= offset) break;
    if (Date.now() > deadline) {
      throw new Error(`replica on ${replicaPort} read ${read} of ${offset} bytes of ${primaryPort}'s stream`);
    }
    await sleep(20);
  }
  await sendCommand(primaryPort, ['DEL', marker]);
}

/**
 * Start a replica of `primary` on 127.0.0.1:<random free port> (`--replicaof`), and wait until the
 * primary counts it in sync. `restart()` keeps it a replica.
 */
export async function startReplica(primary: StandaloneServer, opts: ReplicaOptions = {}): Promise<StandaloneServer> {
  const source = opts.via ?? { host: primary.host, port: primary.port };
  // The primary sends its first copy at once (diskless sync otherwise waits 5 s for more replicas).
  await sendCommand(primary.port, ['CONFIG', 'SET', 'repl-diskless-sync-delay', '0']);
  const replica = await startServer({
    ...opts,
    binary: opts.binary ?? primary.kind,
    extraArgs: ['--replicaof', source.host, String(source.port), ...(opts.extraArgs ?? [])],
  });
  try {
    await waitForReplica(primary.port, replica.port);
  } catch (e) {
    (e as Error).message +=
      `\n--- replica log ---\n${readTail(path.join(replica.dir, `${replica.kind}-${replica.port}.log`), 3_000)}`;
    await replica.stop();
    throw e;
  }
  return replica;
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

function runCli(bin: string, args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], shell: false });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setRealTimeout(() => {
      child.kill('SIGKILL');
      output += `\n(killed after ${timeoutMs} ms)`;
    }, timeoutMs);
    child.once('error', (e) => {
      clearRealTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearRealTimeout(timer);
      resolve({ code, output });
    });
  });
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** Which of `servers` are primaries now, each with its replicas. */
async function clusterShards(
  servers: StandaloneServer[],
): Promise<{ primary: StandaloneServer; replicas: StandaloneServer[] }[]> {
  const infos = await Promise.all(servers.map(async (s) => ({ server: s, info: await replicationInfo(s.port) })));
  return infos
    .filter(({ info }) => info.role === 'master')
    .map(({ server }) => ({
      primary: server,
      replicas: infos
        .filter((r) => r.info.role === 'slave' && Number(r.info.master_port) === server.port)
        .map((r) => r.server),
    }));
}

/** Start N primaries (and `replicas` replicas each), join them with `<cli> --cluster create`, wait for cluster_state:ok everywhere (and every replica streaming). */
export async function startCluster(opts: ClusterOptions = {}): Promise<ClusterServer> {
  const primaries = opts.primaries ?? 3;
  const replicasEach = opts.replicas ?? 0;
  const total = primaries * (1 + replicasEach);
  const kind = opts.binary ?? 'valkey';
  const cli = findCliBinary(kind);
  if (!cli) throw new Error(`${kind}-cli not found on PATH`);
  if (primaries < 3) throw new Error(`--cluster create needs at least 3 primaries (got ${primaries})`);

  const root = makeOwnedDir(`${kind}-cluster-`);
  const servers: StandaloneServer[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
    releaseOwnedDir(root);
  };

  try {
    for (let i = 0; i < total; i++) {
      const nodeDir = path.join(root, `node-${i}`);
      servers.push(
        await startServer({
          binary: kind,
          dir: nodeDir,
          logName: 'server.log',
          argsForPort: async (_port, dir) => [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            path.join(dir, 'nodes.conf'),
            '--cluster-node-timeout',
            '5000',
            // Explicit bus port (instead of port+10000, which may be > 65535 or taken).
            '--cluster-port',
            String(await getFreePort()),
          ],
        }),
      );
    }

    const addrs = servers.map((s) => `${s.host}:${s.port}`);
    const created = await runCli(
      cli,
      ['--cluster', 'create', ...addrs, '--cluster-replicas', String(replicasEach), '--cluster-yes'],
      CLUSTER_TIMEOUT_MS,
    );
    if (created.code !== 0) {
      throw new Error(`${kind}-cli --cluster create failed (exit ${created.code}):\n${created.output}`);
    }

    const deadline = Date.now() + CLUSTER_TIMEOUT_MS;
    let lastState = '';
    for (;;) {
      const states = await Promise.all(
        servers.map(async (s) => {
          try {
            const info = parseInfo(await sendCommand(s.port, ['CLUSTER', 'INFO'], 1_000));
            const ok =
              info.cluster_state === 'ok' &&
              Number(info.cluster_slots_assigned) === CLUSTER_SLOTS &&
              Number(info.cluster_slots_ok) === CLUSTER_SLOTS &&
              Number(info.cluster_known_nodes) === total;
            return {
              ok,
              desc: `${s.port}: state=${info.cluster_state} assigned=${info.cluster_slots_assigned} ok=${info.cluster_slots_ok} known=${info.cluster_known_nodes}`,
            };
          } catch (e) {
            return { ok: false, desc: `${s.port}: ${(e as Error).message}` };
          }
        }),
      );
      if (states.every((st) => st.ok)) {
        if (replicasEach === 0) break;
        // And every replica in sync with its primary.
        const roles = await Promise.all(
          servers.map((s) => replicationInfo(s.port).catch(() => ({}) as Record<string, string>)),
        );
        const inSync = roles
          .filter((info) => info.role === 'master')
          .map(
            (info) =>
              Object.entries(info).filter(([f, v]) => /^slave\d+$/.test(f) && v.includes('state=online')).length,
          );
        if (inSync.length === primaries && inSync.every((n) => n === replicasEach)) {
          for (const shard of await clusterShards(servers)) {
            for (const replica of shard.replicas) await waitForReplica(shard.primary.port, replica.port);
          }
          break;
        }
        states.push({ ok: false, desc: `replicas in sync per primary: ${inSync.join(',')}` });
      }
      lastState = states.map((st) => st.desc).join('; ');
      if (Date.now() > deadline) {
        throw new Error(
          `cluster did not reach cluster_state:ok within ${CLUSTER_TIMEOUT_MS} ms: ${lastState}\n` +
            `--- ${kind}-cli output ---\n${created.output}`,
        );
      }
      await sleep(100);
    }
  } catch (e) {
    const logs = servers
      .map((s) => `--- node ${s.port} ---\n${readTail(path.join(s.dir, 'server.log'), 3_000)}`)
      .join('\n');
    await stopAll();
    (e as Error).message += `\n${logs}`;
    throw e;
  }

  let stopping: Promise<void> | undefined;
  return {
    nodes: servers.map((s) => ({ host: s.host, port: s.port })),
    servers,
    shards: () => clusterShards(servers),
    stop: () => (stopping ??= stopAll()),
  };
}
