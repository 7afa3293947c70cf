/**
 * The cases of the store contract suite (see `storeContract`). Each case gets a fresh store over an
 * empty namespace, so fencing tokens start at 1; durations go through `ms()` and waits through
 * `sleep()`, which `timeScale` stretches for stores with a coarse clock.
 */
import { CachedResponse } from '../core/cached-response';
import { FencedOutcome } from '../core/fenced-outcome';
import { FencingToken } from '../core/fencing-token';
import { DefaultFingerprintStrategy } from '../core/fingerprint-strategy';
import type { Fingerprint } from '../core/fingerprint';
import { AnyEntry, CompletedEntry, IdempotencyEntry, ProcessingEntry } from '../core/idempotency-entry';
import { IdempotencyKey } from '../core/idempotency-key';
import type { IdempotencyStore } from '../core/idempotency-store';
import type { ClaimedResult, ExistsResult, InsertResult } from '../core/insert-result';
import { check } from './contract-assert';

/** What a case works with. @internal */
export interface ContractCaseContext {
  /** A fresh store over an empty namespace. */
  readonly store: IdempotencyStore;
  /** `n` ms, stretched by the suite's `timeScale`. */
  ms(n: number): number;
  /** Waits `n` ms (stretched by `timeScale`) on the real clock. */
  sleep(n: number): Promise<void>;
}

/** One case of the contract suite. @internal */
export interface ContractCase {
  readonly group: string;
  readonly name: string;
  run(t: ContractCaseContext): Promise<void>;
}

const strategy = new DefaultFingerprintStrategy();
const FP_A = strategy.compute('POST /charges', '{"amount":100}');
const FP_B = strategy.compute('POST /charges', '{"amount":999}');
/** A lease or replay window no case outlives. */
const LONG = 60_000;

function response(body: string | Uint8Array = '{"ok":true}', statusCode = 201, metadata: Record<string, string> = {}) {
  return new CachedResponse({ statusCode, body, metadata });
}

const text = (body: Uint8Array) => Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');

async function claim(store: IdempotencyStore, key: IdempotencyKey, fp = FP_A, leaseMs = LONG): Promise<ClaimedResult> {
  const result: InsertResult = await store.tryInsert(key, new IdempotencyEntry(fp, leaseMs));
  check.equal(result?.kind, 'claimed', `tryInsert of ${JSON.stringify(key.toString())} (free key)`);
  return result as ClaimedResult;
}

async function exists(store: IdempotencyStore, key: IdempotencyKey, fp = FP_A, leaseMs = LONG): Promise<ExistsResult> {
  const result = await store.tryInsert(key, new IdempotencyEntry(fp, leaseMs));
  check.equal(result?.kind, 'exists', `tryInsert of ${JSON.stringify(key.toString())} (live key)`);
  return result as ExistsResult;
}

/** The completed entry under `key`, or a failure saying what was there instead. */
async function completed(store: IdempotencyStore, key: IdempotencyKey, what: string): Promise<CompletedEntry> {
  const entry: AnyEntry | undefined = await store.get(key);
  check.ok(entry?.isCompleted(), `${what}: get() should give a completed entry`, () =>
    entry === undefined ? 'got nothing' : 'got a processing entry',
  );
  return entry;
}

async function processing(store: IdempotencyStore, key: IdempotencyKey, what: string): Promise<ProcessingEntry> {
  const entry: AnyEntry | undefined = await store.get(key);
  check.ok(entry?.isProcessing(), `${what}: get() should give a processing entry`, () =>
    entry === undefined ? 'got nothing' : 'got a completed entry',
  );
  return entry;
}

async function missing(store: IdempotencyStore, key: IdempotencyKey, what: string): Promise<void> {
  const entry = await store.get(key);
  check.ok(entry === undefined, `${what}: get() should give nothing`, () => `got a ${entry!.state} entry`);
}

