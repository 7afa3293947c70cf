// Store benchmark (issue 5): claim+complete pairs per second of MemoryStore and ValkeyStore at 1 and
// 32 concurrent callers, beside valkey-benchmark's EVALSHA of a trivial script against the same
// private valkey-server in the same run. Round trips per operation come from INFO commandstats
// deltas, Valkey's CPU time per operation from INFO cpu deltas. ValkeyStore runs with ioredis as
// configured by default and with `enableAutoPipelining: true`.
//
//   npm run bench:store                  # build, then 3 rounds (about 2 minutes)
//   node bench/store.js --duration 1 --rounds 1         # quick
//   node bench/store.js --json           # the JSON document is the last line of stdout
'use strict';
const { execFile } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { DIST, ROOT, cli, positive, list, median, round, table, loadLibrary, machine } = require('./lib/common');
const { HOST, findBinary, startValkey, snapshot, perOp, describeCalls } = require('./lib/valkey');

const USAGE = `usage: node bench/store.js [options]   (run \`npm run build\` first; \`npm run bench:store\` does)

  --duration S    seconds per measurement (default 3; each follows a short warm-up)
  --rounds N      rounds; figures are medians (default 3)
  --evalsha-n N   requests of valkey-benchmark's EVALSHA run at 32 connections (default 200000;
                  the 1-connection run sends an eighth of that)
  --stores LIST   comma-separated, from: memory, valkey, valkey-autopipelining (default: all)
  --json          print one JSON document as the last line of stdout

BENCH_DIST=/path/to/dist measures another build of the library (default: dist/).`;

const opts = cli(USAGE, {
  duration: { type: 'string', default: '3' },
  rounds: { type: 'string', default: '3' },
  'evalsha-n': { type: 'string', default: '200000' },
  stores: { type: 'string', default: 'memory,valkey,valkey-autopipelining' },
  json: { type: 'boolean', default: false },
});
const DURATION = positive('duration', opts.duration);
const ROUNDS = Math.round(positive('rounds', opts.rounds));
const EVALSHA_N = Math.round(positive('evalsha-n', opts['evalsha-n']));
const WARMUP = Math.min(1, DURATION / 2);
const CALLERS = [1, 32];
const LEASE_MS = 10_000;
const TTL_MS = 86_400_000;
const REPLAY_KEYS = 5_000;
// DESIGN.md section 4 and issue 10: Valkey's CPU per fresh request (claim + complete) and per
// replay (a claim that finds a completed entry), and this process's socket writes per round trip.
const VALKEY_CPU_TARGET_US = 20;
const VALKEY_REPLAY_CPU_TARGET_US = 8;

/** Write-type system calls of this process so far (`syscw` of /proc/self/io), or null off Linux. */
function writeSyscalls() {
  try {
    const m = /^syscw:\s*(\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
const perDone = (before, after, done) =>
  before === null || after === null || done === 0 ? null : (after - before) / done;

const log = (...args) => console.error(...args);

let valkey;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    log(`\n${signal}: stopping valkey-server`);
    valkey?.kill();
    process.exit(130);
  });
}

function runValkeyBenchmark(bin, port, connections, n, sha) {
  return new Promise((resolve, reject) => {
    const args = ['-h', HOST, '-p', String(port), '-c', String(connections), '-n', String(n), '--csv'];
    execFile(bin, [...args, 'evalsha', sha, '0'], { timeout: 120_000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`valkey-benchmark failed: ${error.message}\n${stderr}`));
      const line = stdout.split('\n').find((l) => l.startsWith('"evalsha'));
      const rps = line ? Number(JSON.parse(`[${line}]`)[1]) : NaN;
      if (!Number.isFinite(rps)) return reject(new Error(`unexpected valkey-benchmark output:\n${stdout}`));
      resolve(rps);
    });
  });
}

