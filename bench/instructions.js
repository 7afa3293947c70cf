// Instructions per request of the server process (issue 21, DESIGN.md section 7.6): each variant's
// server runs under valgrind's callgrind with instrumentation off, is warmed up with thousands of
// requests, then counted over `--windows` consecutive windows per scenario: instrumentation
// switched on (`callgrind_control -i on`) for N requests, dumped, the `totals:` divided by N. A
// run's figure is the median of its windows (a major collection or a late compilation lands in
// some windows, not in the median). Unlike CPU time, the count hardly moves with the machine's
// load, so cells run side by side (`--parallel`) and each is the median of `--rounds` runs.
// Where a variant talks to Valkey, its private valkey-server runs under callgrind too and its
// instructions per request are counted over the same requests.
//
//   npm run bench:instructions
//   node bench/instructions.js --platforms fastify --variants bare,ours-memory --rounds 3 --json
//   node bench/instructions.js --help
'use strict';
const { fork } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const autocannon = require('autocannon');
const { ROOT, DIST, cli, positive, list, median, round, table, loadLibrary, machine, sleep } = require('./lib/common');
const { HOST, snapshot, perOp, describeCalls } = require('./lib/valkey');
const { callgrindBinaries, callgrindSetup, callgrindCounter, startValkeyUnderCallgrind } = require('./lib/callgrind');

// Variant -> how its server is started: variant-server.js's name, or pg-server.js's.
const VARIANTS = {
  bare: { server: 'variant', name: 'bare' },
  'ours-memory': { server: 'variant', name: 'ours-memory' },
  'ours-valkey': { server: 'variant', name: 'ours-valkey', valkey: true },
  'floor-memory': { server: 'variant', name: 'floor' },
  'floor-valkey': { server: 'variant', name: 'floor-valkey', valkey: true },
  'node-idempotency-memory': { server: 'variant', name: 'node-idempotency-memory' },
  'node-idempotency-redis': { server: 'variant', name: 'node-idempotency-redis', valkey: true },
  // PostgresStore, the route writing one row through @IdempotencyTransaction(), against a bare
  // route writing the same row in a transaction of its own (bench/POSTGRES.md).
  'bare-postgres': { server: 'pg', name: 'bare', postgres: true },
  'ours-postgres': { server: 'pg', name: 'ours', postgres: true },
};
const DEFAULT_VARIANTS = Object.keys(VARIANTS);
const SCENARIOS = ['fresh', 'replay'];
const BARE_OF = (variant) => (VARIANTS[variant].postgres ? 'bare-postgres' : 'bare');
const RIVAL_OF = { 'ours-memory': 'node-idempotency-memory', 'ours-valkey': 'node-idempotency-redis' };
// Issue 21's targets: over bare, as a fraction of bare (Fastify).
const FASTIFY_TARGETS = { 'ours-memory': { fresh: 0.15, replay: 0.15 }, 'ours-valkey': { fresh: 0.7, replay: 0.55 } };
const VALKEY_TO_FLOOR_TARGET = 1.05;
const ROUND_TRIP_TARGETS = { fresh: 2, replay: 1 };

