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
