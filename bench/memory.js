// Memory per stored entry (issue 10): how many bytes an in-memory layer keeps for each completed
// request, measured on the real HTTP server. Each variant runs as its own Nest process (as in
// bench/http.js, with --expose-gc); after a warm-up, the heap is measured after full collections,
// N requests with fresh keys are sent, and the heap is measured again. Bytes per entry = growth / N.
//
//   npm run bench:memory
//   node bench/memory.js --entries 100000 --platforms fastify,express --json
'use strict';
const { fork } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const path = require('node:path');
const autocannon = require('autocannon');
const { ROOT, DIST, cli, positive, list, median, round, table, machine } = require('./lib/common');

const VARIANTS = ['bare', 'floor', 'ours-memory', 'node-idempotency-memory'];
const USAGE = `usage: node bench/memory.js [options]   (run \`npm run build\` first; \`npm run bench:memory\` does)

  --entries N       requests with fresh keys per measurement (default 100000)
  --rounds N        measurements per variant, each on a fresh server; figures are medians (default 3)
  --variants LIST   from: ${VARIANTS.join(', ')} (default: all)
  --platforms LIST  express, fastify (default: fastify)
  --json            print one JSON document as the last line of stdout

BENCH_DIST=/path/to/dist measures another build of the library.`;

const opts = cli(USAGE, {
  entries: { type: 'string', default: '100000' },
  rounds: { type: 'string', default: '3' },
  variants: { type: 'string', default: VARIANTS.join(',') },
  platforms: { type: 'string', default: 'fastify' },
  json: { type: 'boolean', default: false },
});
const ENTRIES = Math.round(positive('entries', opts.entries));
const ROUNDS = Math.round(positive('rounds', opts.rounds));
const variants = list('variants', opts.variants, VARIANTS);
const platforms = list('platforms', opts.platforms, ['express', 'fastify']);
const BODY = JSON.stringify({ item: 'widget', qty: 2, note: 'bench' });
const SERVER = path.join(__dirname, 'lib', 'variant-server.js');
const log = (...args) => console.error(...args);

const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Forks one variant server with --expose-gc: `{ port, ask(cmd), stop() }`. */
function startServer(variant, platform) {
  const child = fork(SERVER, [variant, platform], {
    cwd: ROOT,
    execArgv: ['--expose-gc'],
    silent: true,
    env: { ...process.env, NODE_ENV: 'production' },
  });
  children.add(child);
  child.stderr.on('data', (d) => process.stderr.write(d));
  child.once('exit', () => children.delete(child));
  let nextId = 0;
  const ask = (cmd) =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const timer = setTimeout(() => reject(new Error(`${platform}/${variant}: no answer to ${cmd}`)), 60_000);
      const onMessage = (m) => {
        if (m?.id === id) {
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve(m);
        }
      };
      child.on('message', onMessage);
      child.send({ cmd, id });
    });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', resolve);
      child.send({ cmd: 'stop' });
    });
  return new Promise((resolve, reject) => {
    child.on('message', (m) => {
      if (m?.type === 'ready') resolve({ port: m.port, ask, stop });
      else if (m?.type === 'failed') reject(new Error(m.error));
    });
    child.once('exit', (code) => reject(new Error(`${platform}/${variant}: exited (${code}) before listening`)));
  });
}

/** Sends `amount` POSTs with fresh keys; answers autocannon's result. */
function load(port, amount) {
  const stem = randomUUID().slice(0, 23);
  let n = 0;
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections: 32,
        amount,
        timeout: 10,
        requests: [
          {
            method: 'POST',
            path: '/orders',
            headers: { 'content-type': 'application/json' },
            body: BODY,
            setupRequest: (req) => {
              req.headers['idempotency-key'] = `${stem}-${(n++).toString(16).padStart(12, '0')}`;
              return req;
            },
          },
        ],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
}

