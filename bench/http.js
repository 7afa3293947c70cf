// HTTP benchmark (issue 5): each variant is its own Nest process on 127.0.0.1, driven by
// autocannon from this process. Variants are interleaved (A B C A B C ...), each round starts a
// fresh server per variant, warms it up, then measures a fixed duration; figures are medians over
// rounds. Every non-2xx answer and every handler execution is counted: a variant that re-runs a
// replayed key, or answers a fresh key with anything but 2xx, is reported as failing, not as fast.
//
//   npm run bench                          # build, then the full matrix (about 13 minutes)
//   node bench/http.js --duration 1 --warmup 0.5 --rounds 3       # quick run, under 2 minutes
//   node bench/http.js --json              # the JSON document is the last line of stdout
//   node bench/http.js --help
'use strict';
const { fork, spawn } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const autocannon = require('autocannon');
const { ROOT, DIST, cli, positive, list, median, round, table, loadLibrary, machine, sleep } = require('./lib/common');
const { HOST, startValkey, snapshot, perOp, describeCalls } = require('./lib/valkey');

const VARIANTS = [
  'bare',
  'floor',
  'floor-valkey',
  'ours-memory',
  'ours-valkey',
  'node-idempotency-memory',
  'node-idempotency-redis',
];
// Opt-in: a route with a do-nothing interceptor, the floor of any interceptor-based layer.
const EXTRA_VARIANTS = ['noop-interceptor'];
const PLATFORM_VARIANTS = {
  express: [...VARIANTS, ...EXTRA_VARIANTS],
  fastify: [...VARIANTS, ...EXTRA_VARIANTS],
};
const SCENARIOS = ['fresh', 'replay'];
const NEEDS_VALKEY = new Set(['floor-valkey', 'ours-valkey', 'node-idempotency-redis']);
const OURS_EXPORTS = ['IdempotencyModule', 'Idempotent', 'MemoryStore', 'ValkeyStore'];

// Issue 5 targets (ratio to bare, same platform, same run), and the rival figures it quotes.
const TARGETS = {
  'ours-memory': { fresh: 0.9, replay: 1.0 },
  'ours-valkey': { fresh: 0.85, replay: 1.0 },
};
const ROUND_TRIP_TARGETS = { fresh: 2, replay: 1 };
// DESIGN.md section 4 and issue 10: Valkey CPU per request (us), and the server's write system
// calls per request (one per Valkey round trip plus the HTTP response).
const VALKEY_CPU_TARGETS = { fresh: 20, replay: 8 };
const WRITE_TARGETS = { fresh: 3, replay: 2 };
// DESIGN.md section 4: server CPU over a bare route, as a fraction of the bare route's own (Fastify).
const CPU_OVERHEAD_TARGETS = { 'ours-memory': { fresh: 0.3, replay: 0.1 }, 'ours-valkey': { fresh: 1.1, replay: 0.6 } };
// DESIGN.md section 4: the memory store's CPU over bare within 1.5x of the floor's.
const FLOOR_TARGETS = { 'ours-memory': 1.5 };
// The floor each layer is measured against: the in-memory one, or the least a layer built on Valkey
// scripts must do (its Valkey CPU per request is the yardstick of the Valkey targets).
const FLOOR_OF = {
  'ours-memory': 'floor',
  'node-idempotency-memory': 'floor',
  'ours-valkey': 'floor-valkey',
  'node-idempotency-redis': 'floor-valkey',
};
const RIVAL_OF = { 'ours-memory': 'node-idempotency-memory', 'ours-valkey': 'node-idempotency-redis' };
const ISSUE_RIVAL_RATIOS = {
  'node-idempotency-memory': { fresh: 0.8, replay: 0.76 },
  'node-idempotency-redis': { fresh: 0.75, replay: 0.81 },
};

const USAGE = `usage: node bench/http.js [options]   (run \`npm run build\` first; \`npm run bench\` does)

  --duration S      measured seconds per variant, scenario and round (default 10)
  --warmup S        warm-up seconds before each measurement (default 3)
  --rounds N        interleaved rounds; figures are medians (default 3, at least 3 recommended)
  --connections N   autocannon connections (default 32)
  --variants LIST   comma-separated, from: ${VARIANTS.join(', ')} (default: these; floor is the
                    least work any in-memory layer must do, inline in the handler, and
                    floor-valkey the least a layer built on Valkey scripts must do),
                    and the opt-in ${EXTRA_VARIANTS.join(', ')} (Nest's interceptor chain alone)
  --platforms LIST  express, fastify (default: both)
  --scenarios LIST  fresh, replay (default: both)
  --pool N          completed keys the replay scenario cycles through (default 1000)
  --json            print one JSON document as the last line of stdout
  --profile         run the servers with --cpu-prof (profiles in bench/results/profiles/)
  --memory-entries N  after the load, bytes kept per completed entry by each in-memory variant
                    (bare, floor, ours-memory, node-idempotency-memory) run on the fresh scenario:
                    bench/memory.js with N fresh keys, one round (default 50000; 0 skips it)

BENCH_DIST=/path/to/dist measures another build of the library (default: dist/), e.g. to compare two
versions in the same hour; BENCH_AUTOPIPELINE=1 turns on ioredis' enableAutoPipelining for ours-valkey.

A quick run of the whole matrix: --duration 1 --warmup 0.5 (about 100 s).`;

