// Valkey's own work per operation, counted in instructions (issue 10): a private valkey-server runs
// under valgrind's callgrind, and the instructions it executes while each workload runs are counted.
// Unlike CPU time, the count does not move with the machine's load or speed (the same binary and
// inputs give the same count), so it tells small changes to the scripts apart where `INFO cpu`
// cannot. Workloads, each with `--callers` concurrent callers on one ioredis connection:
//   ours   ValkeyStore: fresh = tryInsert + complete on a new key, replay = tryInsert on a completed key
//   floor  the least a layer built on Lua scripts runs (bench/lib/floor-valkey.js): the same pairs
//   ping   PING, the cost of a round trip that does nothing
//
//   npm run bench:valkey-instructions
//   node bench/valkey-instructions.js --ops 2000 --json
//   node bench/valkey-instructions.js --commands    # also the instructions inside command execution
//
// --commands adds, per operation, the instructions of valkey-server's call() (inclusive): the
// commands and scripts alone, without reading requests, the event loop, writing replies or the
// once-a-second cron. How many commands arrive per read varies with timing, so the whole count
// moves by about 1k per fresh request between runs of the same build; this figure moves by about
// 0.1-0.3k, enough to tell a change of a few hundred instructions to a script apart.
'use strict';
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { DIST, ROOT, cli, positive, round, table, loadLibrary, machine } = require('./lib/common');
const { floorScripts } = require('./lib/floor-valkey');
const { startValkeyUnderCallgrind: startUnderCallgrind } = require('./lib/callgrind');

const USAGE = `usage: node bench/valkey-instructions.js [options]   (needs valgrind; \`npm run bench:valkey-instructions\` builds first)

  --ops N       operations per workload (default 3000; valkey-server runs about 50x slower under callgrind)
  --callers N   concurrent callers on the one connection (default 32)
  --commands    also count the instructions inside command execution (valkey-server's call(),
                inclusive; needs callgrind_annotate): a steadier figure for comparing scripts
  --json        print one JSON document as the last line of stdout

BENCH_DIST=/path/to/dist measures another build of the library (default: dist/).`;

const opts = cli(USAGE, {
  ops: { type: 'string', default: '3000' },
  callers: { type: 'string', default: '32' },
  commands: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
});
const OPS = Math.round(positive('ops', opts.ops));
const CALLERS = Math.round(positive('callers', opts.callers));
const LEASE_MS = 10_000;
const TTL_MS = 86_400_000;
const BODY = JSON.stringify({ item: 'widget', qty: 2, note: 'bench' });
const log = (...args) => console.error(...args);

/** Instructions inside valkey-server's `call()` (inclusive) in the callgrind dump `file`. */
function commandInstructions(file) {
  const text = execFileSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const line = text.split('\n').find((l) => /^\s*[\d,]+ .*\s(\S+:)?call \[/.test(l));
  if (line === undefined) throw new Error(`no call() in ${file}`);
  return Number(line.trim().split(/\s+/)[0].replace(/,/g, ''));
}

/** Runs `op(i)` for i = 0..n-1 with CALLERS concurrent callers. */
async function concurrently(n, op) {
  let next = 0;
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (next < n) await op(next++);
    }),
  );
}