async function evalshaRun(bin, connections, n, sha) {
  const before = await snapshot(valkey.admin);
  const rps = await runValkeyBenchmark(bin, valkey.port, connections, n, sha);
  const after = await snapshot(valkey.admin);
  const per = perOp(before, after, n);
  return { rps, cpuUs: per.cpuUs, execUs: per.execUs, roundTrips: per.roundTrips };
}

/**
 * `callers` concurrent loops of claim (tryInsert) then complete on fresh keys for `seconds`.
 * Answers `{ pairs, seconds, failures }`; every pair must be claimed, then Applied.
 */
async function pairs(lib, store, callers, seconds, nextKey, fingerprint, response) {
  const { IdempotencyEntry, FencedOutcome } = lib;
  let done = 0;
  let failures = 0;
  const completed = [];
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const key = nextKey();
      const claim = await store.tryInsert(key, new IdempotencyEntry(fingerprint, LEASE_MS));
      if (claim.kind !== 'claimed') {
        failures++;
        continue;
      }
      const outcome = await store.complete(key, claim.entry.complete(response), claim.fencingToken, TTL_MS);
      if (outcome === FencedOutcome.Applied) {
        done++;
        if (completed.length < REPLAY_KEYS) completed.push(key);
      } else failures++;
    }
  };
  const start = performance.now();
  const cpu = process.cpuUsage();
  const writes = writeSyscalls();
  await Promise.all(Array.from({ length: callers }, worker));
  const writesPer = perDone(writes, writeSyscalls(), done + failures);
  const used = process.cpuUsage(cpu);
  const cpuUs = done > 0 ? (used.user + used.system) / done : null;
  return { pairs: done, seconds: (performance.now() - start) / 1000, failures, completed, cpuUs, writesPer };
}

/** `callers` concurrent loops of claims on completed keys (what a replay costs the store). */
async function replays(lib, store, callers, seconds, keys, fingerprint) {
  const { IdempotencyEntry } = lib;
  let done = 0;
  let failures = 0;
  let i = 0;
  const end = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < end) {
      const key = keys[i++ % keys.length];
      const claim = await store.tryInsert(key, new IdempotencyEntry(fingerprint, LEASE_MS));
      if (claim.kind === 'exists' && claim.entry.isCompleted()) done++;
      else failures++;
    }
  };
  const start = performance.now();
  const cpu = process.cpuUsage();
  const writes = writeSyscalls();
  await Promise.all(Array.from({ length: callers }, worker));
  const writesPer = perDone(writes, writeSyscalls(), done + failures);
  const used = process.cpuUsage(cpu);
  const cpuUs = done > 0 ? (used.user + used.system) / done : null;
  return { ops: done, seconds: (performance.now() - start) / 1000, failures, cpuUs, writesPer };
}

function keySequence(lib) {
  const stem = randomUUID().slice(0, 23);
  let n = 0;
  return () => new lib.IdempotencyKey(`${stem}-${(n++).toString(16).padStart(12, '0')}`);
}

async function memoryRun(lib, callers, fingerprint, response) {
  const store = new lib.MemoryStore({ maxEntries: 50_000_000 });
  try {
    await pairs(lib, store, callers, WARMUP, keySequence(lib), fingerprint, response);
    const fresh = await pairs(lib, store, callers, DURATION, keySequence(lib), fingerprint, response);
    const replay = await replays(lib, store, callers, DURATION, fresh.completed, fingerprint);
    return {
      pairsPerSec: fresh.pairs / fresh.seconds,
      clientCpuUsPerPair: fresh.cpuUs,
      replaysPerSec: replay.ops / replay.seconds,
      clientCpuUsPerReplay: replay.cpuUs,
      failures: fresh.failures + replay.failures,
    };
  } finally {
    await store.close();
  }
}

