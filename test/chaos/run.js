// The chaos run (DESIGN.md 7.2): app processes on Express and Fastify over a Valkey primary and
// replica behind the harness's TCP proxy (or a MemoryStore, or a PostgreSQL with PostgresStore),
// a seeded nemesis, a retrying client fleet, and a checker over the execution ledger, every
// response and (Postgres) the committed effect rows. One summary line per
// scenario; the exit code is 0 only when no scenario has a violation or a harness error.
//
//   npm run chaos                                   # build, then the long profile (about 10 min)
//   node test/chaos/run.js --profile short          # every scenario, small (70-95 s)
//   node test/chaos/run.js --seed 42 --scenarios valkey-pause-store,valkey-proxy
//   node test/chaos/run.js --break separate-stores  # a broken setup: must find violations
//
// Run `npm run build` first: the apps load the package from dist/ (CHAOS_DIST=/path/to/dist for
// another build).
'use strict';
const { createHmac } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { SCENARIOS, PROFILES } = require('./profiles');
const { Random, freshSeed } = require('./random');
const procs = require('./procs');
const { ValkeyPair, freePort, findBinary } = require('./valkey');
const { startProxy } = require('./proxy');
const { PostgresServer, postgresUnavailable, readEffects, EFFECTS_DDL } = require('./postgres');
const { Apps } = require('./apps');
const { EventLog } = require('./events');
const { Fleet } = require('./fleet');
const { runNemesis } = require('./nemesis');
const { readLedgers } = require('./ledger');
const { check } = require('./checker');
const { scenarioReport } = require('./report');

const ROOT = path.resolve(__dirname, '..', '..');
const DIST = process.env.CHAOS_DIST ? path.resolve(process.env.CHAOS_DIST) : path.join(ROOT, 'dist');

// Deliberately broken settings, each with the scenario it shows best on.
const BREAKS = {
  'separate-stores': {
    describe: 'each app process gets its own MemoryStore while the fleet spreads keys over all of them',
    scenarios: ['valkey-kill'],
  },
  'no-fencing': {
    describe: 'a completion whose claim no longer holds the key (taken over, or expired) is reported as Applied',
    scenarios: ['valkey-pause-app'],
  },
  'pool-write': {
    describe: 'the Postgres handler writes its effect row through the pool, outside its transaction',
    scenarios: ['pg-kill'],
  },
};