const opts = cli(USAGE, {
  duration: { type: 'string', default: '10' },
  warmup: { type: 'string', default: '3' },
  rounds: { type: 'string', default: '3' },
  connections: { type: 'string', default: '32' },
  variants: { type: 'string', default: VARIANTS.join(',') },
  platforms: { type: 'string', default: 'express,fastify' },
  scenarios: { type: 'string', default: SCENARIOS.join(',') },
  pool: { type: 'string', default: '1000' },
  json: { type: 'boolean', default: false },
  profile: { type: 'boolean', default: false },
  'memory-entries': { type: 'string', default: '50000' },
});
const DURATION = positive('duration', opts.duration);
const WARMUP = Number(opts.warmup);
const ROUNDS = Math.round(positive('rounds', opts.rounds));
const CONNECTIONS = Math.round(positive('connections', opts.connections));
const POOL = Math.round(positive('pool', opts.pool));
const MEMORY_ENTRIES = Number(opts['memory-entries']);
if (!Number.isInteger(MEMORY_ENTRIES) || MEMORY_ENTRIES < 0) {
  console.error('--memory-entries must be an integer >= 0');
  process.exit(2);
}
// What bench/memory.js measures, and the issue 10 target: bytes per completed small entry.
const MEMORY_VARIANTS = ['bare', 'floor', 'ours-memory', 'node-idempotency-memory'];
const BYTES_PER_ENTRY_TARGET = { 'ours-memory': 400 };
const variantsWanted = list('variants', opts.variants, [...VARIANTS, ...EXTRA_VARIANTS]);
const platformsWanted = list('platforms', opts.platforms, Object.keys(PLATFORM_VARIANTS));
const scenariosWanted = list('scenarios', opts.scenarios, SCENARIOS);
if (!Number.isFinite(WARMUP) || WARMUP < 0) {
  console.error('--warmup must be a number >= 0');
  process.exit(2);
}

const BODY_OBJECT = { item: 'widget', qty: 2, note: 'bench' };
const BODY = JSON.stringify(BODY_OBJECT);
const SERVER = path.join(__dirname, 'lib', 'variant-server.js');
const PROFILE_DIR = path.join(ROOT, 'bench', 'results', 'profiles');

const log = (...args) => console.error(...args);

// ---------------------------------------------------------------------------------------------
// Processes: every server started here is stopped on the way out, also on Ctrl-C and errors.
// ---------------------------------------------------------------------------------------------

const children = new Set();
let valkey;
let currentLoad;

function killEverything() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  valkey?.kill();
}
process.on('exit', killEverything);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    log(`\n${signal}: stopping the servers`);
    currentLoad?.stop();
    killEverything();
    process.exit(130);
  });
}