function sameFingerprint(actual: Fingerprint, expected: Fingerprint, what: string): void {
  check.ok(actual.equals(expected), what, () => `expected fingerprint ${expected}, got ${actual}`);
}

const tryInsertCases: ContractCase[] = [
  {
    group: 'tryInsert',
    name: 'claims a fresh key with fencing token 1 and a nonce',
    async run({ store }) {
      const result = await claim(store, IdempotencyKey.default());
      check.equal(result.fencingToken.value, 1n, 'the first fencing token of a fresh store');
      check.ok(
        typeof result.fencingToken.nonce === 'string' && result.fencingToken.nonce.length > 0,
        'the fencing token carries a per-claim nonce',
        () => `got ${String(result.fencingToken.nonce)}`,
      );
      check.equal(result.entry.isCompleted(), false, 'the claimed entry is processing');
      sameFingerprint(result.entry.fingerprint, FP_A, 'the claimed entry keeps its fingerprint');
    },
  },
  {
    group: 'tryInsert',
    name: 'answers exists with the live processing entry, unmodified by the failed claim',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const first = await claim(store, key, FP_A, LONG);
      const second = await exists(store, key, FP_B, 5_000);
      check.equal(second.entry.isCompleted(), false, 'the existing entry is processing');
      sameFingerprint(second.entry.fingerprint, FP_A, 'the existing entry keeps the first claim’s fingerprint');
      check.equal(second.entry.ttl, LONG, 'the existing entry keeps the first claim’s lease');
      const outcome = await store.complete(key, first.entry.complete(response()), first.fencingToken, LONG);
      check.equal(outcome, FencedOutcome.Applied, 'the first holder still completes');
    },
  },
  {
    group: 'tryInsert',
    name: 'answers exists with the completed entry and its response',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const first = await claim(store, key);
      await store.complete(
        key,
        first.entry.complete(response('done', 202, { 'content-type': 'text/plain' })),
        first.fencingToken,
        LONG,
      );
      const again = await exists(store, key);
      check.ok(again.entry.isCompleted(), 'the existing entry is completed');
      check.equal(again.entry.response.statusCode, 202, 'the replayed status code');
      check.equal(text(again.entry.response.body), 'done', 'the replayed body');
      check.equal({ ...again.entry.response.metadata }, { 'content-type': 'text/plain' }, 'the replayed metadata');
    },
  },
  {
    group: 'tryInsert',
    name: 'lets exactly one of 50 concurrent claims of one key win',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const results = await Promise.all(
        Array.from({ length: 50 }, () => store.tryInsert(key, new IdempotencyEntry(FP_A, LONG))),
      );
      check.equal(results.filter((r) => r.kind === 'claimed').length, 1, 'claims that won');
      check.equal(results.filter((r) => r.kind === 'exists').length, 49, 'claims answered exists');
    },
  },
  {
    group: 'tryInsert',
    name: 'keeps different keys, scoped keys and long keys apart',
    async run({ store }) {
      const base = IdempotencyKey.default();
      const keys = [
        base,
        base.scoped('alice'),
        base.scoped('bob'),
        base.scoped('alice').scoped('x'),
        new IdempotencyKey('é'.repeat(127) + 'x'),
      ];
      for (const key of keys) await claim(store, key);
      for (const key of keys) await processing(store, key, `key ${JSON.stringify(key.toString())}`);
    },
  },
  {
    group: 'tryInsert',
    name: 'hands out an entry that completing does not affect for anyone else',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const first = await claim(store, key);
      const other = await exists(store, key);
      if (other.entry.isProcessing()) other.entry.complete(response('not mine'));
      const outcome = await store.complete(key, first.entry.complete(response('mine')), first.fencingToken, LONG);
      check.equal(outcome, FencedOutcome.Applied, 'the holder’s completion');
      const stored = await completed(store, key, 'after the holder completed');
      check.equal(text(stored.response.body), 'mine', 'the stored body');
    },
  },
];

