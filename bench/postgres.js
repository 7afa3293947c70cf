// The Postgres cell (bench/POSTGRES.md): `POST /orders` writing one row, ours (PostgresStore, the
// row written through @IdempotencyTransaction()) against a bare route writing the same row in a
// transaction of its own, fresh keys and replays, on Fastify. Per request: round trips to
// PostgreSQL (counted by a TCP proxy between the server and PostgreSQL: a round trip is the
// client sending after the server last spoke, per connection), the server's CPU (/proc/<pid>/stat)
// and PostgreSQL's CPU (every process of the postmaster: backends, walwriter, ...).
//
//   npm run build && node bench/postgres.js [--requests 3000] [--rounds 3] [--connections 8]
'use strict';
const { fork } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { parseArgs } = require('node:util');
const autocannon = require('autocannon');
const procs = require('../test/chaos/procs');
const { PostgresServer } = require('../test/chaos/postgres');

const DIST = path.resolve(__dirname, '..', 'dist');
const TICK_US = 1e6 / 100; // USER_HZ: /proc times are in 1/100 s

const { values: opts } = parseArgs({
  options: {
    requests: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '8' },
    json: { type: 'boolean', default: false },
  },
});
const REQUESTS = Number(opts.requests);
const ROUNDS = Number(opts.rounds);
const CONNECTIONS = Number(opts.connections);

/** utime + stime of a process, in microseconds (0 when it is gone). */
function cpuUs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return 0;
  }
}

/** CPU of the postmaster and every child of it. */
function postgresCpuUs(postmaster) {
  let total = cpuUs(postmaster);
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmaster) total += cpuUs(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** A TCP proxy that counts round trips: a client write after the server last spoke, per connection. */
function countingProxy(targetPort) {
  const counter = { trips: 0 };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    let last = 'server';
    client.on('data', (chunk) => {
      if (last === 'server') counter.trips++;
      last = 'client';
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      last = 'server';
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, counter, server })),
  );
}

function startVariant(variant, url) {
  const child = procs.track(
    fork(path.join(__dirname, 'lib', 'pg-server.js'), [variant], {
      env: { ...process.env, BENCH_PG_URL: url, BENCH_DIST: DIST },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  return new Promise((resolve, reject) => {
    child.once('message', (m) => (m.type === 'ready' ? resolve({ child, port: m.port }) : reject(new Error(m.error))));
    child.once('exit', (code) => reject(new Error(`${variant} exited (${code})`)));
  });
}

/** `amount` requests; `keyFor(i)` gives the i-th request's key. */
async function load(port, amount, keyFor) {
  let i = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/orders`,
    method: 'POST',
    connections: CONNECTIONS,
    amount,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ amount: 42 }),
    requests: [
      {
        setupRequest: (req) => {
          req.headers = { ...req.headers, 'idempotency-key': keyFor(i++) };
          return req;
        },
      },
    ],
  });
  const non2xx = result.non2xx + result.errors + result.timeouts;
  if (non2xx > 0) throw new Error(`${non2xx} request(s) were not answered 2xx`);
  return result;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  procs.installCleanup();
  const pg = await PostgresServer.start('bench');
  await pg.query('CREATE TABLE orders (id bigserial PRIMARY KEY, key text, amount int NOT NULL)');
  const lib = require(DIST);
  const { Pool } = require('pg');
  const admin = new Pool({ connectionString: pg.connectionString, max: 1 });
  await new lib.PostgresStore(admin).migrate();
  await admin.end();
  const proxy = await countingProxy(pg.port);
  const url = `postgres://postgres@127.0.0.1:${proxy.port}/postgres`;
  const rows = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const variant of ['bare', 'ours']) {
      const { child, port } = await startVariant(variant, url);
      const scenarios = variant === 'ours' ? ['fresh', 'replay'] : ['fresh'];
      // Warm-up: connections opened, code paths compiled; the replay pool completed.
      const replayKeys = Array.from({ length: 500 }, () => randomUUID());
      await load(port, 1_000, () => randomUUID());
      if (variant === 'ours') await load(port, replayKeys.length, (i) => replayKeys[i]);
      for (const scenario of scenarios) {
        const keyFor = scenario === 'fresh' ? () => randomUUID() : (i) => replayKeys[i % replayKeys.length];
        const trips0 = proxy.counter.trips;
        const server0 = cpuUs(child.pid);
        const pg0 = postgresCpuUs(pg.pid);
        const result = await load(port, REQUESTS, keyFor);
        rows.push({
          round,
          variant,
          scenario,
          trips: (proxy.counter.trips - trips0) / REQUESTS,
          serverUs: (cpuUs(child.pid) - server0) / REQUESTS,
          postgresUs: (postgresCpuUs(pg.pid) - pg0) / REQUESTS,
          reqPerSec: result.requests.average,
          latencyMs: result.latency.p50,
        });
      }
      child.kill('SIGKILL');
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve()));
    }
  }
  proxy.server.close();
  await pg.stop();
  const cells = [];
  for (const [variant, scenario] of [
    ['bare', 'fresh'],
    ['ours', 'fresh'],
    ['ours', 'replay'],
  ]) {
    const of = rows.filter((r) => r.variant === variant && r.scenario === scenario);
    cells.push({
      variant,
      scenario,
      trips: median(of.map((r) => r.trips)),
      serverUs: median(of.map((r) => r.serverUs)),
      postgresUs: median(of.map((r) => r.postgresUs)),
      reqPerSec: median(of.map((r) => r.reqPerSec)),
      latencyMs: median(of.map((r) => r.latencyMs)),
    });
  }
  console.log(
    `Postgres cell: Fastify, ${REQUESTS} requests x ${ROUNDS} rounds, ${CONNECTIONS} connections (medians)\n`,
  );
  console.log(
    '| variant | scenario | PG round trips/req | server CPU us/req | PostgreSQL CPU us/req | req/s | p50 ms |',
  );
  console.log(
    '| ------- | -------- | -----------------: | ----------------: | --------------------: | ----: | -----: |',
  );
  for (const c of cells) {
    console.log(
      `| ${c.variant} | ${c.scenario} | ${c.trips.toFixed(2)} | ${c.serverUs.toFixed(0)} | ${c.postgresUs.toFixed(0)} | ` +
        `${c.reqPerSec.toFixed(0)} | ${c.latencyMs} |`,
    );
  }
  if (opts.json) console.log(JSON.stringify({ requests: REQUESTS, rounds: ROUNDS, rows, cells }));
  process.exit(0);
}

main().catch((error) => {
  console.error(`bench/postgres: ${error?.stack ?? error}`);
  process.exit(2);
});