const USAGE = `usage: node test/chaos/run.js [options]   (npm run build first)

  --profile short|long   short: every scenario, small (70-95 s); long: about 12 min (default short)
  --seed N               the run's seed (default: random); printed first either way
  --scenarios a,b        from: ${Object.keys(SCENARIOS).join(', ')}
  --break NAME           a deliberately broken setting, to show the checker catches it:
${Object.entries(BREAKS)
  .map(([name, b]) => `                           ${name}: ${b.describe}`)
  .join('\n')}
                         (default scenarios: ${Object.entries(BREAKS)
                           .map(([name, b]) => `${name} -> ${b.scenarios.join(',')}`)
                           .join('; ')})
  --json                 print one JSON document as the last line of stdout
  --keep                 keep the run's temp dir (ledgers, nemesis logs, app and server logs)

Exit code: 0 when every scenario has zero violations, 1 when some has violations, 2 on a harness
error or bad arguments.`;

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        profile: { type: 'string', default: 'short' },
        seed: { type: 'string' },
        scenarios: { type: 'string' },
        break: { type: 'string' },
        json: { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    console.error(`${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const bad = (message) => {
    console.error(`${message}\n\n${USAGE}`);
    process.exit(2);
  };
  if (!PROFILES[values.profile]) bad(`--profile: unknown ${JSON.stringify(values.profile)}`);
  if (values.seed !== undefined && !/^\d{1,10}$/.test(values.seed)) bad('--seed must be an integer (0 to 4294967295)');
  if (values.break !== undefined && !BREAKS[values.break]) bad(`--break: unknown ${JSON.stringify(values.break)}`);
  const scenarios = values.scenarios
    ? values.scenarios
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : values.break
      ? BREAKS[values.break].scenarios
      : Object.keys(SCENARIOS);
  for (const s of scenarios) if (!SCENARIOS[s]) bad(`--scenarios: unknown ${JSON.stringify(s)}`);
  const seed = values.seed === undefined ? freshSeed() : Number(values.seed) >>> 0;
  return { ...values, scenarios, seed };
}

const log = (...args) => console.error(...args);

/** Matches the library's events (keys appear as keyHash only) to the run's keys. */
function attachKeys(records, keys, secret) {
  const byHash = new Map();
  for (const key of keys) byHash.set(createHmac('sha256', secret).update(key).digest('hex').slice(0, 12), key);
  for (const r of records) if (r.type === 'event') r.key = byHash.get(r.keyHash) ?? null;
}

async function runScenario(name, options, runDir) {
  const def = SCENARIOS[name];
  const profile = PROFILES[options.profile];
  const rng = new Random(options.seed).fork(`scenario-${name}`);
  const dir = path.join(runDir, name);
  fs.mkdirSync(dir, { recursive: true });
  const events = new EventLog(path.join(dir, 'nemesis.jsonl'));
  const keyHashSecret = `chaos-key-hash-${options.seed}-${name}`;
  const scenario = {
    name,
    store: def.store,
    leaseMs: profile.leaseMs,
    commandTimeoutMs: profile.commandTimeoutMs,
    durable: def.durability !== undefined,
  };
  const started = Date.now();
  let pair;
  let proxy;
  let postgres;
  let effects;
  let apps;
  let fleet;
  let t0 = started;
  let faults;
  // Wall time of each phase, for the log: start-up, load with faults, final reads, shutdown.
  const phases = {};
  const phase = (label, since) => {
    phases[label] = Date.now() - since;
    return Date.now();
  };
  let harnessError;
  try {
    if (def.store === 'valkey') {
      pair = await ValkeyPair.start(dir);
      const proxyRng = rng.fork('proxy');
      proxy = await startProxy(pair.primary.port, () => proxyRng.next());
    }
    if (def.store === 'postgres') postgres = await startPostgres(name);
    const slots = [];
    for (const app of def.apps.slice(0, profile.maxApps)) slots.push({ ...app, port: await freePort() });
    apps = new Apps({
      dir,
      log: events,
      slots,
      appConfig: {
        store: def.store,
        proxyPort: proxy?.port ?? null,
        postgresUrl: postgres?.connectionString ?? null,
        leaseMs: profile.leaseMs,
        waitMs: def.waitMs ?? 0,
        commandTimeoutMs: profile.commandTimeoutMs,
        durability: def.durability ?? null,
        ledgerDir: dir,
        dist: DIST,
        break: options.break ?? null,
        keyHashSecret,
      },
    });
    await apps.startAll();

    t0 = phase('startup', started);
    const loadDeadline = t0 + profile.loadMs;
    let nemesisDone = false;
    fleet = new Fleet({ rng: rng.fork('fleet'), instances: () => apps.instances, limits: profile.fleet });
    const ctx = { apps, pair, proxy, postgres, fleet, log: events, profile, scenario: def };
    const nemesis = runNemesis(ctx, rng.fork('nemesis'), def.nemeses, loadDeadline).finally(() => {
      nemesisDone = true;
    });
    const [faultsRun, loaded] = await Promise.allSettled([
      nemesis,
      fleet.load(() => Date.now() < loadDeadline || !nemesisDone),
    ]);
    if (faultsRun.status === 'rejected') throw faultsRun.reason;
    if (loaded.status === 'rejected') throw loaded.reason;
    faults = faultsRun.value;
    let mark = phase('load', t0);
    // Every fault has healed: a final read of each answered operation.
    await fleet.verify();
    mark = phase('verify', mark);
    await apps.stopAll();
    phase('shutdown', mark);
  } catch (error) {
    harnessError = error?.stack ?? String(error);
  } finally {
    await apps?.stopAll().catch(() => undefined);
    await proxy?.close().catch(() => undefined);
    await pair?.stop().catch(() => undefined);
    // What the database committed, read once every app is gone (nothing can commit any more).
    if (postgres?.alive) {
      try {
        effects = await readEffects(postgres);
      } catch (error) {
        harnessError ??= `could not read the effects table: ${error?.stack ?? error}`;
      }
    }
    await postgres?.stop().catch(() => undefined);
  }
  if (fleet === undefined) return { scenario: name, t0, error: harnessError, durationMs: Date.now() - started };

  // Judged even after a harness error: what was recorded up to it still counts.
  const { records, torn } = readLedgers(dir);
  attachKeys(
    records,
    fleet.ops.map((o) => o.key),
    keyHashSecret,
  );
  if (def.store === 'postgres' && effects === undefined) {
    harnessError ??= 'the effects table was not read';
  }
  const result = check({
    scenario,
    ops: fleet.ops,
    history: fleet.history,
    ledger: records,
    nemesis: events.events,
    ...(def.store === 'postgres' ? { effects: effects ?? [] } : {}),
  });
  if (torn > 0) result.anomalies.push(`${torn} torn ledger line(s) skipped (a process killed mid-write)`);
  // A scenario in which nothing succeeded proves nothing: that is a harness failure, not a pass.
  if (harnessError === undefined && result.counts.opsOk === 0) {
    harnessError = 'no operation got a 2xx: the harness did not exercise the library';
  }
  return { ...result, t0, faults, phases, durationMs: Date.now() - started, error: harnessError };
}

/**
 * The Postgres scenarios' database: a fresh server, the effects table, and the store's own tables
 * (PostgresStore.migrate(), once, before any app starts).
 */
async function startPostgres(name) {
  const server = await PostgresServer.start(name);
  await server.query(EFFECTS_DDL);
  const lib = require(DIST);
  if (typeof lib.PostgresStore !== 'function') {
    throw new Error(`${DIST} exports no PostgresStore: build a branch that has it (lib/stores/postgres.store.ts)`);
  }
  const { Pool } = require('pg');
  const pool = new Pool({ connectionString: server.connectionString, max: 2 });
  pool.on('error', () => undefined);
  try {
    await new lib.PostgresStore(pool).migrate();
  } finally {
    await pool.end().catch(() => undefined);
  }
  return server;
}

/**
 * Leaves the Postgres scenarios out, with a notice, when PostgreSQL cannot run here; with
 * POSTGRES_REQUIRED=1 (CI) that is an error instead (exit 2), so CI never passes by skipping.
 */
function dropPostgresIfUnavailable(options) {
  const wanted = options.scenarios.filter((s) => SCENARIOS[s].store === 'postgres');
  const why = wanted.length > 0 ? postgresUnavailable() : undefined;
  if (why === undefined) return;
  if (process.env.POSTGRES_REQUIRED === '1') {
    console.error(`chaos: ${why}, but POSTGRES_REQUIRED=1: install Debian's postgresql (.ci/install-servers.sh)`);
    process.exit(2);
  }
  const bar = '!'.repeat(78);
  console.error(
    `${bar}\n!! chaos: SKIPPING ${wanted.join(', ')}: ${why}.\n` +
      `!! These scenarios did NOT run. Set POSTGRES_REQUIRED=1 to make this an error.\n${bar}`,
  );
  options.scenarios = options.scenarios.filter((s) => !wanted.includes(s));
  options.skipped = wanted;
}