const completeCases: ContractCase[] = [
  {
    group: 'complete',
    name: 'stores the response: status, exact bytes and metadata',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const body = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
      const meta = { 'content-type': 'application/octet-stream', location: '/charges/ü/1', empty: '' };
      const c = await claim(store, key);
      const outcome = await store.complete(key, c.entry.complete(response(body, 200, meta)), c.fencingToken, LONG);
      check.equal(outcome, FencedOutcome.Applied, 'the completion');
      const stored = await completed(store, key, 'after completing');
      check.equal(stored.response.statusCode, 200, 'the stored status code');
      check.equal(Uint8Array.from(stored.response.body), body, 'the stored body (all 256 byte values)');
      check.equal({ ...stored.response.metadata }, meta, 'the stored metadata');
      check.equal(stored.ttl, LONG, 'the stored entry’s ttl (the replay window)');
      sameFingerprint(stored.fingerprint, FP_A, 'the stored entry keeps its fingerprint');
    },
  },
  {
    group: 'complete',
    name: 'stores an empty body and a 1 MiB body',
    async run({ store }) {
      const empty = IdempotencyKey.default();
      const big = IdempotencyKey.default();
      const bigBody = Buffer.alloc(1 << 20, 0xab);
      const c1 = await claim(store, empty);
      const c2 = await claim(store, big);
      await store.complete(empty, c1.entry.complete(response('', 204)), c1.fencingToken, LONG);
      await store.complete(big, c2.entry.complete(response(bigBody, 200)), c2.fencingToken, LONG);
      const e = await completed(store, empty, 'the empty body');
      const b = await completed(store, big, 'the 1 MiB body');
      check.equal(e.response.body.byteLength, 0, 'the stored empty body’s length');
      check.ok(
        Buffer.compare(b.response.body, bigBody) === 0,
        'the 1 MiB body comes back byte for byte',
        () => `got ${b.response.body.byteLength} bytes`,
      );
    },
  },
  {
    group: 'complete',
    name: 'answers KeyExpired for a key never claimed',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const entry = new IdempotencyEntry(FP_A, LONG).complete(response());
      const outcome = await store.complete(key, entry, new FencingToken(1n, 'nonce'), LONG);
      check.equal(outcome, FencedOutcome.KeyExpired, 'completing a key never claimed');
      await missing(store, key, 'after completing a key never claimed');
    },
  },
  {
    group: 'complete',
    name: 'answers FencingMismatch for another number, another nonce or no nonce, and changes nothing',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const { value, nonce } = c.fencingToken;
      const forged = [
        { token: new FencingToken(value + 1n, nonce), what: 'another number' },
        { token: new FencingToken(value, 'other-nonce'), what: 'another nonce' },
        { token: new FencingToken(value), what: 'no nonce' },
      ];
      for (const { token, what } of forged) {
        const entry = new IdempotencyEntry(FP_A, LONG).complete(response('forged'));
        check.equal(
          await store.complete(key, entry, token, LONG),
          FencedOutcome.FencingMismatch,
          `a token with ${what}`,
        );
      }
      await processing(store, key, 'after the forged completions');
      const outcome = await store.complete(key, c.entry.complete(response('real')), c.fencingToken, LONG);
      check.equal(outcome, FencedOutcome.Applied, 'the real holder’s completion');
    },
  },
  {
    group: 'complete',
    name: 'answers FingerprintMismatch for another fingerprint and changes nothing',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const wrong = new IdempotencyEntry(FP_B, LONG).complete(response('wrong'));
      const outcome = await store.complete(key, wrong, c.fencingToken, LONG);
      check.equal(outcome, FencedOutcome.FingerprintMismatch, 'completing with another fingerprint');
      const stored = await processing(store, key, 'after the refused completion');
      sameFingerprint(stored.fingerprint, FP_A, 'the entry keeps its fingerprint');
    },
  },
  {
    group: 'complete',
    name: 'checks the fencing token before the fingerprint',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const wrong = new IdempotencyEntry(FP_B, LONG).complete(response());
      const token = new FencingToken(c.fencingToken.value + 7n, c.fencingToken.nonce);
      const outcome = await store.complete(key, wrong, token, LONG);
      check.equal(outcome, FencedOutcome.FencingMismatch, 'another token and another fingerprint');
    },
  },
  {
    group: 'complete',
    name: 'never replaces the first response; the same holder completing again gets Applied',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const first = c.entry.complete(response('first'));
      check.equal(await store.complete(key, first, c.fencingToken, LONG), FencedOutcome.Applied, 'the completion');
      check.equal(await store.complete(key, first, c.fencingToken, LONG), FencedOutcome.Applied, 'the same again');
      const other = new IdempotencyEntry(FP_A, LONG).complete(response('second', 500));
      check.equal(
        await store.complete(key, other, c.fencingToken, ms(5)),
        FencedOutcome.Applied,
        'a second, different completion by the holder',
      );
      const stored = await completed(store, key, 'after a second completion');
      check.equal(text(stored.response.body), 'first', 'the stored body (the first completion’s)');
      check.equal(stored.response.statusCode, 201, 'the stored status code (the first completion’s)');
      await sleep(30);
      const later = await store.get(key);
      check.ok(later !== undefined, 'the second completion’s shorter ttl does not apply: the entry is still there');
    },
  },
  {
    group: 'complete',
    name: 'a token restored from JSON still completes its claim',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const restored = FencingToken.fromJSON(JSON.parse(JSON.stringify(c.fencingToken)));
      const outcome = await store.complete(key, c.entry.complete(response()), restored, LONG);
      check.equal(outcome, FencedOutcome.Applied, 'completing with the token restored from JSON');
    },
  },
  {
    group: 'complete',
    name: 'rejects invalid durations with a RangeError naming ttlMs',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const done = c.entry.complete(response());
      for (const bad of [0, -1, 1.5, NaN, Infinity]) {
        await check.rejects(
          store.complete(key, done, c.fencingToken, bad),
          (e) => e instanceof Error && /ttlMs/.test(e.message),
          'an error naming ttlMs',
          `complete() with ttlMs ${bad}`,
        );
        await check.rejects(
          store.touch(key, c.fencingToken, bad),
          (e) => e instanceof RangeError,
          'a RangeError',
          `touch() with ttlMs ${bad}`,
        );
      }
      await processing(store, key, 'after the refused calls');
    },
  },
];