const USAGE = `usage: node bench/instructions.js [options]   (needs valgrind; \`npm run bench:instructions\` builds first)

  --platforms LIST   express, fastify (default: both)
  --variants LIST    from: ${DEFAULT_VARIANTS.join(', ')} (default: all)
  --scenarios LIST   fresh, replay (default: both)
  --requests N       counted requests per window (default 1500)
  --windows N        counted windows per scenario per run, one scenario's after another; a
                     run's figure is the median of its windows (default 5)
  --warmup N         warm-up requests per scenario before anything is counted (default 4000), then
                     another half of it per scenario (after full collections with --collect)
  --threads WHICH    all: every thread of the server (default); main: its main thread only (V8's
                     concurrent compiler and GC helpers left out: varies more, as work moves
                     between the main thread and the helpers with the machine's load)
  --rounds N         runs of each cell; figures are medians (default 3)
  --parallel N       cells (server processes) run side by side (default 2)
  --connections N    autocannon connections (default 8)
  --pool N           completed keys the replay scenario cycles through (default 1000)
  --valkey-ops N     also run bench/valkey-instructions.js with N operations (default 3000; 0 skips it)
  --gc               full collections in the server before each counted window too (distorts: they
                     flush compiled code, which the window then compiles again)
  --alternate        even runs count replay first (default: every run counts fresh first; the
                     order moved ours-memory's figures by 3-6%)
  --collect          full collections between the two warm-ups (off: measured, windows then
                     differed more)
  --scavenge         a young-generation collection before each counted window (off: measured,
                     windows then differed more)
  --keep DIR         keep each run's callgrind dumps in DIR (for callgrind_annotate)
  --json             print one JSON document (medians) as the last line of stdout

BENCH_DIST=/path/to/dist measures another build of the library (default: dist/); BENCH_NODE_FLAGS adds
Node options to the servers (--perf-basic-prof writes /tmp/perf-<pid>.map, which names the JIT code in
the dumps kept by --keep: bench/callgrind-jit.py).`;

const opts = cli(USAGE, {
  platforms: { type: 'string', default: 'express,fastify' },
  variants: { type: 'string', default: DEFAULT_VARIANTS.join(',') },
  scenarios: { type: 'string', default: SCENARIOS.join(',') },
  requests: { type: 'string', default: '1500' },
  windows: { type: 'string', default: '5' },
  threads: { type: 'string', default: 'all' },
  warmup: { type: 'string', default: '4000' },
  rounds: { type: 'string', default: '3' },
  parallel: { type: 'string', default: '2' },
  connections: { type: 'string', default: '8' },
  pool: { type: 'string', default: '1000' },
  'valkey-ops': { type: 'string', default: '3000' },
  keep: { type: 'string' },
  gc: { type: 'boolean', default: false },
  collect: { type: 'boolean', default: false },
  alternate: { type: 'boolean', default: false },
  scavenge: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
});
const PLATFORMS = list('platforms', opts.platforms, ['express', 'fastify']);
const WANTED = list('variants', opts.variants, DEFAULT_VARIANTS);
const SCENARIOS_WANTED = list('scenarios', opts.scenarios, SCENARIOS);
const REQUESTS = Math.round(positive('requests', opts.requests));
const WINDOWS = Math.round(positive('windows', opts.windows));
const MAIN_THREAD = list('threads', opts.threads, ['main', 'all'])[0] === 'main';
const WARMUP = Math.round(Number(opts.warmup));
const ROUNDS = Math.round(positive('rounds', opts.rounds));
const PARALLEL = Math.round(positive('parallel', opts.parallel));
const CONNECTIONS = Math.round(positive('connections', opts.connections));
const POOL = Math.round(positive('pool', opts.pool));
const VALKEY_OPS = Math.round(Number(opts['valkey-ops']));
const KEEP = opts.keep ? path.resolve(opts.keep) : undefined;
// Off by default: forced full collections flush compiled code (bytecode ageing), and the window
// then pays for compiling it again (Fastify's bare route measured 789k instead of 239k).
const GC_BEFORE = opts.gc;
// Off by default, both: measured, they made windows differ more, not less (bench/README.md).
const SCAVENGE = opts.scavenge;
const COLLECT = opts.collect;
const ALTERNATE = opts.alternate;

const BODY = JSON.stringify({ item: 'widget', qty: 2, note: 'bench' });
const PG_BODY = JSON.stringify({ amount: 42 });
const log = (...args) => console.error(...args);

// ---------------------------------------------------------------------------------------------
// Processes: everything started here is killed on the way out.
// ---------------------------------------------------------------------------------------------