async function main() {
  const options = parseOptions();
  dropPostgresIfUnavailable(options);
  // The seed first, always: a failing run can be repeated from it.
  console.log(
    `chaos: seed ${options.seed}, profile ${options.profile}, scenarios ${options.scenarios.join(',')}` +
      (options.break ? `, BREAK ${options.break}` : ''),
  );
  if (!fs.existsSync(path.join(DIST, 'index.js'))) {
    console.error(`chaos: ${DIST} has no build: run npm run build first`);
    process.exit(2);
  }
  if (options.scenarios.some((s) => SCENARIOS[s].store === 'valkey') && !findBinary()) {
    console.error('chaos: valkey-server (or redis-server) is not on PATH: see .ci/install-servers.sh');
    process.exit(2);
  }
  procs.installCleanup();
  procs.keep(options.keep);
  const runDir = procs.tempDir('nestjs-idempotent-chaos-');
  if (options.keep) log(`chaos: keeping ${runDir}`);
  const started = Date.now();
  const results = [];
  for (const name of options.scenarios) {
    log(`chaos: ${name}: ${SCENARIOS[name].describe}`);
    const result = await runScenario(name, options, runDir);
    results.push(result);
    const s = (ms) => `${((ms ?? 0) / 1_000).toFixed(1)} s`;
    const p = result.phases ?? {};
    log(
      `chaos: ${name}: ${s(result.durationMs)} (start-up ${s(p.startup)}, load ${s(p.load)}, ` +
        `final reads ${s(p.verify)}, shutdown ${s(p.shutdown)}), ${result.faults ?? 0} fault(s)`,
    );
    console.log(scenarioReport(result));
  }
  procs.removeDir(runDir);
  const violations = results.reduce((n, r) => n + (r.violations?.length ?? 0), 0);
  const errors = results.filter((r) => r.error).length;
  const seconds = ((Date.now() - started) / 1_000).toFixed(1);
  console.log(
    `chaos: ${results.length} scenario(s), ${violations} violation(s), ${errors} harness error(s), ` +
      `${seconds} s (seed ${options.seed}, profile ${options.profile}${options.break ? `, break ${options.break}` : ''})` +
      (options.skipped ? `; SKIPPED (no PostgreSQL): ${options.skipped.join(', ')}` : ''),
  );
  if (options.json) {
    console.log(
      JSON.stringify({
        seed: options.seed,
        profile: options.profile,
        break: options.break ?? null,
        skipped: options.skipped ?? [],
        durationMs: Date.now() - started,
        violations,
        errors,
        scenarios: results,
      }),
    );
  }
  process.exitCode = errors > 0 ? 2 : violations > 0 ? 1 : 0;
}

main().catch((error) => {
  console.error(`chaos: harness error: ${error?.stack ?? error}`);
  process.exitCode = 2;
});