const expiryCases: ContractCase[] = [
  {
    group: 'expiry, reclaim and fencing',
    name: 'treats an expired processing entry as missing and reclaims it with a newer token',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      const first = await claim(store, key, FP_A, ms(80));
      await sleep(150);
      await missing(store, key, 'after the lease ran out');
      const second = await claim(store, key, FP_A, LONG);
      check.ok(
        second.fencingToken.isNewerThan(first.fencingToken),
        'the reclaim’s token is newer',
        () => `${second.fencingToken} after ${first.fencingToken}`,
      );
    },
  },
  {
    group: 'expiry, reclaim and fencing',
    name: 'refuses a stale completion after expiry and reclaim, leaving the new claim untouched',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      const stale = await claim(store, key, FP_A, ms(80));
      await sleep(150);
      // The new claim has another fingerprint, so a stale write that got through would show.
      const fresh = await claim(store, key, FP_B, LONG);
      const late = stale.entry.complete(response('stale'));
      check.equal(
        await store.complete(key, late, stale.fencingToken, LONG),
        FencedOutcome.FencingMismatch,
        'the stale holder’s completion',
      );
      check.equal(await store.remove(key, stale.fencingToken), FencedOutcome.FencingMismatch, 'its removal');
      check.equal(await store.touch(key, stale.fencingToken, LONG), FencedOutcome.FencingMismatch, 'its touch');
      const entry = await processing(store, key, 'after the stale calls');
      sameFingerprint(entry.fingerprint, FP_B, 'the new claim keeps its fingerprint');
      check.equal(entry.ttl, LONG, 'the new claim keeps its lease');
      const outcome = await store.complete(key, fresh.entry.complete(response('fresh')), fresh.fencingToken, LONG);
      check.equal(outcome, FencedOutcome.Applied, 'the new holder’s completion');
      const stored = await completed(store, key, 'after the new holder completed');
      check.equal(text(stored.response.body), 'fresh', 'the stored body');
    },
  },
  {
    group: 'expiry, reclaim and fencing',
    name: 'answers KeyExpired to a completion after the lease ran out unclaimed',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key, FP_A, ms(60));
      await sleep(120);
      const outcome = await store.complete(key, c.entry.complete(response()), c.fencingToken, LONG);
      check.equal(outcome, FencedOutcome.KeyExpired, 'completing after the lease ran out');
      await missing(store, key, 'after the late completion');
    },
  },
  {
    group: 'expiry, reclaim and fencing',
    name: 'keeps a completed entry ttlMs from completion, then lets it expire',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      // Each wait is a bound on one side only, with a wide margin on the other: a loaded machine
      // only makes sleeps longer, so the check between them must not sit in a narrow window.
      const c = await claim(store, key, FP_A, ms(100));
      await store.complete(key, c.entry.complete(response()), c.fencingToken, ms(700));
      await sleep(200); // past the original lease
      await completed(store, key, 'past the lease, within ttlMs of completion');
      await sleep(600);
      await missing(store, key, 'past ttlMs after completion');
      check.equal(
        (await store.tryInsert(key, new IdempotencyEntry(FP_A, LONG))).kind,
        'claimed',
        'claiming the expired key',
      );
    },
  },
  {
    group: 'expiry, reclaim and fencing',
    name: 'gives strictly increasing tokens across remove, purge and expiry',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      const tokens: FencingToken[] = [];
      let c = await claim(store, key);
      tokens.push(c.fencingToken);
      await store.remove(key, c.fencingToken);
      c = await claim(store, key);
      tokens.push(c.fencingToken);
      await store.purge(key);
      c = await claim(store, key, FP_A, ms(50));
      tokens.push(c.fencingToken);
      await sleep(100);
      c = await claim(store, key);
      tokens.push(c.fencingToken);
      check.equal(
        tokens.map((t) => t.value),
        [1n, 2n, 3n, 4n],
        'the tokens of: a claim, after remove, after purge, after expiry',
      );
    },
  },
];