async function measureOnce(variant, platform) {
  const server = await startServer(variant, platform);
  try {
    // Warm-up: JIT, pools, the first entries of every table.
    await load(server.port, 5_000);
    const before = await server.ask('memory');
    const result = await load(server.port, ENTRIES);
    const after = await server.ask('memory');
    const answered = result['2xx'];
    if (result.non2xx > 0 || result.errors > 0) {
      throw new Error(`${result.non2xx} non-2xx answers, ${result.errors} errors`);
    }
    const per = (field) => (after[field] - before[field]) / answered;
    const out = {
      requests: answered,
      heapBytesPerEntry: per('heapUsed'),
      // Outside the JS heap: ArrayBuffer contents and other native memory V8 knows of.
      externalBytesPerEntry: per('external'),
      rssBytesPerEntry: per('rss'),
    };
    out.bytesPerEntry = out.heapBytesPerEntry + out.externalBytesPerEntry;
    if (after.store) {
      out.storeEntries = after.store.size;
      // The store's own estimate of what it holds, beside what the heap says it holds.
      out.estimatedBytesPerEntry = after.store.bytes === null ? null : after.store.bytes / after.store.size;
    }
    return out;
  } finally {
    await server.stop();
  }
}

async function main() {
  const started = new Date();
  const doc = {};
  for (const platform of platforms) {
    for (const variant of variants) {
      const runs = [];
      for (let r = 1; r <= ROUNDS; r++) {
        const m = await measureOnce(variant, platform);
        log(
          `round ${r}/${ROUNDS} ${platform}/${variant}: ${Math.round(m.bytesPerEntry)} bytes per entry ` +
            `(heap ${Math.round(m.heapBytesPerEntry)}, external ${Math.round(m.externalBytesPerEntry)}, ` +
            `RSS ${Math.round(m.rssBytesPerEntry)})`,
        );
        runs.push(m);
      }
      const med = (k) => round(median(runs.map((x) => x[k])), 0);
      (doc[platform] ??= {})[variant] = {
        bytesPerEntry: med('bytesPerEntry'),
        heapBytesPerEntry: med('heapBytesPerEntry'),
        externalBytesPerEntry: med('externalBytesPerEntry'),
        rssBytesPerEntry: med('rssBytesPerEntry'),
        estimatedBytesPerEntry: runs[0].estimatedBytesPerEntry === undefined ? null : med('estimatedBytesPerEntry'),
        entries: ENTRIES,
        bodyBytes: Buffer.byteLength(BODY),
        rounds: runs.length,
      };
    }
  }
  const info = machine();
  console.log(
    `\nMemory per entry, ${started.toISOString()}: Node ${info.node}; library ${path.relative(ROOT, DIST) || '.'}\n` +
      `${ENTRIES} fresh keys per round, ${ROUNDS} rounds (medians), after full GCs; body ${Buffer.byteLength(BODY)} bytes, ` +
      'keys 36 characters.\n',
  );
  const rows = [];
  for (const [platform, vs] of Object.entries(doc)) {
    for (const [variant, f] of Object.entries(vs)) {
      rows.push({
        platform,
        variant,
        total: f.bytesPerEntry,
        heap: f.heapBytesPerEntry,
        external: f.externalBytesPerEntry,
        rss: f.rssBytesPerEntry,
        estimate: f.estimatedBytesPerEntry,
      });
    }
  }
  console.log(
    table(rows, [
      { key: 'platform', title: 'platform', align: 'left' },
      { key: 'variant', title: 'variant', align: 'left' },
      { key: 'total', title: 'bytes/entry (heap + external)' },
      { key: 'heap', title: 'JS heap' },
      { key: 'external', title: 'external' },
      { key: 'rss', title: 'RSS' },
      { key: 'estimate', title: "store's estimate" },
    ]),
  );
  console.log(
    `\nTarget (issue 10): ours-memory <= 400 bytes per completed small entry plus the body (${Buffer.byteLength(BODY)} bytes).`,
  );
  if (opts.json) console.log(JSON.stringify(doc));
}

main().catch((error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