const children = new Set();
const stoppers = new Set();
function killEverything() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
process.on('exit', killEverything);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    log(`\n${signal}: stopping the servers`);
    for (const stop of stoppers) void stop();
    killEverything();
    process.exit(130);
  });
}

/** One variant's server under callgrind: `{ port, pid, counter, stats(), stop() }`. */
async function startServer(variant, platform, env, label) {
  const { valgrind } = callgrindBinaries();
  const spec = VARIANTS[variant];
  const script = path.join(__dirname, 'lib', spec.server === 'pg' ? 'pg-server.js' : 'variant-server.js');
  const { dir, args } = callgrindSetup(label, { separateThreads: MAIN_THREAD });
  const child = fork(script, [spec.name, platform], {
    // The dumps' dir: whatever the server writes beside them (V8's logs) goes away with them.
    cwd: dir,
    execPath: valgrind,
    execArgv: [
      ...args,
      process.execPath,
      // For --collect, --scavenge and --gc.
      '--expose-gc',
      ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean),
    ],
    silent: true,
    env: { ...process.env, ...env, NODE_ENV: 'production', BENCH_DIST: DIST },
  });
  children.add(child);
  let output = '';
  const keepOutput = (d) => {
    output = (output + d).slice(-4000);
  };
  child.stdout.on('data', keepOutput);
  child.stderr.on('data', keepOutput);
  child.once('exit', () => children.delete(child));

  let nextId = 0;
  const ask = (cmd) =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => {
        child.off('message', onMessage);
        reject(new Error(`${platform}/${variant}: no ${cmd} answer`));
      }, 120_000);
      const onMessage = (m) => {
        if (m?.type === cmd && m.id === id) {
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve(m);
        }
      };
      child.on('message', onMessage);
      child.send({ cmd, id });
    });
  const stats = () => ask('stats');
  // Full collections (the server runs with --expose-gc): every counted window starts from the
  // same heap state, so whether a major collection falls inside it depends less on the run.
  const collect = () => ask('memory');
  // A young-generation collection: before each counted window, so that each starts with an empty
  // nursery and the number of scavenges inside it depends on the window's own allocation only.
  const scavenge = () => ask('scavenge');
  const stop = async () => {
    stoppers.delete(stop);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try {
        child.send({ cmd: 'stop' });
      } catch {
        child.kill('SIGTERM');
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    if (KEEP) {
      fs.mkdirSync(KEEP, { recursive: true });
      for (const f of fs.readdirSync(dir))
        if (/^callgrind\.out\.\d+(-\d+)?$/.test(f))
          fs.copyFileSync(path.join(dir, f), path.join(KEEP, `${label}.${f}`));
      // node --perf-basic-prof (BENCH_NODE_FLAGS): the names of the JIT code, for bench/callgrind-jit.py.
      const map = `/tmp/perf-${child.pid}.map`;
      if (fs.existsSync(map)) fs.renameSync(map, path.join(KEEP, `${label}.perf.map`));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  stoppers.add(stop);
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${platform}/${variant}: not listening after 300 s\n${output}`)),
      300_000,
    );
    child.on('message', (m) => {
      if (m?.type === 'ready') {
        clearTimeout(timer);
        resolve(m.port);
      } else if (m?.type === 'failed') {
        clearTimeout(timer);
        reject(new Error(`${platform}/${variant}: ${m.error}`));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${platform}/${variant}: server exited (${signal ?? code}) before listening\n${output}`));
    });
  }).catch(async (error) => {
    await stop();
    throw error;
  });
  return { port, pid: child.pid, counter: callgrindCounter(child.pid, dir), stats, collect, scavenge, stop };
}

// ---------------------------------------------------------------------------------------------
// Load: exactly `amount` requests from this process, `CONNECTIONS` at a time.
// ---------------------------------------------------------------------------------------------

function keySequence() {
  const stem = randomUUID().slice(0, 23);
  let n = 0;
  return () => `${stem}-${(n++).toString(16).padStart(12, '0')}`;
}

