/**
 * The store contract suite: every store (memory, Valkey standalone and cluster, custom stores)
 * runs these cases and must give the same outcome in each.
 */
import { setTimeout as sleepFor } from 'node:timers/promises';
import {
  CachedResponse,
  DefaultFingerprintStrategy,
  FencedOutcome,
  FencingToken,
  Fingerprint,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyStore,
  InsertResult,
} from '../../lib';

export interface StoreFixture {
  /** A store over an empty namespace: its fencing counters start from zero. */
  store: IdempotencyStore;
  /** Releases the store and whatever the fixture opened. */
  close(): Promise<void>;
}

const strategy = new DefaultFingerprintStrategy();
const FP_A = strategy.compute('POST /charges', '{"amount":100}');
const FP_B = strategy.compute('POST /charges', '{"amount":999}');
const LONG = 60_000;

function response(body: string | Uint8Array = '{"ok":true}', statusCode = 201, metadata: Record<string, string> = {}) {
  return new CachedResponse({ statusCode, body, metadata });
}

function claimed(result: InsertResult) {
  if (result.kind !== 'claimed') throw new Error(`expected a claim, got ${result.kind}`);
  return result;
}

function exists(result: InsertResult) {
  if (result.kind !== 'exists') throw new Error(`expected an existing entry, got ${result.kind}`);
  return result;
}