const removeCases: ContractCase[] = [
  {
    group: 'remove',
    name: 'releases a processing entry so the key can be claimed again',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      check.equal(await store.remove(key, c.fencingToken), FencedOutcome.Applied, 'the holder’s removal');
      await missing(store, key, 'after the removal');
      check.equal(
        (await store.tryInsert(key, new IdempotencyEntry(FP_B, LONG))).kind,
        'claimed',
        'claiming the released key',
      );
    },
  },
  {
    group: 'remove',
    name: 'releases a completed entry for its holder',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      await store.complete(key, c.entry.complete(response()), c.fencingToken, LONG);
      check.equal(await store.remove(key, c.fencingToken), FencedOutcome.Applied, 'the holder’s removal');
      await missing(store, key, 'after the removal');
    },
  },
  {
    group: 'remove',
    name: 'refuses another token and answers KeyExpired for a missing key',
    async run({ store }) {
      const key = IdempotencyKey.default();
      check.equal(await store.remove(key, new FencingToken(1n, 'x')), FencedOutcome.KeyExpired, 'removing no entry');
      const c = await claim(store, key);
      check.equal(
        await store.remove(key, new FencingToken(c.fencingToken.value, 'x')),
        FencedOutcome.FencingMismatch,
        'removing with another nonce',
      );
      await processing(store, key, 'after the refused removal');
    },
  },
];

