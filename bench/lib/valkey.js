// A private valkey-server for one benchmark run (127.0.0.1, a free port, no persistence), and the
// INFO snapshots the benchmarks turn into round trips and CPU time per operation.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { DIST, sleep } = require('./common');

const HOST = '127.0.0.1';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function findBinary(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function serverVersion(bin) {
  try {
    return /\bv=(\S+)/.exec(execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 }))?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Starts valkey-server (or redis-server) and answers `{ host, port, url, version, admin, stop() }`,
 * where `admin` is an ioredis connection for INFO/FLUSHALL. The server is killed when this process
 * exits, whatever the reason.
 */
async function startValkey() {
  const bin = findBinary('valkey-server') ?? findBinary('redis-server');
  if (!bin) throw new Error('valkey-server (or redis-server) not found on PATH: install it (DESIGN.md section 5)');
  const Redis = require('ioredis');
  for (let attempt = 1; ; attempt++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-valkey-'));
    const port = await freePort();
    const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--daemonize', 'no'];
    args.push('--dir', dir, '--maxmemory-policy', 'noeviction', '--protected-mode', 'yes');
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], shell: false });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const kill = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    };
    process.once('exit', kill);
    let admin;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && child.exitCode === null) {
      const candidate = new Redis({
        host: HOST,
        port,
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        enableOfflineQueue: false,
      });
      candidate.on('error', () => undefined);
      try {
        await candidate.connect();
        await candidate.ping();
        admin = candidate;
        break;
      } catch {
        candidate.disconnect();
        await sleep(50);
      }
    }
    if (!admin) {
      kill();
      process.removeListener('exit', kill);
      if (attempt < 3) continue;
      throw new Error(`${path.basename(bin)} did not start on ${HOST}:${port}: ${stderr.trim()}`);
    }
    let stopped;
    const stop = () =>
      (stopped ??= (async () => {
        admin.disconnect();
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
        process.removeListener('exit', kill);
        fs.rmSync(dir, { recursive: true, force: true });
      })());
    return {
      bin,
      host: HOST,
      port,
      url: `redis://${HOST}:${port}`,
      version: serverVersion(bin),
      admin,
      pid: child.pid,
      stop,
      /** SIGKILL now (for exit paths that cannot wait). */
      kill,
    };
  }
}

function parseInfo(text) {
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** `{ calls: { command: n }, cpu: seconds }` now. */
async function snapshot(admin) {
  const stats = parseInfo(await admin.info('commandstats'));
  const cpuInfo = parseInfo(await admin.info('cpu'));
  const calls = {};
  const usec = {};
  for (const [k, v] of Object.entries(stats)) {
    const m = /^cmdstat_(.+)$/.exec(k);
    const n = /(?:^|,)calls=(\d+)/.exec(v);
    const u = /(?:^|,)usec=(\d+)/.exec(v);
    if (m && n) calls[m[1]] = Number(n[1]);
    if (m && u) usec[m[1]] = Number(u[1]);
  }
  return { calls, usec, cpu: Number(cpuInfo.used_cpu_sys) + Number(cpuInfo.used_cpu_user) };
}

// Commands the benchmark itself sends between snapshots; never part of an operation.
const HARNESS_COMMANDS = new Set(['info', 'flushall', 'flushdb', 'script|load', 'config|set', 'config|get', 'ping']);

let innerCache;
/**
 * Commands the library's Lua scripts call (`redis.call('HSET', ...)`). Valkey counts those in
 * INFO commandstats too, beside the EVALSHA that ran the script, so they are not round trips.
 */
function scriptInnerCommands() {
  if (innerCache) return innerCache;
  const inner = new Set();
  const walk = (dir) => {
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.lua')) {
        const source = fs.readFileSync(p, 'utf8');
        for (const m of source.matchAll(/\b(?:redis|server)\.p?call\(\s*['"]([A-Za-z]+)['"]/g)) {
          inner.add(m[1].toLowerCase());
        }
      }
    }
  };
  walk(DIST);
  innerCache = inner;
  return inner;
}

const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);

/**
 * Per-operation figures between two snapshots: `roundTrips` (commands clients sent: script calls
 * plus plain commands, not the commands the scripts ran inside), `cpuUs` (Valkey CPU time),
 * `execUs` (of which inside commands) and `calls` (every command counted, for the record).
 */
function perOp(before, after, ops) {
  const calls = {};
  for (const [name, n] of Object.entries(after.calls)) {
    const d = n - (before.calls[name] ?? 0);
    if (d > 0 && !HARNESS_COMMANDS.has(name)) calls[name] = d;
  }
  const scripted = Object.keys(calls).some((name) => SCRIPT_COMMANDS.has(name));
  const inner = scripted ? scriptInnerCommands() : new Set();
  let roundTrips = 0;
  let execUsec = 0;
  for (const [name, d] of Object.entries(calls)) {
    if (inner.has(name)) continue;
    roundTrips += d;
    execUsec += (after.usec[name] ?? 0) - (before.usec[name] ?? 0);
  }
  const perOpCalls = {};
  for (const [name, d] of Object.entries(calls)) perOpCalls[name] = ops > 0 ? d / ops : null;
  return {
    roundTrips: ops > 0 ? roundTrips / ops : null,
    cpuUs: ops > 0 ? ((after.cpu - before.cpu) * 1e6) / ops : null,
    // Time inside the commands (scripts included), as INFO commandstats' usec counts it; the rest
    // of cpuUs is reading, parsing and writing, i.e. the cost of the round trips themselves.
    execUs: ops > 0 ? execUsec / ops : null,
    calls: perOpCalls,
  };
}

/** `evalsha 2.00, hset 1.00` */
function describeCalls(calls) {
  return Object.entries(calls)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name} ${n === null ? '-' : n.toFixed(2)}`)
    .join(', ');
}

module.exports = { HOST, freePort, findBinary, serverVersion, startValkey, snapshot, perOp, describeCalls, parseInfo };
