// Core micro-benchmarks: DefaultFingerprintStrategy on 1 KiB bodies and MemoryStore
// claim+complete pairs, on one core. Run after `npm run build`: `node bench/core.js`
// (BENCH_DIST=/path/to/dist measures another build).
'use strict';
const { CachedResponse, DefaultFingerprintStrategy, IdempotencyEntry, IdempotencyKey, MemoryStore } = require(
  require('./lib/common').DIST,
);

const seconds = Number(process.env.BENCH_SECONDS ?? 2);

function measure(name, fn, batch) {
  // Warm up, then run whole batches until the time is up.
  const warmUntil = performance.now() + 300;
  while (performance.now() < warmUntil) fn(batch);
  let ops = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) ops += fn(batch);
  return { name, opsPerSec: ops / ((performance.now() - start) / 1000) };
}

async function measureAsync(name, fn, batch) {
  const warmUntil = performance.now() + 300;
  while (performance.now() < warmUntil) await fn(batch);
  let ops = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) ops += await fn(batch);
  return { name, opsPerSec: ops / ((performance.now() - start) / 1000) };
}

async function main() {
  const strategy = new DefaultFingerprintStrategy();
  const body1k = Buffer.alloc(1024, 'x');
  const json1k = JSON.stringify({ data: 'y'.repeat(1010) });
  const results = [];
  results.push(
    measure(
      'fingerprint 1 KiB Buffer',
      (n) => {
        for (let i = 0; i < n; i++) strategy.compute('POST /orders', body1k);
        return n;
      },
      1000,
    ),
  );
  results.push(
    measure(
      'fingerprint 1 KiB string',
      (n) => {
        for (let i = 0; i < n; i++) strategy.compute('POST /orders', json1k);
        return n;
      },
      1000,
    ),
  );

  const store = new MemoryStore({ maxEntries: 10_000_000 });
  const fp = strategy.compute('POST /orders', body1k);
  const response = new CachedResponse({ statusCode: 201, body: '{"ok":true}' });
  const ttl = 60_000;
  let counter = 0;
  const keys = Array.from({ length: 1 << 16 }, (_, i) => new IdempotencyKey(`bench-${i}`));
  results.push(
    await measureAsync(
      'MemoryStore claim+complete pairs',
      async (n) => {
        for (let i = 0; i < n; i++) {
          const key = keys[counter++ & 0xffff];
          const claim = await store.tryInsert(key, new IdempotencyEntry(fp, ttl));
          if (claim.kind !== 'claimed') {
            await store.purge(key);
            continue;
          }
          await store.complete(key, claim.entry.complete(response), claim.fencingToken, ttl);
          await store.purge(key);
        }
        return n;
      },
      1000,
    ),
  );
  await store.close();

  // Sealed responses (`encryption`): one seal (each completion) and one open (each replay) of a
  // 1 KiB JSON response with a Content-Type, through the internal sealer the module uses.
  const { ResponseSealer } = require(require('node:path').join(require('./lib/common').DIST, 'core/response-sealer'));
  const sealer = new ResponseSealer({ keys: [{ id: 'k1', key: Buffer.alloc(32, 7) }] });
  const plain = new CachedResponse({
    statusCode: 201,
    body: json1k,
    metadata: { 'content-type': 'application/json; charset=utf-8', ':payload': 'text' },
  });
  const storeKey = 'bench-key/principal-digest';
  const sealedResponse = sealer.seal(storeKey, plain);
  results.push(
    measure(
      'seal 1 KiB response (AES-256-GCM)',
      (n) => {
        for (let i = 0; i < n; i++) sealer.seal(storeKey, plain);
        return n;
      },
      1000,
    ),
  );
  results.push(
    measure(
      'open 1 KiB response (AES-256-GCM)',
      (n) => {
        for (let i = 0; i < n; i++) sealer.open(storeKey, sealedResponse);
        return n;
      },
      1000,
    ),
  );

  const rows = results.map((r) => ({ benchmark: r.name, 'ops/s': Math.round(r.opsPerSec).toLocaleString('en') }));
  console.table(rows);
  if (process.argv.includes('--json')) console.log(JSON.stringify(results));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