function load(port, amount, nextKey, body) {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://${HOST}:${port}`,
        connections: Math.min(CONNECTIONS, amount),
        pipelining: 1,
        amount,
        timeout: 120,
        requests: [
          {
            method: 'POST',
            path: '/orders',
            headers: { 'content-type': 'application/json' },
            body,
            setupRequest: (req) => {
              req.headers['idempotency-key'] = nextKey();
              return req;
            },
          },
        ],
      },
      (error, result) => {
        if (error) return reject(error);
        const bad = result.non2xx + result.errors + result.timeouts;
        if (bad > 0) return reject(new Error(`${bad} of ${amount} requests not answered 2xx`));
        resolve(result);
      },
    );
  });
}

function post(port, key, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: HOST,
        port,
        method: 'POST',
        path: '/orders',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'idempotency-key': key,
        },
        timeout: 120_000,
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
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// One cell run: a variant on a platform, both scenarios on one server.
// ---------------------------------------------------------------------------------------------

let postgres;
async function postgresUrl() {
  postgres ??= (async () => {
    require('../test/chaos/procs').installCleanup();
    const { PostgresServer } = require('../test/chaos/postgres');
    const pg = await PostgresServer.start('bench-instructions');
    await pg.query('CREATE TABLE orders (id bigserial PRIMARY KEY, key text, amount int NOT NULL)');
    const { Pool } = require('pg');
    const admin = new Pool({ connectionString: pg.connectionString, max: 1 });
    await new (require(DIST).PostgresStore)(admin).migrate();
    await admin.end();
    return pg;
  })();
  return (await postgres).connectionString;
}