/** Forks one variant server; resolves once it listens: `{ port, stats(), stop() }`. */
function startServer(variant, platform, roundNo) {
  const execArgv = [];
  if (opts.profile) {
    fs.mkdirSync(PROFILE_DIR, { recursive: true });
    execArgv.push('--cpu-prof', '--cpu-prof-dir', PROFILE_DIR);
    execArgv.push('--cpu-prof-name', `${platform}-${variant}-r${roundNo}-${process.pid}.cpuprofile`);
  }
  const child = fork(SERVER, [variant, platform], {
    cwd: ROOT,
    execArgv,
    silent: true,
    env: { ...process.env, BENCH_VALKEY_URL: valkey?.url ?? '', NODE_ENV: 'production' },
  });
  children.add(child);
  child.stdout.on('data', (d) => process.stderr.write(d));
  child.stderr.on('data', (d) => process.stderr.write(d));
  child.once('exit', () => children.delete(child));

  let nextId = 0;
  const stats = () =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        child.off('message', onMessage);
        reject(new Error(`${platform}/${variant}: no stats answer`));
      }, 5_000);
      const onMessage = (m) => {
        if (m?.type === 'stats' && m.id === id) {
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve(m);
        }
      };
      child.on('message', onMessage);
      child.send({ cmd: 'stats', id });
    });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      child.send({ cmd: 'stop' });
    } catch {
      child.kill('SIGTERM');
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`${platform}/${variant}: not listening after 30 s`));
    }, 30_000);
    child.on('message', (m) => {
      if (m?.type === 'ready') {
        clearTimeout(timer);
        resolve({ port: m.port, stats, stop });
      } else if (m?.type === 'failed') {
        clearTimeout(timer);
        void stop();
        reject(Object.assign(new Error(m.error), { unavailable: true }));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${platform}/${variant}: server exited (${signal ?? code}) before listening`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/** 36-character keys shaped like UUIDs, unique per run: `<random 23>-<counter, 12 hex>`. */
function keySequence() {
  const stem = randomUUID().slice(0, 23);
  let n = 0;
  return () => `${stem}-${(n++).toString(16).padStart(12, '0')}`;
}

// After a load run, requests still in flight when autocannon stopped finish on the server; wait for
// them so that counters read after this belong to the run that sent them.
const SETTLE_MS = 200;

function runLoad(port, seconds, nextKey) {
  return new Promise((resolve, reject) => {
    currentLoad = autocannon(
      {
        url: `http://${HOST}:${port}`,
        connections: CONNECTIONS,
        pipelining: 1,
        duration: seconds,
        timeout: 10,
        requests: [
          {
            method: 'POST',
            path: '/orders',
            headers: { 'content-type': 'application/json' },
            body: BODY,
            setupRequest: (req) => {
              req.headers['idempotency-key'] = nextKey();
              return req;
            },
          },
        ],
      },
      (error, result) => {
        currentLoad = undefined;
        if (error) reject(error);
        else resolve(result);
      },
    );
  });
}

/** One POST /orders with `key`, on `agent`: `{ status, headers, body }`. */
function post(port, key, agent) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: HOST,
        port,
        method: 'POST',
        path: '/orders',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(BODY),
          'idempotency-key': key,
        },
        timeout: 10_000,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(BODY);
  });
}