async function valkeyRun(lib, callers, autoPipelining, fingerprint, response) {
  const Redis = require('ioredis');
  const client = new Redis({ host: HOST, port: valkey.port, enableAutoPipelining: autoPipelining });
  const store = new lib.ValkeyStore(client, {
    prefix: 'bench:',
    commandTimeoutMs: 2_000,
    checkServerOnInit: false,
    onWarning: () => undefined,
  });
  try {
    await valkey.admin.flushall();
    await pairs(lib, store, callers, WARMUP, keySequence(lib), fingerprint, response);
    let before = await snapshot(valkey.admin);
    const fresh = await pairs(lib, store, callers, DURATION, keySequence(lib), fingerprint, response);
    let after = await snapshot(valkey.admin);
    const freshPer = perOp(before, after, fresh.pairs + fresh.failures);
    before = await snapshot(valkey.admin);
    const replay = await replays(lib, store, callers, DURATION, fresh.completed, fingerprint);
    after = await snapshot(valkey.admin);
    const replayPer = perOp(before, after, replay.ops + replay.failures);
    return {
      pairsPerSec: fresh.pairs / fresh.seconds,
      clientCpuUsPerPair: fresh.cpuUs,
      clientCpuUsPerReplay: replay.cpuUs,
      writesPerPair: fresh.writesPer,
      writesPerReplay: replay.writesPer,
      roundTripsPerPair: freshPer.roundTrips,
      valkeyCpuUsPerPair: freshPer.cpuUs,
      valkeyExecUsPerPair: freshPer.execUs,
      callsPerPair: freshPer.calls,
      replaysPerSec: replay.ops / replay.seconds,
      roundTripsPerReplay: replayPer.roundTrips,
      valkeyCpuUsPerReplay: replayPer.cpuUs,
      valkeyExecUsPerReplay: replayPer.execUs,
      callsPerReplay: replayPer.calls,
      failures: fresh.failures + replay.failures,
    };
  } finally {
    await client.quit().catch(() => client.disconnect());
  }
}

function medianOf(runs, key, digits = 0) {
  return round(median(runs.map((r) => r[key])), digits);
}

function medianCalls(runs, key) {
  const by = {};
  for (const r of runs) for (const [name, n] of Object.entries(r[key] ?? {})) (by[name] ??= []).push(n);
  return Object.fromEntries(Object.entries(by).map(([name, v]) => [name, round(median(v), 3)]));
}