async function main() {
  const started = new Date();
  const { lib, reason } = loadLibrary(['ValkeyStore', 'IdempotencyKey', 'IdempotencyEntry', 'CachedResponse']);
  if (reason) throw new Error(reason);
  const server = await startUnderCallgrind();
  log(`valkey-server ${server.version ?? '?'} under callgrind on ${server.url}`);
  const Redis = require('ioredis');
  const results = {};
  try {
    const client = new Redis(server.url);
    const store = new lib.ValkeyStore(client, {
      prefix: 'bench:',
      commandTimeoutMs: 60_000,
      checkServerOnInit: false,
      onWarning: () => undefined,
    });
    const fingerprint = new lib.DefaultFingerprintStrategy().compute('POST /orders', BODY);
    const response = new lib.CachedResponse({
      statusCode: 201,
      body: BODY,
      metadata: { 'content-type': 'application/json; charset=utf-8' },
    });
    const keys = Array.from({ length: OPS }, () => lib.IdempotencyKey.default());
    const oursFresh = async (i) => {
      const claim = await store.tryInsert(keys[i], new lib.IdempotencyEntry(fingerprint, LEASE_MS));
      if (claim.kind !== 'claimed') throw new Error(`ours: expected a claim, got ${claim.kind}`);
      const outcome = await store.complete(keys[i], claim.entry.complete(response), claim.fencingToken, TTL_MS);
      if (outcome !== lib.FencedOutcome.Applied) throw new Error(`ours: completion ${outcome}`);
    };
    const oursReplay = async (i) => {
      const found = await store.tryInsert(keys[i], new lib.IdempotencyEntry(fingerprint, LEASE_MS));
      if (found.kind !== 'exists' || !found.entry.isCompleted()) throw new Error('ours: expected a replay');
    };
    const floorClient = new Redis(server.url, { enableAutoPipelining: true });
    const floor = floorScripts(floorClient);
    const floorEntry = Buffer.concat([Buffer.from(`c${fingerprint.toString()}`, 'latin1'), Buffer.from(BODY)]);
    const floorKeys = keys.map((k) => `floor-${k}`);
    const floorFresh = async (i) => {
      const token = await floor.claim(floorKeys[i], LEASE_MS);
      if (typeof token !== 'number') throw new Error('floor: expected a claim');
      if ((await floor.complete(floorKeys[i], token, floorEntry, TTL_MS)) !== 1) throw new Error('floor: not stored');
    };
    const floorReplay = async (i) => {
      if (!Buffer.isBuffer(await floor.claim(floorKeys[i], LEASE_MS))) throw new Error('floor: expected a replay');
    };
    // Scripts loaded and connections warm before anything is counted.
    await oursFresh(0).then(() => oursReplay(0));
    await floorFresh(0).then(() => floorReplay(0));
    await client.ping();
    const work = [
      ['ping', 'round trip', () => concurrently(OPS, () => client.ping())],
      ['ours', 'fresh', () => concurrently(OPS - 1, (i) => oursFresh(i + 1))],
      ['ours', 'replay', () => concurrently(OPS - 1, (i) => oursReplay(i + 1))],
      ['floor', 'fresh', () => concurrently(OPS - 1, (i) => floorFresh(i + 1))],
      ['floor', 'replay', () => concurrently(OPS - 1, (i) => floorReplay(i + 1))],
    ];
    for (const [name, scenario, run] of work) {
      const ops = name === 'ping' ? OPS : OPS - 1;
      const instructions = await server.count(run);
      const result = ((results[name] ??= {})[scenario] = { instructionsPerOp: round(instructions / ops, 0), ops });
      if (opts.commands) result.inCommandsPerOp = round(commandInstructions(server.counter.last.file) / ops, 0);
      log(`${name} ${scenario}: ${Math.round(instructions / ops).toLocaleString('en')} instructions per operation`);
    }
    await store.close();
    client.disconnect();
    floorClient.disconnect();
  } finally {
    await server.stop();
  }
  for (const scenario of ['fresh', 'replay']) {
    const ours = results.ours[scenario];
    ours.toFloor = round(ours.instructionsPerOp / results.floor[scenario].instructionsPerOp, 2);
    if (opts.commands)
      ours.inCommandsToFloor = round(ours.inCommandsPerOp / results.floor[scenario].inCommandsPerOp, 2);
  }
  const info = machine();
  console.log(
    `\nValkey instructions per operation, ${started.toISOString()}: valkey-server ${server.version ?? '?'} under ` +
      `callgrind (hz 1), Node ${info.node}; library ${path.relative(ROOT, DIST) || '.'}\n` +
      `${OPS} operations per workload, ${CALLERS} concurrent callers on one connection; a fresh operation is a claim ` +
      'and its completion, a replay a claim that finds a completed entry.\n',
  );
  const rows = [];
  for (const [name, scenarios] of Object.entries(results)) {
    for (const [scenario, f] of Object.entries(scenarios)) {
      rows.push({
        name,
        scenario,
        instructions: f.instructionsPerOp.toLocaleString('en'),
        floor: f.toFloor === undefined ? null : `${f.toFloor.toFixed(2)}x`,
        commands: f.inCommandsPerOp?.toLocaleString('en') ?? null,
        commandsFloor: f.inCommandsToFloor === undefined ? null : `${f.inCommandsToFloor.toFixed(2)}x`,
      });
    }
  }
  console.log(
    table(rows, [
      { key: 'name', title: 'workload', align: 'left' },
      { key: 'scenario', title: 'operation', align: 'left' },
      { key: 'instructions', title: 'Valkey instructions per operation' },
      { key: 'floor', title: 'x floor' },
      ...(opts.commands
        ? [
            { key: 'commands', title: 'in command execution' },
            { key: 'commandsFloor', title: 'x floor' },
          ]
        : []),
    ]),
  );
  if (opts.json) console.log(JSON.stringify(results));
}

main().catch((error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