const touchCases: ContractCase[] = [
  {
    group: 'touch',
    name: 'extends a live processing lease',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      // Touched well within the first lease, checked past it and well within the extension: a
      // loaded machine only makes sleeps longer, so neither check sits in a narrow window.
      const c = await claim(store, key, FP_A, ms(150));
      await sleep(10);
      check.equal(await store.touch(key, c.fencingToken, ms(1000)), FencedOutcome.Applied, 'the holder’s touch');
      await sleep(200); // past the first lease
      const entry = await processing(store, key, 'past the first lease, within the extension');
      check.equal(entry.ttl, ms(1000), 'the entry’s ttl (the extended lease)');
      const outcome = await store.complete(key, c.entry.complete(response()), c.fencingToken, LONG);
      check.equal(outcome, FencedOutcome.Applied, 'completing within the extended lease');
    },
  },
  {
    group: 'touch',
    name: 'never extends a completed entry',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      await store.complete(key, c.entry.complete(response()), c.fencingToken, ms(150));
      check.notEqual(await store.touch(key, c.fencingToken, LONG), FencedOutcome.Applied, 'touching a completed entry');
      await sleep(250);
      await missing(store, key, 'past the completed entry’s ttlMs');
    },
  },
  {
    group: 'touch',
    name: 'answers KeyExpired for a missing key and FencingMismatch for another token',
    async run({ store }) {
      const key = IdempotencyKey.default();
      check.equal(
        await store.touch(key, new FencingToken(1n, 'x'), LONG),
        FencedOutcome.KeyExpired,
        'touching no entry',
      );
      const c = await claim(store, key);
      check.equal(
        await store.touch(key, new FencingToken(c.fencingToken.value + 1n, c.fencingToken.nonce), LONG),
        FencedOutcome.FencingMismatch,
        'touching with another number',
      );
    },
  },
];

const repeatCases: ContractCase[] = [
  {
    group: 'repeated operations',
    name: 'repeats of touch, complete, get and purge answer the same; a repeated remove finds nothing',
    async run({ store }) {
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      for (const round of ['once', 'twice']) {
        check.equal(await store.touch(key, c.fencingToken, LONG), FencedOutcome.Applied, `touch, ${round}`);
        const entry = await processing(store, key, `get after touch, ${round}`);
        check.equal(entry.ttl, LONG, `the lease after touch, ${round}`);
      }
      const done = c.entry.complete(response('once'));
      for (const round of ['once', 'twice']) {
        check.equal(await store.complete(key, done, c.fencingToken, LONG), FencedOutcome.Applied, `complete, ${round}`);
        const entry = await completed(store, key, `get after complete, ${round}`);
        check.equal(text(entry.response.body), 'once', `the stored body, ${round}`);
      }
      check.equal(await store.remove(key, c.fencingToken), FencedOutcome.Applied, 'remove, once');
      check.equal(await store.remove(key, c.fencingToken), FencedOutcome.KeyExpired, 'remove, twice');
      await store.purge(key);
      await store.purge(key);
      await missing(store, key, 'after remove and purge');
    },
  },
];

const purgeAndGetCases: ContractCase[] = [
  {
    group: 'purge and get',
    name: 'purge deletes processing and completed entries and ignores missing keys',
    async run({ store }) {
      const a = IdempotencyKey.default();
      const b = IdempotencyKey.default();
      await claim(store, a);
      const c = await claim(store, b);
      await store.complete(b, c.entry.complete(response()), c.fencingToken, LONG);
      await store.purge(a);
      await store.purge(b);
      await store.purge(IdempotencyKey.default());
      await missing(store, a, 'a processing entry after purge');
      await missing(store, b, 'a completed entry after purge');
    },
  },
  {
    group: 'purge and get',
    name: 'get reads without claiming',
    async run({ store }) {
      const key = IdempotencyKey.default();
      await missing(store, key, 'a key never claimed');
      check.equal(
        (await store.tryInsert(key, new IdempotencyEntry(FP_A, LONG))).kind,
        'claimed',
        'claiming the key get() read',
      );
    },
  },
];