async function main() {
  const started = new Date();
  const { lib, reason } = loadLibrary([
    'MemoryStore',
    'ValkeyStore',
    'IdempotencyKey',
    'IdempotencyEntry',
    'CachedResponse',
    'FencedOutcome',
    'DefaultFingerprintStrategy',
  ]);
  if (reason) throw new Error(reason);
  const benchBin = findBinary('valkey-benchmark') ?? findBinary('redis-benchmark');
  if (!benchBin) throw new Error('valkey-benchmark not found on PATH (it ships with valkey-server)');

  valkey = await startValkey();
  log(`valkey-server ${valkey.version ?? '?'} on ${valkey.url} (pid ${valkey.pid})`);
  const sha = await valkey.admin.script('LOAD', 'return 1');

  const body = JSON.stringify({ item: 'widget', qty: 2, note: 'bench' });
  const fingerprint = new lib.DefaultFingerprintStrategy().compute('POST /orders', body);
  const response = new lib.CachedResponse({
    statusCode: 201,
    body,
    metadata: { 'content-type': 'application/json; charset=utf-8' },
  });

  const wanted = list('stores', opts.stores, ['memory', 'valkey', 'valkey-autopipelining']);
  const configs = [
    { id: 'memory', store: 'MemoryStore', client: '-' },
    { id: 'valkey', store: 'ValkeyStore', client: 'ioredis', autoPipelining: false },
    { id: 'valkey-autopipelining', store: 'ValkeyStore', client: 'ioredis, autopipelining', autoPipelining: true },
  ].filter((config) => wanted.includes(config.id));
  const runs = {};
  const evalsha = { 1: [], 32: [] };
  for (let r = 1; r <= ROUNDS; r++) {
    for (const c of [32, 1]) {
      const n = c === 32 ? EVALSHA_N : Math.max(1000, Math.round(EVALSHA_N / 8));
      const x = await evalshaRun(benchBin, c, n, sha);
      evalsha[c].push(x);
      log(
        `round ${r}/${ROUNDS} valkey-benchmark EVALSHA c=${c}: ${Math.round(x.rps).toLocaleString('en')}/s, ${x.cpuUs.toFixed(1)} us Valkey CPU each`,
      );
    }
    for (const config of configs) {
      for (const callers of CALLERS) {
        const x =
          config.store === 'MemoryStore'
            ? await memoryRun(lib, callers, fingerprint, response)
            : await valkeyRun(lib, callers, config.autoPipelining, fingerprint, response);
        (runs[`${config.id}/${callers}`] ??= []).push(x);
        const vk =
          x.roundTripsPerPair === undefined
            ? ''
            : `, ${x.roundTripsPerPair.toFixed(2)} rt and ${x.valkeyCpuUsPerPair.toFixed(1)} us Valkey CPU per pair; ` +
              `replay ${x.roundTripsPerReplay.toFixed(2)} rt, ${x.valkeyCpuUsPerReplay.toFixed(1)} us`;
        log(
          `round ${r}/${ROUNDS} ${config.store} (${config.client}) callers=${callers}: ` +
            `${Math.round(x.pairsPerSec).toLocaleString('en')} pairs/s, ${Math.round(x.replaysPerSec).toLocaleString('en')} replays/s${vk}` +
            `${x.failures ? `  FAILURES: ${x.failures}` : ''}`,
        );
      }
    }
  }

  const evalshaDoc = Object.fromEntries(
    Object.entries(evalsha).map(([c, xs]) => [
      `c${c}`,
      {
        rps: medianOf(xs, 'rps'),
        valkeyCpuUsPerCall: medianOf(xs, 'cpuUs', 1),
        valkeyExecUsPerCall: medianOf(xs, 'execUs', 1),
        roundTrips: medianOf(xs, 'roundTrips', 3),
      },
    ]),
  );
  const evalshaRef = evalshaDoc.c32.rps;
  const doc = {
    date: started.toISOString(),
    machine: machine(),
    valkey: valkey.version,
    rounds: ROUNDS,
    durationSeconds: DURATION,
    library: path.relative(ROOT, DIST) || '.',
    evalsha: evalshaDoc,
    stores: {},
  };
  const rows = [];
  for (const config of configs) {
    for (const callers of CALLERS) {
      const xs = runs[`${config.id}/${callers}`];
      const pairsPerSec = medianOf(xs, 'pairsPerSec');
      const figures = {
        store: config.store,
        client: config.client,
        callers,
        pairsPerSec,
        scriptsPerSec: config.store === 'ValkeyStore' ? pairsPerSec * 2 : null,
        pairsToEvalsha: config.store === 'ValkeyStore' ? round(pairsPerSec / evalshaRef, 3) : null,
        replaysPerSec: medianOf(xs, 'replaysPerSec'),
        clientCpuUsPerPair: medianOf(xs, 'clientCpuUsPerPair', 1),
        clientCpuUsPerReplay: medianOf(xs, 'clientCpuUsPerReplay', 1),
        writesPerPair: config.store === 'ValkeyStore' ? medianOf(xs, 'writesPerPair', 2) : null,
        writesPerReplay: config.store === 'ValkeyStore' ? medianOf(xs, 'writesPerReplay', 2) : null,
        roundTripsPerPair: medianOf(xs, 'roundTripsPerPair', 3),
        roundTripsPerReplay: medianOf(xs, 'roundTripsPerReplay', 3),
        valkeyCpuUsPerPair: medianOf(xs, 'valkeyCpuUsPerPair', 1),
        valkeyCpuUsPerReplay: medianOf(xs, 'valkeyCpuUsPerReplay', 1),
        valkeyExecUsPerPair: medianOf(xs, 'valkeyExecUsPerPair', 1),
        valkeyExecUsPerReplay: medianOf(xs, 'valkeyExecUsPerReplay', 1),
        callsPerPair: config.store === 'ValkeyStore' ? medianCalls(xs, 'callsPerPair') : null,
        callsPerReplay: config.store === 'ValkeyStore' ? medianCalls(xs, 'callsPerReplay') : null,
        failures: xs.reduce((a, x) => a + x.failures, 0),
      };
      (doc.stores[config.id] ??= {})[`c${callers}`] = figures;
      rows.push({
        store: config.store,
        client: config.client,
        callers,
        pairs: pairsPerSec?.toLocaleString('en'),
        ratio: config.store === 'ValkeyStore' ? figures.pairsToEvalsha?.toFixed(2) : null,
        ccpu: figures.clientCpuUsPerPair?.toFixed(1),
        rccpu: figures.clientCpuUsPerReplay?.toFixed(1),
        writes: figures.writesPerPair?.toFixed(2),
        rwrites: figures.writesPerReplay?.toFixed(2),
        rt: figures.roundTripsPerPair?.toFixed(2),
        cpu: figures.valkeyCpuUsPerPair?.toFixed(1),
        exec: figures.valkeyExecUsPerPair?.toFixed(1),
        replays: figures.replaysPerSec?.toLocaleString('en'),
        rrt: figures.roundTripsPerReplay?.toFixed(2),
        rcpu: figures.valkeyCpuUsPerReplay?.toFixed(1),
        rexec: figures.valkeyExecUsPerReplay?.toFixed(1),
        failures: figures.failures,
      });
    }
  }
  for (const [c, x] of Object.entries(evalshaDoc)) {
    rows.push({
      store: 'valkey-benchmark',
      client: `EVALSHA 'return 1'`,
      callers: Number(c.slice(1)),
      pairs: null,
      ratio: round(x.rps / evalshaRef, 2)?.toFixed(2),
      rt: null,
      cpu: null,
      replays: null,
      rrt: null,
      rcpu: null,
      failures: null,
      evalsha: `${x.rps.toLocaleString('en')} calls/s, Valkey CPU ${x.valkeyCpuUsPerCall} us each (${x.valkeyExecUsPerCall} us in the script)`,
    });
  }
  const info = machine();
  console.log(
    `\nStore benchmark, ${started.toISOString()}: Node ${info.node}, valkey-server ${valkey.version}, ` +
      `${info.cpus} CPUs (${info.cpuModel})\n${ROUNDS} rounds x ${DURATION} s per figure, medians; ` +
      'the client (this process) shares the cores with valkey-server.\n',
  );
  console.log(
    table(rows, [
      { key: 'store', title: 'store', align: 'left' },
      { key: 'client', title: 'client', align: 'left' },
      { key: 'callers', title: 'callers' },
      { key: 'pairs', title: 'claim+complete pairs/s' },
      { key: 'ratio', title: 'x EVALSHA c32' },
      { key: 'ccpu', title: 'Node CPU us/pair' },
      { key: 'writes', title: 'writes/pair' },
      { key: 'rt', title: 'rt/pair' },
      { key: 'cpu', title: 'Valkey CPU us/pair' },
      { key: 'exec', title: 'in scripts' },
      { key: 'replays', title: 'replays/s' },
      { key: 'rccpu', title: 'Node CPU us/replay' },
      { key: 'rwrites', title: 'writes/replay' },
      { key: 'rrt', title: 'rt/replay' },
      { key: 'rcpu', title: 'Valkey CPU us/replay' },
      { key: 'rexec', title: 'in scripts' },
      { key: 'failures', title: 'failures' },
      { key: 'evalsha', title: 'valkey-benchmark', align: 'left' },
    ]),
  );

  const pct = (a, b) => `${(((a - b) / b) * 100).toFixed(0)}%`;
  const lines = [];
  const plain = doc.stores.valkey;
  const auto = doc.stores['valkey-autopipelining'];
  const valkeyRuns = [plain, auto].filter(Boolean).map((x) => x.c32);
  if (valkeyRuns.length > 0) {
    const best = valkeyRuns.reduce((a, b) => (b.pairsPerSec > a.pairsPerSec ? b : a));
    lines.push(
      `ValkeyStore claim+complete at 32 callers (${best.client}): ${best.pairsPerSec.toLocaleString('en')} pairs/s = ` +
        `${best.pairsToEvalsha.toFixed(2)} x EVALSHA (${evalshaRef.toLocaleString('en')}/s); ` +
        `as scripts: ${(best.scriptsPerSec / evalshaRef).toFixed(2)} x. Target "within 2x": ` +
        `pairs ${best.pairsToEvalsha >= 0.5 ? 'meets' : 'misses'}, scripts ${best.scriptsPerSec / evalshaRef >= 0.5 ? 'meets' : 'misses'}`,
      `the Node side (this process: ioredis and the store) used ${best.clientCpuUsPerPair} us CPU per pair at 32 callers, ` +
        `a ceiling of about ${Math.round(1e6 / best.clientCpuUsPerPair).toLocaleString('en')} pairs/s on one core`,
    );
  }
  if (plain) {
    lines.push(
      `round trips: ${plain.c32.roundTripsPerPair} per fresh pair (${describeCalls(plain.c32.callsPerPair)}), ` +
        `${plain.c32.roundTripsPerReplay} per replay (${describeCalls(plain.c32.callsPerReplay)}); targets 2 and 1`,
      `Valkey CPU per fresh pair: ${plain.c32.valkeyCpuUsPerPair} us at 32 callers, ${plain.c1.valkeyCpuUsPerPair} us at 1 ` +
        `(target <= ${VALKEY_CPU_TARGET_US} us: ${plain.c32.valkeyCpuUsPerPair <= VALKEY_CPU_TARGET_US ? 'meets' : 'misses'}); ` +
        `per replay ${plain.c32.valkeyCpuUsPerReplay} us at 32, ${plain.c1.valkeyCpuUsPerReplay} us at 1 ` +
        `(target <= ${VALKEY_REPLAY_CPU_TARGET_US} us: ` +
        `${plain.c32.valkeyCpuUsPerReplay <= VALKEY_REPLAY_CPU_TARGET_US ? 'meets' : 'misses'}); ` +
        `trivial EVALSHA ${evalshaDoc.c32.valkeyCpuUsPerCall} us at 32, ${evalshaDoc.c1.valkeyCpuUsPerCall} us at 1. ` +
        `Inside the scripts: ${plain.c32.valkeyExecUsPerPair} us per pair, ${plain.c32.valkeyExecUsPerReplay} us per replay ` +
        `(${evalshaDoc.c32.valkeyExecUsPerCall} us for the trivial one); the rest is network I/O per round trip`,
      `socket writes of this process: ${plain.c1.writesPerPair ?? '-'} per pair and ${plain.c1.writesPerReplay ?? '-'} ` +
        `per replay at 1 caller, ${plain.c32.writesPerPair ?? '-'} / ${plain.c32.writesPerReplay ?? '-'} at 32 ` +
        '(target: at most one per round trip, 2 / 1)',
    );
  }
  if (plain && auto) {
    lines.push(
      `ioredis enableAutoPipelining: pairs/s ${pct(auto.c32.pairsPerSec, plain.c32.pairsPerSec)} at 32 callers, ` +
        `${pct(auto.c1.pairsPerSec, plain.c1.pairsPerSec)} at 1; Valkey CPU per pair ${plain.c32.valkeyCpuUsPerPair} -> ` +
        `${auto.c32.valkeyCpuUsPerPair} us at 32; Node CPU per pair ${plain.c32.clientCpuUsPerPair} -> ` +
        `${auto.c32.clientCpuUsPerPair} us at 32`,
    );
  }
  console.log(`\nTargets (DESIGN.md section 4, issues 5 and 10):\n  ${lines.join('\n  ')}`);

  await valkey.stop();
  if (opts.json) console.log(JSON.stringify(doc));
}

main().catch((error) => {
  console.error(error.stack ?? error.message);
  valkey?.kill();
  process.exit(1);
});