/** Completes every key of `keys` once (16 at a time); answers the count of non-2xx answers. */
async function precomplete(port, keys) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  let next = 0;
  let bad = 0;
  const worker = async () => {
    while (next < keys.length) {
      const { status } = await post(port, keys[next++], agent);
      if (status < 200 || status > 299) bad++;
    }
  };
  try {
    await Promise.all(Array.from({ length: 16 }, worker));
  } finally {
    agent.destroy();
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------
// One variant, one round
// ---------------------------------------------------------------------------------------------

function summarize(result) {
  return {
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

/** Busy CPU seconds of the whole machine so far (all cores), from /proc/stat; null elsewhere. */
function machineBusySeconds() {
  try {
    const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    const busy = fields.slice(0, 8).reduce((a, v, i) => (i === 3 || i === 4 ? a : a + v), 0);
    return busy / 100; // USER_HZ
  } catch {
    return null;
  }
}

async function measure(server, port, nextKey, useValkey) {
  const before = await server.stats();
  const vBefore = useValkey ? await snapshot(valkey.admin) : undefined;
  const ownBefore = process.cpuUsage();
  const busyBefore = machineBusySeconds();
  const result = await runLoad(port, DURATION, nextKey);
  const busyAfter = machineBusySeconds();
  const own = process.cpuUsage(ownBefore);
  await sleep(SETTLE_MS);
  const vAfter = useValkey ? await snapshot(valkey.admin) : undefined;
  const after = await server.stats();
  const s = summarize(result);
  s.executions = after.executions - before.executions;
  // Requests the server got in the window: the answered ones plus those in flight at the end.
  s.served = after.requests - before.requests;
  s.rssMB = after.rss / 2 ** 20;
  s.serverCpuUs = s.served > 0 ? (after.cpuUs - before.cpuUs) / s.served : null;
  // Write system calls of the server process per request (Linux): Valkey commands, HTTP responses.
  s.serverWrites =
    s.served > 0 && after.writes !== null && before.writes !== null ? (after.writes - before.writes) / s.served : null;
  if (vBefore && vAfter) s.valkey = perOp(vBefore, vAfter, s.served);
  if (busyBefore !== null && busyAfter !== null) {
    // CPU that neither the server, this load generator nor Valkey used: other work on the machine.
    const ours = (after.cpuUs - before.cpuUs + own.user + own.system) / 1e6 + (vAfter ? vAfter.cpu - vBefore.cpu : 0);
    s.foreignCores = Math.max(0, (busyAfter - busyBefore - ours) / result.duration);
  }
  return s;
}

async function runVariant(platform, variant, roundNo) {
  const idempotent =
    variant.startsWith('floor') || variant.startsWith('ours-') || variant.startsWith('node-idempotency-');
  const useValkey = NEEDS_VALKEY.has(variant);
  if (useValkey) await valkey.admin.flushall();
  const server = await startServer(variant, platform, roundNo);
  const out = {};
  try {
    const { port } = server;
    const fresh = scenariosWanted.includes('fresh');
    const replay = scenariosWanted.includes('replay');
    const freshKey = keySequence();
    const replayFailures = [];
    let poolKeys = [];
    let replayKey;
    // Set-up and warm-up of both scenarios come before either is measured, so that the first
    // measurement does not pay for the JIT alone.
    if (replay) {
      const poolKey = keySequence();
      poolKeys = Array.from({ length: POOL }, () => poolKey());
      const before = await server.stats();
      const bad = await precomplete(port, poolKeys);
      const after = await server.stats();
      if (bad > 0) replayFailures.push(`${bad} non-2xx answers while completing the replay pool`);
      if (after.executions - before.executions !== POOL) {
        replayFailures.push(
          `completing ${POOL} pool keys ran the handler ${after.executions - before.executions} times`,
        );
      }
      let i = 0;
      replayKey = () => poolKeys[i++ % POOL];
    }
    if (WARMUP > 0 && fresh) await runLoad(port, WARMUP, freshKey).then(() => sleep(SETTLE_MS));
    if (WARMUP > 0 && replay) {
      const before = await server.stats();
      await runLoad(port, WARMUP, replayKey).then(() => sleep(SETTLE_MS));
      const ran = (await server.stats()).executions - before.executions;
      if (idempotent && ran > 0) replayFailures.push(`warm-up: ran the handler ${ran} times for completed keys`);
    }
    const measureFresh = async () => {
      const s = await measure(server, port, freshKey, useValkey);
      s.failures = [];
      if (s.non2xx > 0) s.failures.push(`${s.non2xx} non-2xx answers to fresh keys`);
      if (s.errors + s.timeouts > 0) s.failures.push(`${s.errors} errors, ${s.timeouts} timeouts`);
      // Every fresh key runs the handler exactly once: as many executions as requests served.
      if (s.executions !== s.served) s.failures.push(`${s.executions} executions for ${s.served} fresh requests`);
      out.fresh = s;
    };
    const measureReplay = async () => {
      const s = await measure(server, port, replayKey, useValkey);
      const failures = replayFailures;
      if (s.non2xx > 0) failures.push(`${s.non2xx} non-2xx answers to replays`);
      if (s.errors + s.timeouts > 0) failures.push(`${s.errors} errors, ${s.timeouts} timeouts`);
      if (idempotent) {
        if (s.executions > 0) failures.push(`ran the handler ${s.executions} times for already completed keys`);
        // A spot check of what a replay answers: the original body and the replay marker.
        const sample = await post(port, poolKeys[0]);
        let same;
        try {
          same = JSON.stringify(JSON.parse(sample.body)) === BODY;
        } catch {
          same = false;
        }
        if (sample.status < 200 || sample.status > 299 || !same) {
          failures.push(`replay spot check answered ${sample.status} ${sample.body.slice(0, 80)}`);
        } else if (String(sample.headers['idempotent-replayed']).toLowerCase() !== 'true') {
          failures.push('replay spot check: no Idempotent-Replayed: true header');
        }
      }
      s.failures = failures;
      out.replay = s;
    };
    // Odd rounds measure fresh then replay, even rounds the other way round, so that neither
    // scenario always gets the better-warmed server.
    const order =
      roundNo % 2 === 1
        ? [fresh && measureFresh, replay && measureReplay]
        : [replay && measureReplay, fresh && measureFresh];
    for (const step of order) if (step) await step();
  } finally {
    await server.stop();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

function aggregate(runs) {
  // runs: per round, the scenario figures of one variant (or an error).
  const ok = runs.filter((r) => r && !r.error);
  const failures = [];
  runs.forEach((r, i) => {
    if (r?.error) failures.push(`round ${i + 1}: ${r.error}`);
    for (const f of r?.failures ?? []) failures.push(`round ${i + 1}: ${f}`);
  });
  const sum = (key) => (ok.length ? ok.reduce((a, r) => a + (r[key] ?? 0), 0) : null);
  const valkeyRuns = ok.filter((r) => r.valkey);
  const callsPerOp = {};
  for (const r of valkeyRuns) {
    for (const [name, n] of Object.entries(r.valkey.calls)) (callsPerOp[name] ??= []).push(n);
  }
  return {
    rps: round(median(ok.map((r) => r.rps)), 0),
    // (max - min) / median of req/s over the rounds: the run-to-run noise.
    rpsSpread:
      ok.length > 1
        ? round(
            (Math.max(...ok.map((r) => r.rps)) - Math.min(...ok.map((r) => r.rps))) / median(ok.map((r) => r.rps)),
            2,
          )
        : null,
    p50: round(median(ok.map((r) => r.p50)), 2),
    p99: round(median(ok.map((r) => r.p99)), 2),
    ratioToBare: null,
    cpuOverBare: null,
    overheadToFloor: null,
    non2xx: sum('non2xx'),
    executions: sum('executions'),
    requests: sum('requests'),
    served: sum('served'),
    errors: ok.length ? sum('errors') + sum('timeouts') : null,
    rssMB: round(median(ok.map((r) => r.rssMB)), 1),
    serverCpuUsPerRequest: round(median(ok.map((r) => r.serverCpuUs)), 1),
    serverWriteSyscallsPerRequest: round(median(ok.map((r) => r.serverWrites)), 2),
    valkeyRoundTripsPerRequest: valkeyRuns.length ? round(median(valkeyRuns.map((r) => r.valkey.roundTrips)), 3) : null,
    valkeyCpuUsPerRequest: valkeyRuns.length ? round(median(valkeyRuns.map((r) => r.valkey.cpuUs)), 1) : null,
    valkeyCallsPerRequest: valkeyRuns.length
      ? Object.fromEntries(Object.entries(callsPerOp).map(([k, v]) => [k, round(median(v), 3)]))
      : null,
    otherLoadCores: round(median(ok.map((r) => r.foreignCores)), 2),
    rounds: ok.length,
    failed: failures.length > 0 || ok.length === 0,
    failures,
  };
}

function statusOf(r) {
  if (r.rounds === 0) return `n/a: ${r.failures[0]?.replace(/^round \d+: /, '') ?? 'not run'}`;
  return r.failed ? `FAIL: ${r.failures.join('; ')}` : 'ok';
}

/**
 * Runs bench/memory.js (one round of `MEMORY_ENTRIES` fresh keys per variant and platform) and
 * answers its JSON document, or null when it failed (the reason is logged).
 */
function bytesPerEntry(variants, platforms) {
  const script = path.join(__dirname, 'memory.js');
  const args = [script, '--json', '--rounds', '1', '--entries', String(MEMORY_ENTRIES)];
  args.push('--variants', variants.join(','), '--platforms', platforms.join(','));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.once('exit', (code) => {
      children.delete(child);
      const last = out.trim().split('\n').pop();
      try {
        if (code !== 0) throw new Error(`exit code ${code}`);
        resolve(JSON.parse(last));
      } catch (error) {
        log(`bench/memory.js failed (${error.message}): no bytes per entry in this run`);
        resolve(null);
      }
    });
  });
}

async function main() {
  const started = new Date();
  const ours = loadLibrary(OURS_EXPORTS);
  const matrix = [];
  for (const platform of platformsWanted) {
    for (const variant of PLATFORM_VARIANTS[platform])
      if (variantsWanted.includes(variant)) matrix.push({ platform, variant });
  }
  if (matrix.length === 0) throw new Error('nothing to run: check --variants and --platforms');
  if (ours.reason && matrix.some((m) => m.variant.startsWith('ours-'))) {
    log(`ours-* variants will fail: ${ours.reason}`);
  }
  const usable = (m) => !(m.variant.startsWith('ours-') && ours.reason);
  if (matrix.some((m) => NEEDS_VALKEY.has(m.variant) && usable(m))) {
    valkey = await startValkey();
    log(`valkey-server ${valkey.version ?? '?'} on ${valkey.url} (pid ${valkey.pid})`);
  }

  const perRound = new Map(matrix.map((m) => [`${m.platform}/${m.variant}`, []]));
  for (let r = 1; r <= ROUNDS; r++) {
    for (const m of matrix) {
      const id = `${m.platform}/${m.variant}`;
      if (!usable(m)) {
        perRound.get(id).push(Object.fromEntries(scenariosWanted.map((sc) => [sc, { error: ours.reason }])));
        continue;
      }
      let result;
      try {
        result = await runVariant(m.platform, m.variant, r);
      } catch (error) {
        if (!error.unavailable) log(`round ${r} ${id}: ${error.stack ?? error.message}`);
        const failed = { error: error.message };
        result = Object.fromEntries(scenariosWanted.map((s) => [s, failed]));
      }
      perRound.get(id).push(result);
      for (const s of scenariosWanted) {
        const x = result[s];
        if (!x || x.error) {
          log(`round ${r}/${ROUNDS} ${id} ${s}: ${x?.error ?? 'not run'}`);
          continue;
        }
        const vk = x.valkey
          ? `, valkey ${x.valkey.roundTrips.toFixed(2)} rt/req ${x.valkey.cpuUs.toFixed(1)} us/req`
          : '';
        const cpu = x.serverCpuUs === null ? '' : `  srv ${x.serverCpuUs.toFixed(0)} us/req`;
        const writes = x.serverWrites === null ? '' : ` ${x.serverWrites.toFixed(2)} writes/req`;
        const fails = x.failures.length ? `  FAIL: ${x.failures.join('; ')}` : '';
        const noise = x.foreignCores > 0.1 ? `  (other processes used ${x.foreignCores.toFixed(2)} cores)` : '';
        log(
          `round ${r}/${ROUNDS} ${id.padEnd(32)} ${s.padEnd(6)} ${Math.round(x.rps).toLocaleString('en').padStart(7)} req/s` +
            `  p50 ${x.p50} ms  p99 ${x.p99} ms  exec ${x.executions}/${x.served}${cpu}${writes}${vk}${noise}${fails}`,
        );
      }
    }
  }

  // { platform: { variant: { scenario: figures } } }
  const doc = {};
  for (const m of matrix) {
    const rounds = perRound.get(`${m.platform}/${m.variant}`);
    for (const s of scenariosWanted) {
      ((doc[m.platform] ??= {})[m.variant] ??= {})[s] = aggregate(rounds.map((x) => x[s]));
    }
  }
  for (const platform of Object.keys(doc)) {
    for (const s of scenariosWanted) {
      const bare = doc[platform].bare?.[s];
      for (const figures of Object.values(doc[platform])) {
        const f = figures[s];
        if (bare?.rps && f.rps !== null && !bare.failed) f.ratioToBare = round(f.rps / bare.rps, 3);
        // Server CPU over bare's, as a fraction of bare's own: the steadier figure on shared cores.
        const bareCpu = bare?.serverCpuUsPerRequest;
        if (bareCpu && f.serverCpuUsPerRequest !== null && !bare.failed) {
          f.cpuOverBare = round((f.serverCpuUsPerRequest - bareCpu) / bareCpu, 3);
        }
      }
      // Each layer's CPU over bare as a multiple of its floor's (DESIGN.md: memory within 1.5x).
      for (const [variant, figures] of Object.entries(doc[platform])) {
        const f = figures[s];
        const floor = doc[platform][FLOOR_OF[variant]]?.[s];
        if (floor === undefined || f.cpuOverBare === null) continue;
        if (floor.cpuOverBare > 0 && !floor.failed) f.overheadToFloor = round(f.cpuOverBare / floor.cpuOverBare, 2);
      }
    }
  }

  // Bytes kept per completed entry (issue 10): bench/memory.js in its own processes, after the load.
  const memoryPlatforms = Object.keys(doc).filter((p) => Object.keys(doc[p]).some((v) => MEMORY_VARIANTS.includes(v)));
  if (MEMORY_ENTRIES > 0 && scenariosWanted.includes('fresh') && memoryPlatforms.length > 0) {
    const wanted = MEMORY_VARIANTS.filter((v) => memoryPlatforms.some((p) => doc[p][v] !== undefined));
    log(`bytes per entry: bench/memory.js --entries ${MEMORY_ENTRIES} --rounds 1 (${wanted.join(', ')})`);
    const memory = await bytesPerEntry(wanted, memoryPlatforms);
    for (const platform of memoryPlatforms) {
      for (const [variant, figures] of Object.entries(doc[platform])) {
        const m = memory?.[platform]?.[variant];
        if (figures.fresh === undefined || !MEMORY_VARIANTS.includes(variant)) continue;
        figures.fresh.bytesPerEntry = m?.bytesPerEntry ?? null;
        figures.fresh.heapBytesPerEntry = m?.heapBytesPerEntry ?? null;
        figures.fresh.externalBytesPerEntry = m?.externalBytesPerEntry ?? null;
        figures.fresh.bodyBytes = m?.bodyBytes ?? null;
      }
    }
  }

  const rows = [];
  for (const [platform, variants] of Object.entries(doc)) {
    for (const [variant, scenarios] of Object.entries(variants)) {
      for (const [s, f] of Object.entries(scenarios)) {
        rows.push({
          platform,
          variant,
          scenario: s,
          rps: f.rps?.toLocaleString('en'),
          spread: f.rpsSpread === null ? null : `${Math.round(f.rpsSpread * 100)}%`,
          p50: f.p50,
          p99: f.p99,
          ratio: f.ratioToBare?.toFixed(2),
          rss: f.rssMB?.toFixed(0),
          cpu: f.serverCpuUsPerRequest?.toFixed(0),
          over: f.cpuOverBare === null ? null : `${f.cpuOverBare > 0 ? '+' : ''}${Math.round(f.cpuOverBare * 100)}%`,
          floorX: f.overheadToFloor?.toFixed(2),
          writes: f.serverWriteSyscallsPerRequest?.toFixed(2),
          non2xx: f.non2xx,
          exec: f.served === null ? null : `${f.executions}/${f.served}`,
          rt: f.valkeyRoundTripsPerRequest?.toFixed(2),
          vcpu: f.valkeyCpuUsPerRequest?.toFixed(1),
          noise: f.otherLoadCores?.toFixed(2),
          bytes: f.bytesPerEntry ?? null,
          status: statusOf(f),
        });
      }
    }
  }
  const info = machine();
  const header =
    `HTTP benchmark, ${started.toISOString()}: Node ${info.node}, ${info.cpus} CPUs (${info.cpuModel})` +
    `${valkey ? `, valkey-server ${valkey.version}` : ''}; library ${path.relative(ROOT, DIST) || '.'}\n` +
    `${ROUNDS} rounds x (${WARMUP} s warm-up + ${DURATION} s), ${CONNECTIONS} connections, replay pool ${POOL} keys; ` +
    'medians over rounds; autocannon shares the cores with the servers.\n';
  const columns = [
    { key: 'platform', title: 'platform', align: 'left' },
    { key: 'variant', title: 'variant', align: 'left' },
    { key: 'scenario', title: 'scenario', align: 'left' },
    { key: 'rps', title: 'req/s' },
    { key: 'spread', title: 'spread' },
    { key: 'p50', title: 'p50 ms' },
    { key: 'p99', title: 'p99 ms' },
    { key: 'ratio', title: 'x bare' },
    { key: 'rss', title: 'RSS MB' },
    { key: 'cpu', title: 'srv CPU us/req' },
    { key: 'over', title: 'CPU over bare' },
    { key: 'floorX', title: 'x floor' },
    { key: 'writes', title: 'srv writes/req' },
    { key: 'non2xx', title: 'non-2xx' },
    { key: 'exec', title: 'executions/served' },
    { key: 'rt', title: 'valkey rt/req' },
    { key: 'vcpu', title: 'valkey CPU us/req' },
    { key: 'noise', title: 'other load' },
    { key: 'bytes', title: 'bytes/entry' },
    { key: 'status', title: 'status', align: 'left' },
  ];
  console.log(`\n${header}\n${table(rows, columns)}`);

  // Where we stand against issue 5's targets.
  const lines = [];
  for (const [platform, variants] of Object.entries(doc)) {
    for (const [variant, targets] of Object.entries(TARGETS)) {
      for (const [s, target] of Object.entries(targets)) {
        const f = variants[variant]?.[s];
        if (!f) continue;
        if (f.ratioToBare === null) {
          lines.push(`${platform} ${variant} ${s}: target >= ${target.toFixed(2)} x bare: no figure (${statusOf(f)})`);
          continue;
        }
        const verdict = f.failed ? 'FAILING' : f.ratioToBare >= target ? 'meets' : 'misses';
        lines.push(
          `${platform} ${variant} ${s}: ${f.ratioToBare.toFixed(2)} x bare, target >= ${target.toFixed(2)}: ${verdict}`,
        );
        if (variant === 'ours-valkey' && f.valkeyRoundTripsPerRequest !== null) {
          const want = ROUND_TRIP_TARGETS[s];
          const rt = f.valkeyRoundTripsPerRequest;
          lines.push(
            `${platform} ${variant} ${s}: ${rt.toFixed(2)} valkey round trips per request (${describeCalls(f.valkeyCallsPerRequest)}), ` +
              `target ${want}: ${Math.abs(rt - want) < 0.02 ? 'meets' : 'misses'}`,
          );
          if (f.valkeyCpuUsPerRequest !== null) {
            const cpu = f.valkeyCpuUsPerRequest;
            const want = VALKEY_CPU_TARGETS[s];
            const floor = variants['floor-valkey']?.[s]?.valkeyCpuUsPerRequest;
            lines.push(
              `${platform} ${variant} ${s}: ${cpu} us Valkey CPU per request, target <= ${want}: ${cpu <= want ? 'meets' : 'misses'}` +
                `${floor ? ` (floor-valkey ${floor} us, ${(cpu / floor).toFixed(2)}x)` : ''}`,
            );
          }
          if (f.serverWriteSyscallsPerRequest !== null) {
            const writes = f.serverWriteSyscallsPerRequest;
            const want = WRITE_TARGETS[s];
            lines.push(
              `${platform} ${variant} ${s}: ${writes} server write syscalls per request (Valkey and HTTP), ` +
                `target <= ${want}: ${writes <= want + 0.02 ? 'meets' : 'misses'}`,
            );
          }
        }
        const bare = variants.bare?.[s];
        const overhead = CPU_OVERHEAD_TARGETS[variant]?.[s];
        if (overhead !== undefined && bare?.serverCpuUsPerRequest && f.serverCpuUsPerRequest !== null) {
          const extra = f.serverCpuUsPerRequest - bare.serverCpuUsPerRequest;
          const fraction = extra / bare.serverCpuUsPerRequest;
          lines.push(
            `${platform} ${variant} ${s}: server CPU ${f.serverCpuUsPerRequest} us/req, ${Math.round(extra)} us over bare ` +
              `(${Math.round(fraction * 100)}% of bare's ${bare.serverCpuUsPerRequest}), target <= ${Math.round(overhead * 100)}%` +
              `${platform === 'fastify' ? '' : ' (set for Fastify)'}: ${fraction <= overhead ? 'meets' : 'misses'}`,
          );
        }
        const floorBound = FLOOR_TARGETS[variant];
        if (floorBound !== undefined && f.overheadToFloor !== null) {
          lines.push(
            `${platform} ${variant} ${s}: CPU over bare ${f.overheadToFloor.toFixed(2)}x the floor's ` +
              `(${Math.round(variants[FLOOR_OF[variant]][s].cpuOverBare * 100)}%), target <= ${floorBound}x: ` +
              `${f.overheadToFloor <= floorBound ? 'meets' : 'misses'}`,
          );
        }
        const bytesTarget = BYTES_PER_ENTRY_TARGET[variant];
        if (bytesTarget !== undefined && s === 'fresh' && typeof f.bytesPerEntry === 'number') {
          const limit = bytesTarget + f.bodyBytes;
          lines.push(
            `${platform} ${variant}: ${f.bytesPerEntry} bytes kept per completed entry with a ${f.bodyBytes}-byte body, ` +
              `target <= ${bytesTarget} + the body = ${limit}: ${f.bytesPerEntry <= limit ? 'meets' : 'misses'}`,
          );
        }
        // DESIGN.md section 4: ahead of the rival on the same store, as a ratio to bare.
        const rival = variants[RIVAL_OF[variant]]?.[s];
        if (rival?.ratioToBare !== null && rival?.ratioToBare !== undefined && !rival.failed) {
          const cpuAhead =
            f.cpuOverBare !== null && rival.cpuOverBare !== null ? f.cpuOverBare < rival.cpuOverBare : undefined;
          lines.push(
            `${platform} ${variant} ${s}: ${f.ratioToBare.toFixed(2)} x bare vs ${RIVAL_OF[variant]} ${rival.ratioToBare.toFixed(2)}` +
              `${cpuAhead === undefined ? '' : `; CPU over bare ${Math.round(f.cpuOverBare * 100)}% vs ${Math.round(rival.cpuOverBare * 100)}%`}: ` +
              `${f.ratioToBare > rival.ratioToBare && cpuAhead !== false ? 'ahead' : 'NOT ahead'}`,
          );
        }
      }
    }
    for (const [variant, quoted] of Object.entries(ISSUE_RIVAL_RATIOS)) {
      for (const [s, q] of Object.entries(quoted)) {
        const f = variants[variant]?.[s];
        if (f?.ratioToBare !== null && f?.ratioToBare !== undefined) {
          lines.push(
            `${platform} ${variant} ${s}: ${f.ratioToBare.toFixed(2)} x bare (issue 5 quotes ${q.toFixed(2)})`,
          );
        }
      }
    }
  }
  if (lines.length) console.log(`\nTargets (issues 5 and 10, DESIGN.md section 4):\n  ${lines.join('\n  ')}`);
  if (opts.profile)
    console.log(`\nCPU profiles: ${path.relative(ROOT, PROFILE_DIR)}/ (summarise: node bench/profile.js <file>)`);

  if (valkey) await valkey.stop();
  if (opts.json) console.log(JSON.stringify(doc));
}

main().catch(async (error) => {
  console.error(error.stack ?? error.message);
  killEverything();
  process.exit(1);
});