async function runCell(platform, variant, roundNo) {
  const spec = VARIANTS[variant];
  const label = `${platform}-${variant}-r${roundNo}`;
  const body = spec.postgres ? PG_BODY : BODY;
  const idempotent = variant !== 'bare' && variant !== 'bare-postgres';
  let valkey;
  let server;
  const out = {};
  try {
    const env = {};
    if (spec.valkey) {
      valkey = await startValkeyUnderCallgrind();
      env.BENCH_VALKEY_URL = valkey.url;
    }
    if (spec.postgres) env.BENCH_PG_URL = await postgresUrl();
    server = await startServer(variant, platform, env, label);
    const { port } = server;
    const fresh = keySequence();
    const poolKey = keySequence();
    const poolKeys = Array.from({ length: POOL }, () => poolKey());
    let i = 0;
    const replay = () => poolKeys[i++ % POOL];
    // The replay pool, completed once each; then both scenarios warmed up before anything counts.
    const before = await server.stats();
    let j = 0;
    await load(port, POOL, () => poolKeys[j++], body);
    const after = await server.stats();
    if (after.executions - before.executions !== POOL) {
      throw new Error(`completing ${POOL} pool keys ran the handler ${after.executions - before.executions} times`);
    }
    const warmUp = async (amount) => {
      if (amount <= 0) return;
      await load(port, amount, fresh, body);
      const b = await server.stats();
      await load(port, amount, replay, body);
      const a = await server.stats();
      if (idempotent && a.executions !== b.executions) {
        throw new Error(`warm-up: ran the handler ${a.executions - b.executions} times for completed keys`);
      }
    };
    // Warm-up, full collections with --collect (whatever they flush is compiled again by the
    // second warm-up, not in a counted window), a second warm-up.
    await warmUp(WARMUP);
    if (COLLECT) await server.collect();
    await warmUp(Math.round(WARMUP / 2));
    // The same order in every run (fresh first) unless --alternate: which scenario comes first
    // moves both (the memory store's fresh windows leave collection work to what follows).
    const order = !ALTERNATE || roundNo % 2 === 1 ? SCENARIOS_WANTED : [...SCENARIOS_WANTED].reverse();
    const windows = Object.fromEntries(SCENARIOS_WANTED.map((s) => [s, []]));
    // Each scenario's windows one after another (fresh x5, then replay x5): the collector's work
    // for what one window allocated and kept lands partly in the next window, so interleaved
    // windows would charge fresh requests' collections to replays.
    for (const scenario of order) {
      for (let w = 0; w < WINDOWS; w++) {
        const nextKey = scenario === 'fresh' ? fresh : replay;
        if (GC_BEFORE) await server.collect();
        if (SCAVENGE) await server.scavenge();
        const s0 = await server.stats();
        const v0 = valkey ? await snapshot(valkey.admin) : undefined;
        server.counter.on();
        valkey?.counter.on();
        let failure;
        try {
          await load(port, REQUESTS, nextKey, body);
        } catch (error) {
          failure = error;
        }
        // Work the server still does for these requests after answering them (none expected).
        await sleep(50);
        const counted = server.counter.off();
        const serverCount = MAIN_THREAD ? counted.mainThread : counted.instructions;
        if (serverCount === null) throw new Error('no main-thread count in the dump');
        const valkeyCount = valkey ? valkey.counter.off().instructions : undefined;
        if (failure) throw failure;
        const v1 = valkey ? await snapshot(valkey.admin) : undefined;
        const s1 = await server.stats();
        const executions = s1.executions - s0.executions;
        const expected = scenario === 'fresh' || !idempotent ? REQUESTS : 0;
        if (executions !== expected)
          throw new Error(`${scenario}: ${executions} executions for ${REQUESTS} requests, expected ${expected}`);
        const figures = {
          instructionsPerRequest: serverCount / REQUESTS,
          allThreadsPerRequest: counted.instructions / REQUESTS,
        };
        if (valkey) {
          figures.valkeyInstructionsPerRequest = valkeyCount / REQUESTS;
          const p = perOp(v0, v1, REQUESTS);
          figures.valkeyRoundTripsPerRequest = p.roundTrips;
          figures.valkeyCalls = describeCalls(p.calls);
        }
        windows[scenario].push(figures);
      }
    }
    for (const scenario of order) {
      if (scenario === 'replay' && idempotent) {
        const sample = await post(port, poolKeys[0], body);
        let same = false;
        try {
          same = JSON.stringify(JSON.parse(sample.body)) === JSON.stringify(JSON.parse(body)) || spec.postgres;
        } catch {
          same = false;
        }
        if (sample.status < 200 || sample.status > 299 || !same)
          throw new Error(`replay spot check answered ${sample.status} ${sample.body.slice(0, 80)}`);
        const marker = sample.headers['idempotent-replayed'] ?? sample.headers['idempotency-replayed'];
        if (
          variant !== 'node-idempotency-memory' &&
          variant !== 'node-idempotency-redis' &&
          String(marker).toLowerCase() !== 'true'
        ) {
          throw new Error('replay spot check: no replay marker header');
        }
      }
      // The run's figures: medians over its windows; `windows` keeps each window's count.
      const ws = windows[scenario];
      const med = (key) => median(ws.map((f) => f[key]));
      const figures = {
        instructionsPerRequest: med('instructionsPerRequest'),
        allThreadsPerRequest: med('allThreadsPerRequest'),
        windows: ws.map((f) => Math.round(f.instructionsPerRequest)),
      };
      if (valkey) {
        figures.valkeyInstructionsPerRequest = med('valkeyInstructionsPerRequest');
        figures.valkeyRoundTripsPerRequest = med('valkeyRoundTripsPerRequest');
        figures.valkeyCalls = ws[0].valkeyCalls;
      }
      out[scenario] = figures;
    }
  } finally {
    await server?.stop();
    await valkey?.stop();
  }
  return out;
}

