// Waiting instead of 409 (`waitMs`, DESIGN.md 6.2), measured: how long after a key's first run
// stores its result its waiters get the replay, and what waiting costs Valkey.
//
//   npm run bench:waiters                       # memory, Valkey standalone; 20 rounds
//   npm run bench:waiters -- --rounds 50 --waiters 10 --json
'use strict';
const path = require('node:path');
const { DIST, cli, list, positive, round, table, machine, sleep } = require('./lib/common');
const { describeCalls, perOp, startValkey, snapshot } = require('./lib/valkey');

const USAGE = `usage: node bench/waiters.js [options]   (run \`npm run build\` first; \`npm run bench:waiters\` does)

  --stores LIST     memory, valkey (default: both)
  --rounds N        keys measured, one after another (default 20)
  --waiters N       requests waiting on each key (default 10)
  --hold MS         how long each key's first run takes (default 300)
  --idle S          seconds the waiters wait while Valkey's commands are counted (default 3)
  --json            print one JSON document as the last line of stdout`;

const args = cli(USAGE, {
  stores: { type: 'string', default: 'memory,valkey' },
  rounds: { type: 'string', default: '20' },
  waiters: { type: 'string', default: '10' },
  hold: { type: 'string', default: '300' },
  idle: { type: 'string', default: '3' },
  json: { type: 'boolean', default: false },
});
const stores = list('stores', args.stores, ['memory', 'valkey']);
const rounds = positive('rounds', args.rounds);
const waiters = positive('waiters', args.waiters);
const holdMs = positive('hold', args.hold);
const idleS = positive('idle', args.idle);

const lib = require(DIST);
const { IdempotencyService } = require(path.join(DIST, 'service/idempotency.service'));
const { DEFAULT_IDEMPOTENCY_OPTIONS } = require(path.join(DIST, 'idempotency.providers'));

function percentile(values, p) {
  const xs = [...values].sort((a, b) => a - b);
  if (xs.length === 0) return null;
  return xs[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
}

/** Delays (ms) from a first run's stored result to each of its waiters' replays. */
async function replayDelays(service) {
  const delays = [];
  let replays = 0;
  for (let r = 0; r < rounds; r++) {
    const key = `waiters-${process.pid}-${r}-${Date.now()}`;
    let storedAt = 0;
    const first = service
      .run(key, () => sleep(holdMs).then(() => ({ round: r })), { waitMs: 0 })
      .then(() => (storedAt = performance.now()));
    await sleep(20); // the first run holds the key
    const waiting = Array.from({ length: waiters }, () =>
      service
        .run(key, () => ({ ran: 'twice' }), { waitMs: 10 * holdMs + 5_000 })
        .then((result) => {
          if (!result.replayed) throw new Error('a waiter ran the work: at most once broken');
          replays++;
          return performance.now();
        }),
    );
    const done = await Promise.all(waiting);
    await first;
    for (const at of done) delays.push(Math.max(0, at - storedAt));
  }
  return { delays, replays };
}

/** Valkey commands per second of waiting per waiter, while `waiters` wait on one key for `idleS`. */
async function idleCost(service, valkey) {
  const key = `idle-${process.pid}-${Date.now()}`;
  const holdFor = (idleS + 1.5) * 1000;
  const first = service.run(key, () => sleep(holdFor).then(() => 'done'), { waitMs: 0, leaseMs: 60_000 });
  await sleep(50);
  const waiting = Array.from({ length: waiters }, () => service.run(key, () => 'never', { waitMs: holdFor + 10_000 }));
  await sleep(300); // every waiter has claimed once and is waiting
  const before = await snapshot(valkey.admin);
  await sleep(idleS * 1000);
  const after = await snapshot(valkey.admin);
  await Promise.all([first, ...waiting]);
  // Commands the clients sent (script calls and plain commands, not what the scripts ran inside),
  // per waiter and second of waiting; the first run's lease renewals are among them.
  const waitingSeconds = waiters * idleS;
  const figures = perOp(before, after, waitingSeconds);
  return { perWaiterSecond: figures.roundTrips, calls: describeCalls(figures.calls) };
}

async function main() {
  console.error(`waiters benchmark: ${rounds} rounds x ${waiters} waiters, first run ${holdMs} ms`);
  const results = [];
  let valkey;
  try {
    for (const kind of stores) {
      let store;
      let client;
      if (kind === 'memory') store = new lib.MemoryStore();
      else {
        valkey ??= await startValkey();
        const Redis = require('ioredis');
        client = new Redis({ host: valkey.host, port: valkey.port });
        store = new lib.ValkeyStore(client, { prefix: `bw${process.pid}:`, checkServerOnInit: false });
      }
      const service = new IdempotencyService(store, { ...DEFAULT_IDEMPOTENCY_OPTIONS, telemetry: false });
      // The idle cost first: later rounds' unsubscriptions would land in its window.
      const idle = valkey && kind === 'valkey' ? await idleCost(service, valkey) : undefined;
      const { delays, replays } = await replayDelays(service);
      const row = {
        store: kind,
        waiters: replays,
        p50: round(percentile(delays, 50), 1),
        p99: round(percentile(delays, 99), 1),
        max: round(Math.max(...delays), 1),
      };
      if (idle !== undefined) Object.assign(row, { idle });
      results.push(row);
      await store.close();
      client?.disconnect();
    }
  } finally {
    await valkey?.stop();
  }
  const m = machine();
  console.log(`\nWaiters, ${new Date().toISOString()}: Node ${m.node}, ${m.cpus} CPUs (${m.cpuModel})`);
  console.log(
    `${rounds} keys, one after another; on each, ${waiters} requests wait (waitMs) while the first run takes ${holdMs} ms.\n`,
  );
  console.log(
    table(
      results.map((r) => ({ ...r, cost: r.idle ? round(r.idle.perWaiterSecond, 2) : undefined })),
      [
        { key: 'store', title: 'store', align: 'left' },
        { key: 'waiters', title: 'replays' },
        { key: 'p50', title: 'delay p50 ms' },
        { key: 'p99', title: 'delay p99 ms' },
        { key: 'max', title: 'max ms' },
        { key: 'cost', title: 'valkey cmds / waiter / s' },
      ],
    ),
  );
  console.log('\nTargets (issue 11): delay p99 < 50 ms; at most 1 Valkey command per waiting second per waiter.');
  for (const r of results) {
    console.log(`  ${r.store}: p99 ${r.p99} ms: ${r.p99 !== null && r.p99 < 50 ? 'met' : 'misses'}`);
    if (r.idle) {
      const met = r.idle.perWaiterSecond <= 1 ? 'met' : 'misses';
      console.log(
        `  ${r.store}: ${round(r.idle.perWaiterSecond, 2)} commands per waiting second per waiter (${r.idle.calls}): ${met}`,
      );
    }
  }
  if (args.json)
    console.log(JSON.stringify({ date: new Date().toISOString(), machine: m, rounds, waiters, holdMs, results }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