export function runStoreContract(name: string, factory: () => Promise<StoreFixture>): void {
  describe(`store contract: ${name}`, () => {
    let fixture: StoreFixture;
    let store: IdempotencyStore;
    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });
    afterEach(async () => {
      await fixture?.close();
    });

    const claim = async (key: IdempotencyKey, fp = FP_A, leaseMs = LONG) =>
      claimed(await store.tryInsert(key, new IdempotencyEntry(fp, leaseMs)));

    describe('tryInsert', () => {
      it('claims a fresh key with fencing token 1 and a nonce', async () => {
        const key = IdempotencyKey.default();
        const result = await claim(key);
        expect(result.fencingToken.value).toBe(1n);
        expect(result.fencingToken.nonce).toEqual(expect.any(String));
        expect(result.entry.isCompleted()).toBe(false);
        expect(result.entry.fingerprint.equals(FP_A)).toBe(true);
      });

      it('answers exists with the live processing entry, unmodified by the failed claim', async () => {
        const key = IdempotencyKey.default();
        const first = await claim(key, FP_A, LONG);
        const second = exists(await store.tryInsert(key, new IdempotencyEntry(FP_B, 5_000)));
        expect(second.entry.isCompleted()).toBe(false);
        expect(second.entry.fingerprint.equals(FP_A)).toBe(true);
        expect(second.entry.ttl).toBe(LONG);
        // The first holder still owns the key.
        const outcome = await store.complete(key, first.entry.complete(response()), first.fencingToken, LONG);
        expect(outcome).toBe(FencedOutcome.Applied);
      });

      it('answers exists with the completed entry and its response', async () => {
        const key = IdempotencyKey.default();
        const first = await claim(key);
        await store.complete(
          key,
          first.entry.complete(response('done', 202, { 'content-type': 'text/plain' })),
          first.fencingToken,
          LONG,
        );
        const again = exists(await store.tryInsert(key, new IdempotencyEntry(FP_A, LONG)));
        expect(again.entry.isCompleted()).toBe(true);
        if (!again.entry.isCompleted()) return;
        expect(again.entry.response.statusCode).toBe(202);
        expect(Buffer.from(again.entry.response.body).toString()).toBe('done');
        expect(again.entry.response.metadata).toEqual({ 'content-type': 'text/plain' });
      });

      it('lets exactly one of 50 concurrent claims of one key win', async () => {
        const key = IdempotencyKey.default();
        const results = await Promise.all(
          Array.from({ length: 50 }, () => store.tryInsert(key, new IdempotencyEntry(FP_A, LONG))),
        );
        expect(results.filter((r) => r.kind === 'claimed')).toHaveLength(1);
        expect(results.filter((r) => r.kind === 'exists')).toHaveLength(49);
      });

      it('keeps different keys, scoped keys and long keys apart', async () => {
        const base = IdempotencyKey.default();
        const keys = [
          base,
          base.scoped('alice'),
          base.scoped('bob'),
          base.scoped('alice').scoped('x'),
          new IdempotencyKey('é'.repeat(127) + 'x'),
        ];
        for (const key of keys) await claim(key);
        for (const key of keys) expect((await store.get(key))?.isCompleted()).toBe(false);
      });

      it('hands out an entry that completing does not affect for anyone else', async () => {
        const key = IdempotencyKey.default();
        const first = await claim(key);
        const other = exists(await store.tryInsert(key, new IdempotencyEntry(FP_A, LONG)));
        if (other.entry.isProcessing()) other.entry.complete(response('not mine'));
        expect(await store.complete(key, first.entry.complete(response('mine')), first.fencingToken, LONG)).toBe(
          FencedOutcome.Applied,
        );
        const stored = await store.get(key);
        expect(stored?.isCompleted() && Buffer.from(stored.response.body).toString()).toBe('mine');
      });
    });

    describe('complete', () => {
      it('stores the response: status, exact bytes and metadata', async () => {
        const key = IdempotencyKey.default();
        const body = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
        const meta = { 'content-type': 'application/octet-stream', location: '/charges/ü/1', empty: '' };
        const c = await claim(key);
        expect(await store.complete(key, c.entry.complete(response(body, 200, meta)), c.fencingToken, LONG)).toBe(
          FencedOutcome.Applied,
        );
        const stored = await store.get(key);
        expect(stored?.isCompleted()).toBe(true);
        if (!stored?.isCompleted()) return;
        expect(stored.response.statusCode).toBe(200);
        expect(Buffer.from(stored.response.body).equals(Buffer.from(body))).toBe(true);
        expect(stored.response.metadata).toEqual(meta);
        expect(stored.ttl).toBe(LONG);
        expect(stored.fingerprint.equals(FP_A)).toBe(true);
      });

      it('stores an empty body and a 1 MiB body', async () => {
        const empty = IdempotencyKey.default();
        const big = IdempotencyKey.default();
        const bigBody = Buffer.alloc(1 << 20, 0xab);
        const c1 = await claim(empty);
        const c2 = await claim(big);
        await store.complete(empty, c1.entry.complete(response('', 204)), c1.fencingToken, LONG);
        await store.complete(big, c2.entry.complete(response(bigBody, 200)), c2.fencingToken, LONG);
        const e = await store.get(empty);
        const b = await store.get(big);
        expect(e?.isCompleted() && e.response.body.byteLength).toBe(0);
        expect(b?.isCompleted() && Buffer.from(b.response.body).equals(bigBody)).toBe(true);
      });

      it('answers KeyExpired for a key never claimed', async () => {
        const key = IdempotencyKey.default();
        const entry = new IdempotencyEntry(FP_A, LONG).complete(response());
        expect(await store.complete(key, entry, new FencingToken(1n, 'nonce'), LONG)).toBe(FencedOutcome.KeyExpired);
        expect(await store.get(key)).toBeUndefined();
      });

      it('answers FencingMismatch for another number, another nonce or no nonce, and changes nothing', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        const { value, nonce } = c.fencingToken;
        const forged = [
          new FencingToken(value + 1n, nonce),
          new FencingToken(value, 'other-nonce'),
          new FencingToken(value),
        ];
        for (const token of forged) {
          const entry = new IdempotencyEntry(FP_A, LONG).complete(response('forged'));
          expect(await store.complete(key, entry, token, LONG)).toBe(FencedOutcome.FencingMismatch);
        }
        expect((await store.get(key))?.isCompleted()).toBe(false);
        expect(await store.complete(key, c.entry.complete(response('real')), c.fencingToken, LONG)).toBe(
          FencedOutcome.Applied,
        );
      });

      it('answers FingerprintMismatch for another fingerprint and changes nothing', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        const wrong = new IdempotencyEntry(FP_B, LONG).complete(response('wrong'));
        expect(await store.complete(key, wrong, c.fencingToken, LONG)).toBe(FencedOutcome.FingerprintMismatch);
        const stored = await store.get(key);
        expect(stored?.isCompleted()).toBe(false);
        expect(stored?.fingerprint.equals(FP_A)).toBe(true);
      });

      it('checks the fencing token before the fingerprint', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        const wrong = new IdempotencyEntry(FP_B, LONG).complete(response());
        const token = new FencingToken(c.fencingToken.value + 7n, c.fencingToken.nonce);
        expect(await store.complete(key, wrong, token, LONG)).toBe(FencedOutcome.FencingMismatch);
      });

      it('never replaces the first response; the same holder completing again gets Applied', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        const first = c.entry.complete(response('first'));
        expect(await store.complete(key, first, c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
        expect(await store.complete(key, first, c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
        const other = new IdempotencyEntry(FP_A, LONG).complete(response('second', 500));
        expect(await store.complete(key, other, c.fencingToken, 5)).toBe(FencedOutcome.Applied);
        const stored = await store.get(key);
        expect(stored?.isCompleted() && Buffer.from(stored.response.body).toString()).toBe('first');
        expect(stored?.isCompleted() && stored.response.statusCode).toBe(201);
        await sleepFor(30);
        expect(await store.get(key)).toBeDefined();
      });

      it('a token restored from JSON still completes its claim', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        const restored = FencingToken.fromJSON(JSON.parse(JSON.stringify(c.fencingToken)));
        expect(await store.complete(key, c.entry.complete(response()), restored, LONG)).toBe(FencedOutcome.Applied);
      });

      it('rejects invalid durations with a RangeError naming ttlMs', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        const done = c.entry.complete(response());
        for (const bad of [0, -1, 1.5, NaN, Infinity]) {
          await expect(store.complete(key, done, c.fencingToken, bad)).rejects.toThrow(/ttlMs/);
          await expect(store.touch(key, c.fencingToken, bad)).rejects.toThrow(RangeError);
        }
        expect((await store.get(key))?.isCompleted()).toBe(false);
      });
    });

    describe('expiry, reclaim and fencing', () => {
      it('treats an expired processing entry as missing and reclaims it with a newer token', async () => {
        const key = IdempotencyKey.default();
        const first = await claim(key, FP_A, 80);
        await sleepFor(150);
        expect(await store.get(key)).toBeUndefined();
        const second = await claim(key, FP_A, LONG);
        expect(second.fencingToken.isNewerThan(first.fencingToken)).toBe(true);
      });

      it('refuses a stale completion after expiry and reclaim, leaving the new claim untouched', async () => {
        const key = IdempotencyKey.default();
        const stale = await claim(key, FP_A, 80);
        await sleepFor(150);
        const fresh = await claim(key, FP_A, LONG);
        const late = stale.entry.complete(response('stale'));
        expect(await store.complete(key, late, stale.fencingToken, LONG)).toBe(FencedOutcome.FencingMismatch);
        expect(await store.remove(key, stale.fencingToken)).toBe(FencedOutcome.FencingMismatch);
        expect(await store.touch(key, stale.fencingToken, LONG)).toBe(FencedOutcome.FencingMismatch);
        expect((await store.get(key))?.isCompleted()).toBe(false);
        expect(await store.complete(key, fresh.entry.complete(response('fresh')), fresh.fencingToken, LONG)).toBe(
          FencedOutcome.Applied,
        );
        const stored = await store.get(key);
        expect(stored?.isCompleted() && Buffer.from(stored.response.body).toString()).toBe('fresh');
      });

      it('answers KeyExpired to a completion after the lease ran out unclaimed', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key, FP_A, 60);
        await sleepFor(120);
        expect(await store.complete(key, c.entry.complete(response()), c.fencingToken, LONG)).toBe(
          FencedOutcome.KeyExpired,
        );
        expect(await store.get(key)).toBeUndefined();
      });

      it('keeps a completed entry ttlMs from completion, then lets it expire', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key, FP_A, 150);
        await sleepFor(50);
        await store.complete(key, c.entry.complete(response()), c.fencingToken, 400);
        await sleepFor(200); // past the original lease
        expect((await store.get(key))?.isCompleted()).toBe(true);
        await sleepFor(300);
        expect(await store.get(key)).toBeUndefined();
        expect((await store.tryInsert(key, new IdempotencyEntry(FP_A, LONG))).kind).toBe('claimed');
      });

      it('gives strictly increasing tokens across remove, purge and expiry', async () => {
        const key = IdempotencyKey.default();
        const tokens: FencingToken[] = [];
        let c = await claim(key);
        tokens.push(c.fencingToken);
        await store.remove(key, c.fencingToken);
        c = await claim(key);
        tokens.push(c.fencingToken);
        await store.purge(key);
        c = await claim(key, FP_A, 50);
        tokens.push(c.fencingToken);
        await sleepFor(100);
        c = await claim(key);
        tokens.push(c.fencingToken);
        for (let i = 1; i < tokens.length; i++) expect(tokens[i].isNewerThan(tokens[i - 1])).toBe(true);
        expect(tokens.map((t) => t.value)).toEqual([1n, 2n, 3n, 4n]);
      });
    });

    describe('remove', () => {
      it('releases a processing entry so the key can be claimed again', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        expect(await store.remove(key, c.fencingToken)).toBe(FencedOutcome.Applied);
        expect(await store.get(key)).toBeUndefined();
        expect((await store.tryInsert(key, new IdempotencyEntry(FP_B, LONG))).kind).toBe('claimed');
      });

      it('releases a completed entry for its holder', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        await store.complete(key, c.entry.complete(response()), c.fencingToken, LONG);
        expect(await store.remove(key, c.fencingToken)).toBe(FencedOutcome.Applied);
        expect(await store.get(key)).toBeUndefined();
      });

      it('refuses another token and answers KeyExpired for a missing key', async () => {
        const key = IdempotencyKey.default();
        expect(await store.remove(key, new FencingToken(1n, 'x'))).toBe(FencedOutcome.KeyExpired);
        const c = await claim(key);
        expect(await store.remove(key, new FencingToken(c.fencingToken.value, 'x'))).toBe(
          FencedOutcome.FencingMismatch,
        );
        expect(await store.get(key)).toBeDefined();
      });
    });

    describe('touch', () => {
      it('extends a live processing lease', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key, FP_A, 150);
        await sleepFor(80);
        expect(await store.touch(key, c.fencingToken, 400)).toBe(FencedOutcome.Applied);
        await sleepFor(200); // past the first lease
        const entry = await store.get(key);
        expect(entry?.isCompleted()).toBe(false);
        expect(entry?.ttl).toBe(400);
        expect(await store.complete(key, c.entry.complete(response()), c.fencingToken, LONG)).toBe(
          FencedOutcome.Applied,
        );
      });

      it('never extends a completed entry', async () => {
        const key = IdempotencyKey.default();
        const c = await claim(key);
        await store.complete(key, c.entry.complete(response()), c.fencingToken, 150);
        expect(await store.touch(key, c.fencingToken, LONG)).not.toBe(FencedOutcome.Applied);
        await sleepFor(250);
        expect(await store.get(key)).toBeUndefined();
      });

      it('answers KeyExpired for a missing key and FencingMismatch for another token', async () => {
        const key = IdempotencyKey.default();
        expect(await store.touch(key, new FencingToken(1n, 'x'), LONG)).toBe(FencedOutcome.KeyExpired);
        const c = await claim(key);
        expect(await store.touch(key, new FencingToken(c.fencingToken.value + 1n, c.fencingToken.nonce), LONG)).toBe(
          FencedOutcome.FencingMismatch,
        );
      });
    });

    describe('purge and get', () => {
      it('purge deletes processing and completed entries and ignores missing keys', async () => {
        const a = IdempotencyKey.default();
        const b = IdempotencyKey.default();
        await claim(a);
        const c = await claim(b);
        await store.complete(b, c.entry.complete(response()), c.fencingToken, LONG);
        await store.purge(a);
        await store.purge(b);
        await store.purge(IdempotencyKey.default());
        expect(await store.get(a)).toBeUndefined();
        expect(await store.get(b)).toBeUndefined();
      });

      it('get reads without claiming', async () => {
        const key = IdempotencyKey.default();
        expect(await store.get(key)).toBeUndefined();
        expect((await store.tryInsert(key, new IdempotencyEntry(FP_A, LONG))).kind).toBe('claimed');
      });
    });

    describe('claim builder', () => {
      const run = (key: IdempotencyKey, body: string, effect: (t: FencingToken) => Promise<CachedResponse>) =>
        store.claim(key, 2_000).fingerprint('POST /charges', body).executeOrReplay(LONG, effect);

      it('executes once, then replays; the side effect gets the stored token', async () => {
        const key = IdempotencyKey.default();
        let runs = 0;
        let seen: FencingToken | undefined;
        const effect = async (token: FencingToken) => {
          runs++;
          seen = token;
          return response(`charge ${runs}`);
        };
        const first = await run(key, '{}', effect);
        expect(first.kind).toBe('executed');
        expect(seen?.value).toBe(1n);
        const second = await run(key, '{}', effect);
        expect(second.kind).toBe('replayed');
        expect(second.kind === 'replayed' && Buffer.from(second.response.body).toString()).toBe('charge 1');
        expect(runs).toBe(1);
      });

      it('answers in-flight while running and fingerprint-mismatch for another body', async () => {
        const key = IdempotencyKey.default();
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const first = run(key, '{}', async () => {
          await gate;
          return response();
        });
        await sleepFor(20);
        expect((await run(key, '{}', async () => response())).kind).toBe('in-flight');
        expect((await run(key, '{"x":1}', async () => response())).kind).toBe('fingerprint-mismatch');
        release();
        expect((await first).kind).toBe('executed');
        expect((await run(key, '{"x":1}', async () => response())).kind).toBe('fingerprint-mismatch');
      });

      it('releases the key when the side effect throws, so a retry runs', async () => {
        const key = IdempotencyKey.default();
        await expect(
          run(key, '{}', async () => {
            throw new Error('card declined');
          }),
        ).rejects.toThrow('card declined');
        expect(await store.get(key)).toBeUndefined();
        expect((await run(key, '{}', async () => response())).kind).toBe('executed');
      });

      it('renews the lease while a side effect outlives it', async () => {
        const key = IdempotencyKey.default();
        const slow = store
          .claim(key, 150)
          .fingerprint('POST /slow', '')
          .executeOrReplay(LONG, async () => {
            await sleepFor(500);
            return response();
          });
        await sleepFor(300); // two leases later
        expect((await store.tryInsert(key, new IdempotencyEntry(strategy.compute('POST /slow', ''), LONG))).kind).toBe(
          'exists',
        );
        expect((await slow).kind).toBe('executed');
      });
    });
  });
}

/** For suites that need a fingerprint other than the contract's. */
export const contractFingerprints: { a: Fingerprint; b: Fingerprint } = { a: FP_A, b: FP_B };