/** `executeOrReplay` of a charge with `body`, on a 2 s lease. */
const charge = (
  store: IdempotencyStore,
  key: IdempotencyKey,
  body: string,
  effect: (t: FencingToken) => Promise<CachedResponse>,
) => store.claim(key, 2_000).fingerprint('POST /charges', body).executeOrReplay(LONG, effect);

const claimBuilderCases: ContractCase[] = [
  {
    group: 'claim builder',
    name: 'executes once, then replays; the side effect gets the stored token',
    async run({ store }) {
      const key = IdempotencyKey.default();
      let runs = 0;
      let seen: FencingToken | undefined;
      const effect = async (token: FencingToken) => {
        runs++;
        seen = token;
        return response(`charge ${runs}`);
      };
      const first = await charge(store, key, '{}', effect);
      check.equal(first.kind, 'executed', 'the first call');
      check.equal(seen?.value, 1n, 'the token the side effect got');
      const second = await charge(store, key, '{}', effect);
      check.equal(second.kind, 'replayed', 'the second call');
      check.equal(second.kind === 'replayed' && text(second.response.body), 'charge 1', 'the replayed body');
      check.equal(runs, 1, 'side effect runs');
    },
  },
  {
    group: 'claim builder',
    name: 'answers in-flight while running and fingerprint-mismatch for another body',
    async run({ store, sleep }) {
      const key = IdempotencyKey.default();
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const first = charge(store, key, '{}', async () => {
        await gate;
        return response();
      });
      try {
        await sleep(20);
        check.equal((await charge(store, key, '{}', async () => response())).kind, 'in-flight', 'a call meanwhile');
        check.equal(
          (await charge(store, key, '{"x":1}', async () => response())).kind,
          'fingerprint-mismatch',
          'a call with another body meanwhile',
        );
      } finally {
        release();
        // Settled before the case ends (and its store closes), whatever happened above.
        await first.catch(() => undefined);
      }
      check.equal((await first).kind, 'executed', 'the first call');
      check.equal(
        (await charge(store, key, '{"x":1}', async () => response())).kind,
        'fingerprint-mismatch',
        'a call with another body afterwards',
      );
    },
  },
  {
    group: 'claim builder',
    name: 'releases the key when the side effect throws, so a retry runs',
    async run({ store }) {
      const key = IdempotencyKey.default();
      await check.rejects(
        charge(store, key, '{}', async () => {
          throw new Error('card declined');
        }),
        (e) => e instanceof Error && e.message === 'card declined',
        'the side effect’s error',
        'a call whose side effect throws',
      );
      await missing(store, key, 'after the side effect threw');
      check.equal((await charge(store, key, '{}', async () => response())).kind, 'executed', 'the retry');
    },
  },
  {
    group: 'claim builder',
    name: 'renews the lease while a side effect outlives it',
    async run({ store, ms, sleep }) {
      const key = IdempotencyKey.default();
      const slow = store
        // Renewed every third of the lease: a stall of up to two thirds of it (200 ms) is tolerated.
        .claim(key, ms(300))
        .fingerprint('POST /slow', '')
        .executeOrReplay(LONG, async () => {
          await sleep(1000);
          return response();
        });
      try {
        await sleep(600); // two leases later
        const meanwhile = await store.tryInsert(key, new IdempotencyEntry(strategy.compute('POST /slow', ''), LONG));
        check.equal(meanwhile.kind, 'exists', 'a claim two leases into the side effect');
      } finally {
        await slow.catch(() => undefined);
      }
      check.equal((await slow).kind, 'executed', 'the slow call');
    },
  },
];

/** Every case of the store contract, in the order the suite runs them. @internal */
export const CONTRACT_CASES: readonly ContractCase[] = [
  ...tryInsertCases,
  ...completeCases,
  ...expiryCases,
  ...removeCases,
  ...touchCases,
  ...repeatCases,
  ...purgeAndGetCases,
  ...claimBuilderCases,
];
