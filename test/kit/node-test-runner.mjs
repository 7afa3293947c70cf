// The test kit under node:test, from the built package (dist/), as an ESM consumer imports it:
// `npm run test:kit` (builds first). Jest runs the same suite in test/contract and test/kit.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CachedResponse, IdempotencyKey, MemoryStore } from '../../dist/index.js';
import { AtMostOnceLedger, FaultyStore, storeContract } from '../../dist/testing/index.js';

storeContract(() => new MemoryStore(), { describe, it, name: 'MemoryStore under node:test' });

describe('a store that breaks the contract, under node:test', () => {
  it('fails the run, in the cases that catch it, with messages that name them', () => {
    const fixture = fileURLToPath(new URL('./fixtures/ignores-fencing.node-test.mjs', import.meta.url));
    // Without NODE_TEST_CONTEXT, which tells a nested `node --test` to skip its files.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const run = spawnSync(process.execPath, ['--test', '--test-reporter=tap', fixture], {
      encoding: 'utf8',
      env,
      timeout: 60_000,
    });
    assert.equal(run.status, 1, `the run should fail\n${run.stdout}\n${run.stderr}`);
    const failed = [...run.stdout.matchAll(/^\s*not ok \d+ - (.+)$/gm)].map((m) => m[1]).sort();
    const cases = [
      'answers FencingMismatch for another number, another nonce or no nonce, and changes nothing',
      'checks the fencing token before the fingerprint',
      'refuses a stale completion after expiry and reclaim, leaving the new claim untouched',
      'refuses another token and answers KeyExpired for a missing key',
      'answers KeyExpired for a missing key and FencingMismatch for another token',
    ];
    const groups = ['complete', 'expiry, reclaim and fencing', 'remove', 'touch', 'store contract: ignores fencing'];
    assert.deepEqual(failed, [...cases, ...groups].sort());
    assert.match(run.stdout, /# pass 28\n# fail 5\n/);
    assert.ok(
      run.stdout.includes(
        'store contract (ignores fencing) › complete › checks the fencing token before the fingerprint: ' +
          "another token and another fingerprint: expected 'fencing-mismatch', got 'fingerprint-mismatch'",
      ),
      'a failure message names the store, the case and the check',
    );
  });
});

describe('FaultyStore and AtMostOnceLedger under node:test', () => {
  it('a lost claim reply holds the key for one lease; the work runs once', async () => {
    const store = new FaultyStore(new MemoryStore());
    const ledger = new AtMostOnceLedger();
    const key = IdempotencyKey.default();
    const charge = () =>
      store
        .claim(key, 100)
        .fingerprint('POST /charges', '{}')
        .executeOrReplay(60_000, async () => {
          ledger.record(key);
          return new CachedResponse({ statusCode: 201, body: 'charged' });
        });
    store.loseReplyNext('tryInsert');
    // The claim landed but nobody knows it holds the key: the engine reads the key and finds it in
    // flight, as does a retry, until the orphaned lease runs out.
    assert.equal((await charge()).kind, 'in-flight');
    assert.equal((await charge()).kind, 'in-flight');
    assert.equal(ledger.count(key), 0);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal((await charge()).kind, 'executed');
    assert.equal((await charge()).kind, 'replayed');
    ledger.assertAtMostOnce();
    ledger.record(key);
    assert.throws(() => ledger.assertAtMostOnce(), /ran more than once: ".+" \(2 times\)/);
  });
});

describe('a short-lived process (a script, a job) under node:test', () => {
  it('does not exit while a completion whose reply was lost is being retried: the result is stored, once', () => {
    const dist = fileURLToPath(new URL('../../dist/', import.meta.url));
    // Nothing else keeps the child alive: only the pause before re-sending the completion.
    const script = `
      const { CachedResponse, IdempotencyKey, MemoryStore } = require(${JSON.stringify(dist)});
      const { FaultyStore } = require(${JSON.stringify(dist + 'testing')});
      const store = new FaultyStore(new MemoryStore());
      store.loseReplyNext('complete');
      const key = new IdempotencyKey('job-1');
      let runs = 0;
      store.claim(key, 10_000).fingerprint('job', '').executeOrReplay(60_000, async () => {
        runs++;
        return new CachedResponse({ statusCode: 200, body: 'done' });
      }).then(async (outcome) => {
        const entry = await store.get(key);
        console.log(JSON.stringify({ kind: outcome.kind, runs, completed: entry?.isCompleted() }));
        await store.close();
      });
    `;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout.trim()), { kind: 'executed', runs: 1, completed: true });
  });
});