/** Runs `tasks` (functions answering promises), `n` at a time, in order. */
async function pool(tasks, n) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, tasks.length) }, async () => {
      while (next < tasks.length) await tasks[next++]();
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const k = (n) => (n === null || n === undefined ? '-' : `${Math.round(n / 1000)}k`);
const pct = (x) => `${x >= 0 ? '+' : ''}${Math.round(x * 100)}%`;

function runValkeyInstructions() {
  if (VALKEY_OPS <= 0) return Promise.resolve(null);
  const { spawn } = require('node:child_process');
  return new Promise((resolve) => {
    const args = [path.join(__dirname, 'valkey-instructions.js'), '--json', '--ops', String(VALKEY_OPS)];
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, BENCH_DIST: DIST },
    });
    children.add(child);
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.once('exit', (code) => {
      children.delete(child);
      try {
        if (code !== 0) throw new Error(`exit code ${code}`);
        resolve(JSON.parse(text.trim().split('\n').pop()));
      } catch (error) {
        log(`bench/valkey-instructions.js failed (${error.message})`);
        resolve(null);
      }
    });
  });
}

async function main() {
  const started = new Date();
  callgrindBinaries();
  const { reason } = loadLibrary(['IdempotencyModule', 'Idempotent', 'MemoryStore', 'ValkeyStore']);
  if (reason) throw new Error(reason);
  const cells = [];
  for (const platform of PLATFORMS) for (const variant of WANTED) cells.push({ platform, variant });
  const runs = new Map(cells.map((c) => [`${c.platform}/${c.variant}`, []]));
  const tasks = [];
  for (let r = 1; r <= ROUNDS; r++) {
    for (const c of cells) {
      const id = `${c.platform}/${c.variant}`;
      tasks.push(async () => {
        const t0 = Date.now();
        try {
          const result = await runCell(c.platform, c.variant, r);
          runs.get(id).push(result);
          const text = Object.entries(result)
            .map(
              ([s, f]) =>
                `${s} ${Math.round(f.instructionsPerRequest).toLocaleString('en')}` +
                ` [${f.windows.map((v) => `${Math.round(v / 1000)}k`).join(' ')}]` +
                (f.valkeyInstructionsPerRequest
                  ? ` (valkey ${Math.round(f.valkeyInstructionsPerRequest).toLocaleString('en')}, ${f.valkeyCalls})`
                  : ''),
            )
            .join(', ');
          log(`round ${r}/${ROUNDS} ${id}: ${text}  [${Math.round((Date.now() - t0) / 1000)} s]`);
        } catch (error) {
          runs.get(id).push({ error: error.message });
          log(`round ${r}/${ROUNDS} ${id}: FAILED ${error.stack ?? error.message}`);
        }
      });
    }
  }
  const valkeyRun = runValkeyInstructions();
  await pool(tasks, PARALLEL);
  const valkeyDoc = await valkeyRun;
  if (postgres) await (await postgres).stop();

  // Medians: { platform: { variant: { scenario: figures } } }
  const doc = {};
  for (const c of cells) {
    const rs = runs.get(`${c.platform}/${c.variant}`);
    const ok = rs.filter((r) => !r.error);
    const failures = rs.filter((r) => r.error).map((r) => r.error);
    for (const s of SCENARIOS_WANTED) {
      const values = ok.map((r) => r[s]?.instructionsPerRequest).filter((v) => v !== undefined);
      const m = median(values);
      const f = {
        instructionsPerRequest: round(m, 0),
        runs: values.map((v) => round(v, 0)),
        // Each run's windows (the run's figure is their median) and, beside, every thread's count.
        windows: ok.map((r) => r[s]?.windows).filter(Boolean),
        allThreadsPerRequest: round(median(ok.map((r) => r[s]?.allThreadsPerRequest)), 0),
        // (max - min) / median over the runs: how much repeats of this cell differ.
        spread: values.length > 1 ? round((Math.max(...values) - Math.min(...values)) / m, 3) : null,
        overBare: null,
        overBareFraction: null,
        failed: failures.length > 0 || values.length === 0,
        failures,
      };
      const vk = ok.map((r) => r[s]?.valkeyInstructionsPerRequest).filter((v) => v !== undefined);
      if (vk.length) {
        f.valkeyInstructionsPerRequest = round(median(vk), 0);
        f.valkeyRoundTripsPerRequest = round(median(ok.map((r) => r[s].valkeyRoundTripsPerRequest)), 3);
        f.valkeyCalls = ok[0][s].valkeyCalls;
      }
      ((doc[c.platform] ??= {})[c.variant] ??= {})[s] = f;
    }
  }
  for (const [platform, variants] of Object.entries(doc)) {
    for (const [variant, scenarios] of Object.entries(variants)) {
      for (const [s, f] of Object.entries(scenarios)) {
        const bare = doc[platform][BARE_OF(variant)]?.[s];
        if (bare?.instructionsPerRequest && f.instructionsPerRequest !== null) {
          f.overBare = f.instructionsPerRequest - bare.instructionsPerRequest;
          f.overBareFraction = round(f.overBare / bare.instructionsPerRequest, 3);
        }
      }
    }
  }
  if (valkeyDoc) {
    doc.valkey = {};
    for (const name of ['ours', 'floor']) {
      doc.valkey[name] = {};
      for (const s of ['fresh', 'replay']) doc.valkey[name][s] = valkeyDoc[name]?.[s]?.instructionsPerOp ?? null;
    }
    doc.valkey.ping = valkeyDoc.ping?.['round trip']?.instructionsPerOp ?? null;
  }

  const info = machine();
  console.log(
    `\nServer instructions per request, ${started.toISOString()}: Node ${info.node}, ${info.cpus} CPUs (${info.cpuModel}); ` +
      `library ${path.relative(ROOT, DIST) || '.'}\n${MAIN_THREAD ? 'main thread' : 'all threads'}, median of ${WINDOWS} windows of ` +
      `${REQUESTS} counted requests per scenario and run, after ${WARMUP} + ${Math.round(WARMUP / 2)} warm-up requests${COLLECT ? ' (full collections between)' : ''}, ` +
      `${CONNECTIONS} connections, medians of ${ROUNDS} runs (${PARALLEL} side by side); in brackets, over the bare route ` +
      '(bare-postgres for ours-postgres) of the same platform and scenario.\n',
  );
  const cols = [];
  for (const p of Object.keys(doc).filter((x) => x !== 'valkey')) for (const s of SCENARIOS_WANTED) cols.push([p, s]);
  const rows = [];
  for (const variant of WANTED) {
    const row = { variant };
    for (const [p, s] of cols) {
      const f = doc[p]?.[variant]?.[s];
      if (!f) continue;
      let text = f.failed && f.instructionsPerRequest === null ? 'FAIL' : k(f.instructionsPerRequest);
      if (f.overBare !== null && !variant.startsWith('bare'))
        text += ` (${f.overBare >= 0 ? '+' : ''}${k(f.overBare)}, ${pct(f.overBareFraction)})`;
      if (f.failed && f.instructionsPerRequest !== null) text += ' FAIL';
      row[`${p}/${s}`] = text;
    }
    rows.push(row);
  }
  console.log(
    table(rows, [
      { key: 'variant', title: 'variant', align: 'left' },
      ...cols.map(([p, s]) => ({ key: `${p}/${s}`, title: `${p} ${s}` })),
    ]),
  );

  // Per cell: runs, spread, Valkey's side.
  const detail = [];
  for (const [p, s] of cols) {
    for (const variant of WANTED) {
      const f = doc[p]?.[variant]?.[s];
      if (!f) continue;
      detail.push({
        cell: `${p} ${variant} ${s}`,
        median: f.instructionsPerRequest?.toLocaleString('en'),
        runs: f.runs.map((v) => v.toLocaleString('en')).join(' / '),
        spread: f.spread === null ? null : `${(f.spread * 100).toFixed(1)}%`,
        valkey: f.valkeyInstructionsPerRequest?.toLocaleString('en'),
        rt: f.valkeyRoundTripsPerRequest?.toFixed(2),
        status: f.failed ? `FAIL: ${f.failures.join('; ').slice(0, 200)}` : 'ok',
      });
    }
  }
  console.log(
    `\n${table(detail, [
      { key: 'cell', title: 'cell', align: 'left' },
      { key: 'median', title: 'median' },
      { key: 'runs', title: 'runs' },
      { key: 'spread', title: 'spread' },
      { key: 'valkey', title: 'valkey instr/req' },
      { key: 'rt', title: 'valkey rt/req' },
      { key: 'status', title: 'status', align: 'left' },
    ])}`,
  );
  if (doc.valkey) {
    const v = doc.valkey;
    console.log(
      `\nValkey's instructions (bench/valkey-instructions.js --ops ${VALKEY_OPS}, 32 callers on one connection): ` +
        `ours ${v.ours.fresh?.toLocaleString('en')} / ${v.ours.replay?.toLocaleString('en')}, floor ${v.floor.fresh?.toLocaleString('en')} / ` +
        `${v.floor.replay?.toLocaleString('en')} (fresh / replay), ping ${v.ping?.toLocaleString('en')}`,
    );
  }

  // Issue 21's targets.
  const lines = [];
  const fastify = doc.fastify;
  for (const [variant, targets] of Object.entries(FASTIFY_TARGETS)) {
    for (const [s, t] of Object.entries(targets)) {
      const f = fastify?.[variant]?.[s];
      if (f?.overBareFraction === null || f?.overBareFraction === undefined) continue;
      lines.push(
        `fastify ${variant} ${s}: ${pct(f.overBareFraction)} over bare, target <= ${pct(t)}: ${f.overBareFraction <= t ? 'meets' : 'misses'}`,
      );
    }
  }
  for (const [platform, variants] of Object.entries(doc)) {
    if (platform === 'valkey') continue;
    for (const [ours, rival] of Object.entries(RIVAL_OF)) {
      for (const s of SCENARIOS_WANTED) {
        const a = variants[ours]?.[s];
        const b = variants[rival]?.[s];
        if (a?.overBare === null || b?.overBare === null || !a || !b) continue;
        lines.push(
          `${platform} ${ours} ${s}: ${k(a.overBare)} over bare vs ${rival} ${k(b.overBare)}: ${a.overBare < b.overBare ? 'ahead' : 'NOT ahead'}`,
        );
      }
    }
    for (const s of SCENARIOS_WANTED) {
      const f = variants['ours-valkey']?.[s];
      if (f?.valkeyRoundTripsPerRequest === undefined) continue;
      const want = ROUND_TRIP_TARGETS[s];
      lines.push(
        `${platform} ours-valkey ${s}: ${f.valkeyRoundTripsPerRequest.toFixed(2)} Valkey round trips per request (${f.valkeyCalls}), target ${want}: ` +
          `${Math.abs(f.valkeyRoundTripsPerRequest - want) < 0.02 ? 'meets' : 'misses'}`,
      );
    }
  }
  if (doc.valkey) {
    for (const s of ['fresh', 'replay']) {
      const ratio = doc.valkey.ours[s] / doc.valkey.floor[s];
      lines.push(
        `valkey ${s}: ours ${ratio.toFixed(2)}x the floor's instructions, target <= ${VALKEY_TO_FLOOR_TARGET}x: ${ratio <= VALKEY_TO_FLOOR_TARGET ? 'meets' : 'misses'}`,
      );
    }
  }
  if (lines.length) console.log(`\nTargets (issue 21):\n  ${lines.join('\n  ')}`);
  if (opts.json) console.log(JSON.stringify(doc));
  process.exit(0);
}

main().catch((error) => {
  console.error(error.stack ?? error.message);
  killEverything();
  process.exit(1);
});
