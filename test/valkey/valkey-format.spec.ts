/**
 * The stored entry format on a real server: format 2 byte for byte, entries of format 1 (what the
 * previous version of the store left, for rolling upgrades) and corrupt format 2 data.
 */
import { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CachedResponse,
  FencedOutcome,
  FencingToken,
  IdempotencyEntry,
  IdempotencyKey,
  InsertResult,
  StoreDecodeError,
  ValkeyStore,
} from '../../lib';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { claimTail } from '../../lib/stores/valkey-codec';
import { commandStats, fp, formatTwoEntry, freshPrefix, keysOf, processing, response, statsDelta } from './helpers';

const LONG = 60_000;
const readScript = (name: string) => readFileSync(join(__dirname, '../../lib/stores/lua', `${name}.lua`), 'utf8');
const NONCE = 'AbCdEfGhIjKlMnOpQrStUv';
const FP = '0123456789abcdef0123456789abcdef';

function claimed(result: InsertResult): Extract<InsertResult, { kind: 'claimed' }> {
  if (result.kind !== 'claimed') throw new Error(`expected a claim, got ${result.kind}`);
  return result;
}

// The claim script of format 1, as the previous version ships it: what an instance that has not
// been upgraded yet runs against the same keys.
const CLAIM_SCRIPT_V1 = `#!lua
local entry = redis.pcall('HGETALL', KEYS[1])
if entry.err then
  return redis.error_reply('IDEMCORRUPT ' .. entry.err)
end
if #entry > 0 then
  return entry
end
local token = redis.pcall('INCR', KEYS[2])
if type(token) == 'table' then
  return redis.error_reply('IDEMCORRUPT fencing counter: ' .. tostring(token.err))
end
redis.call('HSET', KEYS[1], 'v', '1', 'state', 'processing', 'fp', ARGV[1], 'token', string.format('%d', token),
  'nonce', ARGV[3], 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token`;

describeValkey('ValkeyStore entry format', () => {
  let server: StandaloneServer;
  let client: Redis;
  beforeAll(async () => {
    server = await startStandalone();
    client = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await client.connect();
  }, 30_000);
  afterAll(async () => {
    client?.disconnect();
    await server?.stop();
  }, 30_000);

  describe('format 2', () => {
    it('stores a processing entry as an 84-byte string: version, state, token, nonce, fingerprint, lease', async () => {
      const prefix = freshPrefix('f2');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const { entry } = keysOf(prefix, key);
      const c = claimed(await store.tryInsert(key, processing(0xabcn, 30_000)));
      expect(await client.type(entry)).toBe('string');
      const raw = await client.getBuffer(entry);
      expect(raw).toEqual(
        formatTwoEntry({
          token: 1,
          nonce: c.fencingToken.nonce ?? '',
          fingerprint: '00000000000000000000000000000abc',
          ttlMs: 30_000,
        }),
      );
      expect(raw?.toString('latin1', 0, 18)).toBe('\x02p0000000000000001');
      // The claim script reads the lease from those bytes: the key lives exactly that long.
      expect(await client.pttl(entry)).toBeGreaterThan(25_000);
      expect(await client.pttl(entry)).toBeLessThanOrEqual(30_000);
      for (const lease of [2 ** 32 + 7, 2 ** 46]) {
        const other = IdempotencyKey.default();
        claimed(await store.tryInsert(other, processing(1, lease)));
        const pttl = await client.pttl(keysOf(prefix, other).entry);
        expect([lease, pttl <= lease && pttl > lease - 5_000]).toEqual([lease, true]);
      }
    });

    it('stores a completion in place: state c, the replay window, status, metadata, then the raw body', async () => {
      const prefix = freshPrefix('f2c');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const { entry } = keysOf(prefix, key);
      const c = claimed(await store.tryInsert(key, processing(0xabcn, 30_000)));
      const body = Buffer.from([0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x80, 0x7b]);
      const metadata = { 'content-type': 'application/octet-stream', etag: '"x"' };
      const done = c.entry.complete(new CachedResponse({ statusCode: 202, body, metadata }));
      expect(await store.complete(key, done, c.fencingToken, 90_000)).toBe(FencedOutcome.Applied);
      const raw = await client.getBuffer(entry);
      expect(raw).toEqual(
        formatTwoEntry({
          token: 1,
          nonce: c.fencingToken.nonce ?? '',
          fingerprint: '00000000000000000000000000000abc',
          ttlMs: 90_000,
          status: 202,
          metadata: JSON.stringify(metadata),
          body,
        }),
      );
      const stored = await store.get(key);
      expect(stored?.isCompleted()).toBe(true);
      if (!stored?.isCompleted()) return;
      expect(stored.ttl).toBe(90_000);
      expect(stored.fingerprint.toString()).toBe('00000000000000000000000000000abc');
      expect(Buffer.from(stored.response.body).equals(body)).toBe(true); // the bytes themselves, not base64
      expect(stored.response.metadata).toEqual(metadata);
      expect(stored.response.statusCode).toBe(202);
    });

    it('state u (completed, not yet acknowledged, written by durable stores): read as completed by every script; the ack script marks it c, only for its own claim', async () => {
      const prefix = freshPrefix('f2u');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const { entry } = keysOf(prefix, key);
      const c = claimed(await store.tryInsert(key, processing(0xabcn, 30_000)));
      const done = c.entry.complete(response('{"u":1}'));
      expect(await store.complete(key, done, c.fencingToken, 90_000)).toBe(FencedOutcome.Applied);
      // As a durable store writes it: the same bytes with state u.
      const written = (await client.getBuffer(entry))!;
      await client.setrange(entry, 1, 'u');
      const stored = await store.get(key);
      expect(stored?.isCompleted() && Buffer.from(stored.response.body).toString()).toBe('{"u":1}');
      const replay = await store.tryInsert(key, processing(0xabcn, 30_000));
      expect(replay.kind === 'exists' && replay.entry.isCompleted()).toBe(true);
      expect(await store.touch(key, c.fencingToken, LONG)).toBe(FencedOutcome.KeyExpired);
      const other = new FencingToken(c.fencingToken.value, 'zzzzzzzzzzzzzzzzzzzzzz');
      expect(await store.complete(key, done, other, LONG)).toBe(FencedOutcome.FencingMismatch);
      expect(await store.complete(key, done, c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      expect(await store.remove(key, other)).toBe(FencedOutcome.FencingMismatch);
      // Nothing above changed it, but for the state byte.
      expect((await client.getBuffer(entry))!.subarray(2).equals(written.subarray(2))).toBe(true);
      const ack = (id: string) => client.eval(readScript('ack'), 1, entry, `\x02u${id}`) as Promise<number>;
      const id = written.toString('latin1', 2, 40);
      expect(await ack(`${id.slice(0, -1)}x`)).toBe(1);
      expect((await client.getBuffer(entry))!.toString('latin1', 0, 2)).toBe('\x02u');
      expect(await ack(id)).toBe(0);
      expect((await client.getBuffer(entry))!.equals(written)).toBe(true);
      expect(await ack(id)).toBe(1); // already c: nothing to do
      await client.setrange(entry, 1, 'u');
      expect(await store.remove(key, c.fencingToken)).toBe(FencedOutcome.Applied);
      expect(await client.exists(entry)).toBe(0);
    });

    it('a claim finding state u bumps the fencing counter by 0 (a write for the WAIT behind it) only when a durable store sends it (ARGV[2]); else it writes nothing', async () => {
      const prefix = freshPrefix('f2ubump');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const { entry, fence } = keysOf(prefix, key);
      const c = claimed(await store.tryInsert(key, processing(1, 30_000)));
      expect(await store.complete(key, c.entry.complete(response('{"u":2}')), c.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
      await client.setrange(entry, 1, 'u');
      const written = (await client.getBuffer(entry))!;
      const incrbys = async (run: () => Promise<unknown>): Promise<number | undefined> => {
        const before = await commandStats(client);
        await run();
        return statsDelta(before, await commandStats(client)).incrby;
      };
      // A store without durability sends no WAIT: its replay reads the entry and writes nothing.
      expect(
        await incrbys(async () => {
          const replay = await store.tryInsert(key, processing(1, 30_000));
          expect(replay.kind === 'exists' && replay.entry.isCompleted()).toBe(true);
        }),
      ).toBeUndefined();
      const tail = claimTail(NONCE, FP, 30_000);
      const claim = async (...argv: string[]) =>
        (await client.callBuffer('EVAL', readScript('claim'), 2, entry, fence, tail, ...argv)) as Buffer;
      expect(await incrbys(async () => expect((await claim()).equals(written)).toBe(true))).toBeUndefined();
      // What a durable store sends: the same answer, and one INCRBY of the counter by 0.
      expect(await incrbys(async () => expect((await claim('1')).equals(written)).toBe(true))).toBe(1);
      expect(await client.get(fence)).toBe('1');
      // A completed entry in state c: nothing written either way.
      await client.setrange(entry, 1, 'c');
      expect(await incrbys(async () => expect((await claim('1'))[1]).toBe(0x63))).toBeUndefined();
      expect((await client.getBuffer(entry))!.subarray(2).equals(written.subarray(2))).toBe(true);
    });

    it('stores a body given as text as its UTF-8 bytes (non-ASCII, astral, a lone surrogate)', async () => {
      const prefix = freshPrefix('f2t');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const c = claimed(await store.tryInsert(key, processing(0xabcn, 30_000)));
      const text = '{"name":"Zoë","emoji":"😀","broken":"\ud800"}';
      const done = c.entry.complete(new CachedResponse({ statusCode: 201, body: text }));
      expect(await store.complete(key, done, c.fencingToken, 90_000)).toBe(FencedOutcome.Applied);
      expect(await client.getBuffer(keysOf(prefix, key).entry)).toEqual(
        formatTwoEntry({
          token: 1,
          nonce: c.fencingToken.nonce ?? '',
          fingerprint: '00000000000000000000000000000abc',
          ttlMs: 90_000,
          status: 201,
          body: Buffer.from(text, 'utf8'),
        }),
      );
    });

    it('stores empty metadata as length 0 and an empty body as nothing', async () => {
      const prefix = freshPrefix('f2e');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const c = claimed(await store.tryInsert(key, processing(1)));
      const done = c.entry.complete(new CachedResponse({ statusCode: 204, body: '' }));
      expect(await store.complete(key, done, c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      const raw = await client.getBuffer(keysOf(prefix, key).entry);
      expect(raw?.length).toBe(84);
      expect(raw?.readUInt32BE(80)).toBe(0);
      const replay = await store.tryInsert(key, processing(1));
      const stored = replay.kind === 'exists' && replay.entry.isCompleted() ? replay.entry.response : undefined;
      // `equals`, not toEqual: the body is an accessor, which Jest's deep equality does not read.
      expect(stored?.equals(new CachedResponse({ statusCode: 204, body: new Uint8Array(0) }))).toBe(true);
      expect(stored?.metadata).toEqual({});
    });

    it('rewrites only the lease bytes on touch', async () => {
      const prefix = freshPrefix('f2t');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const { entry } = keysOf(prefix, key);
      const c = claimed(await store.tryInsert(key, processing(1, 5_000)));
      const before = await client.getBuffer(entry);
      expect(await store.touch(key, c.fencingToken, 2 ** 46)).toBe(FencedOutcome.Applied);
      const after = await client.getBuffer(entry);
      expect(after?.readUIntBE(72, 6)).toBe(2 ** 46);
      expect(Buffer.concat([after!.subarray(0, 72), after!.subarray(78)])).toEqual(
        Buffer.concat([before!.subarray(0, 72), before!.subarray(78)]),
      );
      expect((await store.get(key))?.ttl).toBe(2 ** 46);
    });

    it('a claim that finds an entry in flight changes its state byte to w and nothing else; every script reads w as processing', async () => {
      const prefix = freshPrefix('f2w');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const { entry } = keysOf(prefix, key);
      const c = claimed(await store.tryInsert(key, processing(1, 20_000)));
      const before = await client.getBuffer(entry);
      const found = await store.tryInsert(key, processing(1, LONG));
      const marked = await client.getBuffer(entry);
      expect(marked?.toString('latin1', 0, 2)).toBe('\x02w');
      expect(Buffer.concat([marked!.subarray(0, 1), marked!.subarray(2)])).toEqual(
        Buffer.concat([before!.subarray(0, 1), before!.subarray(2)]),
      );
      // The lease is not extended, and the entry reads as the same processing entry.
      expect(await client.pttl(entry)).toBeLessThanOrEqual(20_000);
      expect(await client.pttl(entry)).toBeGreaterThan(15_000);
      for (const seen of [found.kind === 'exists' ? found.entry : undefined, await store.get(key)]) {
        expect([seen?.isProcessing(), seen?.fingerprint.equals(fp(1)), seen?.ttl]).toEqual([true, true, 20_000]);
      }
      // A second claim leaves a marked entry as it is.
      expect((await store.tryInsert(key, processing(2))).kind).toBe('exists');
      expect(await client.getBuffer(entry)).toEqual(marked);
      // Renewal, fencing and fingerprint checks, then the completion, as for state p.
      expect(await store.touch(key, c.fencingToken, 25_000)).toBe(FencedOutcome.Applied);
      expect(await client.pttl(entry)).toBeGreaterThan(20_000);
      expect((await client.getBuffer(entry))?.toString('latin1', 0, 2)).toBe('\x02w');
      const stranger = new FencingToken(c.fencingToken.value, 'ZZZZZZZZZZZZZZZZZZZZZZ');
      expect(await store.touch(key, stranger, LONG)).toBe(FencedOutcome.FencingMismatch);
      expect(await store.remove(key, stranger)).toBe(FencedOutcome.FencingMismatch);
      expect(await store.complete(key, processing(1).complete(response()), stranger, LONG)).toBe(
        FencedOutcome.FencingMismatch,
      );
      expect(await store.complete(key, processing(2).complete(response()), c.fencingToken, LONG)).toBe(
        FencedOutcome.FingerprintMismatch,
      );
      expect((await client.getBuffer(entry))?.readUIntBE(72, 6)).toBe(25_000);
      expect(await store.complete(key, processing(1).complete(response()), c.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
      const done = await client.getBuffer(entry);
      expect(done?.toString('latin1', 0, 2)).toBe('\x02c');
      expect(await store.complete(key, processing(1).complete(response('other')), c.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
      // A claim on a completed entry marks nothing.
      expect((await store.tryInsert(key, processing(1))).kind).toBe('exists');
      expect(await client.getBuffer(entry)).toEqual(done);

      // The holder's release of a marked entry.
      const other = IdempotencyKey.default();
      const d = claimed(await store.tryInsert(other, processing(1)));
      expect((await store.tryInsert(other, processing(1))).kind).toBe('exists');
      expect((await client.getBuffer(keysOf(prefix, other).entry))?.toString('latin1', 0, 2)).toBe('\x02w');
      expect(await store.remove(other, d.fencingToken)).toBe(FencedOutcome.Applied);
      expect(await client.exists(keysOf(prefix, other).entry)).toBe(0);
    });

    it('keeps token numbers exact up to 2^53 - 1', async () => {
      const prefix = freshPrefix('big');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      await client.set(keysOf(prefix, key).fence, String(2 ** 53 - 2));
      const c = claimed(await store.tryInsert(key, processing(1)));
      expect(c.fencingToken.value).toBe(2n ** 53n - 1n);
      const raw = await client.getBuffer(keysOf(prefix, key).entry);
      expect(raw?.toString('latin1', 2, 18)).toBe('001fffffffffffff');
      // A token restored from JSON (a bigint, not the number the claim answered) completes it.
      const restored = FencingToken.fromJSON(JSON.parse(JSON.stringify(c.fencingToken)));
      expect(await store.touch(key, restored, LONG)).toBe(FencedOutcome.Applied);
      expect(await store.complete(key, c.entry.complete(response()), restored, LONG)).toBe(FencedOutcome.Applied);
    });

    it('tells a token with the right number but another nonce from the claim', async () => {
      const prefix = freshPrefix('nonce');
      const store = new ValkeyStore(client, { prefix });
      const key = IdempotencyKey.default();
      const c = claimed(await store.tryInsert(key, processing(1)));
      const nonce = c.fencingToken.nonce ?? '';
      const others = [
        new FencingToken(c.fencingToken.value, `${nonce.slice(0, 21)}${nonce[21] === 'A' ? 'B' : 'A'}`),
        new FencingToken(c.fencingToken.value, `${nonce}x`), // a longer nonce that starts like the claim's
        new FencingToken(c.fencingToken.value, nonce.slice(0, 21)),
        new FencingToken(c.fencingToken.value),
        { value: c.fencingToken.value, nonce } as unknown as FencingToken, // not a FencingToken
      ];
      for (const other of others) {
        expect(await store.touch(key, other, LONG)).toBe(FencedOutcome.FencingMismatch);
        expect(await store.complete(key, processing(1).complete(response()), other, LONG)).toBe(
          FencedOutcome.FencingMismatch,
        );
        expect(await store.remove(key, other)).toBe(FencedOutcome.FencingMismatch);
      }
      expect(await store.remove(key, c.fencingToken)).toBe(FencedOutcome.Applied);
    });
  });

  describe('format 1 entries, left by the previous version (rolling upgrade)', () => {
    const v1Processing = (token: number) => ({
      v: '1',
      state: 'processing',
      fp: FP,
      token: String(token),
      nonce: NONCE,
      ttl: String(LONG),
    });
    const v1Completed = (token: number) => ({
      ...v1Processing(token),
      state: 'completed',
      status: '201',
      body: Buffer.from([0x7b, 0x00, 0xff, 0x7d]),
      meta: '{"content-type":"application/json"}',
    });
    const v1Token = (token: number) => new FencingToken(BigInt(token), NONCE);

    async function leaveV1(store: ValkeyStore, fields: Record<string, string | Buffer>): Promise<IdempotencyKey> {
      const key = IdempotencyKey.default();
      const { entry, fence } = keysOf(store.prefix, key);
      await client.hset(entry, fields);
      await client.pexpire(entry, LONG);
      await client.set(fence, String(fields.token));
      return key;
    }

    it('a claim sees a completed format 1 entry and replays it; get reads it; nothing changes', async () => {
      const store = new ValkeyStore(client, { prefix: freshPrefix('v1c') });
      const key = await leaveV1(store, v1Completed(7));
      const { entry, fence } = keysOf(store.prefix, key);
      const before = await client.hgetallBuffer(entry);
      const replay = await store.tryInsert(key, processing(BigInt(`0x${FP}`)));
      expect(replay.kind).toBe('exists');
      expect(replay.entry.isCompleted()).toBe(true);
      if (!replay.entry.isCompleted()) return;
      expect(replay.entry.fingerprint.toString()).toBe(FP);
      expect(replay.entry.response.statusCode).toBe(201);
      expect([...replay.entry.response.body]).toEqual([0x7b, 0x00, 0xff, 0x7d]);
      expect(replay.entry.response.metadata).toEqual({ 'content-type': 'application/json' });
      const got = await store.get(key);
      expect(got?.isCompleted() && got.response.equals(replay.entry.response)).toBe(true);
      expect(await client.hgetallBuffer(entry)).toEqual(before);
      expect(await client.get(fence)).toBe('7'); // no token drawn
    });

    it('a claim sees a processing format 1 entry as in flight, so a retry during an upgrade never runs twice', async () => {
      const store = new ValkeyStore(client, { prefix: freshPrefix('v1p') });
      const key = await leaveV1(store, v1Processing(3));
      for (let i = 0; i < 3; i++) {
        const retry = await store.tryInsert(key, processing(BigInt(`0x${FP}`)));
        expect(retry.kind).toBe('exists');
        expect(retry.entry.isProcessing() && retry.entry.ttl).toBe(LONG);
      }
      expect((await store.get(key))?.isProcessing()).toBe(true);
      // And the engine's way in: a second request is answered "in flight", its work never runs.
      let ran = 0;
      const outcome = await store
        .claim(key, 10_000)
        .fingerprintWith({ compute: () => fp(BigInt(`0x${FP}`)) }, 'POST /x', '')
        .executeOrReplay(LONG, async () => {
          ran++;
          return response();
        });
      expect(outcome.kind).toBe('in-flight');
      expect(ran).toBe(0);
    });

    it("complete, touch and remove with another claim's token answer FencingMismatch and change nothing", async () => {
      const store = new ValkeyStore(client, { prefix: freshPrefix('v1m') });
      for (const fields of [v1Processing(5), v1Completed(5)]) {
        const key = await leaveV1(store, fields);
        const { entry } = keysOf(store.prefix, key);
        const before = await client.hgetallBuffer(entry);
        for (const other of [new FencingToken(5n, 'BbCdEfGhIjKlMnOpQrStUv'), new FencingToken(4n, NONCE)]) {
          expect(await store.complete(key, processing(1).complete(response()), other, LONG)).toBe(
            FencedOutcome.FencingMismatch,
          );
          expect(await store.touch(key, other, LONG)).toBe(FencedOutcome.FencingMismatch);
          expect(await store.remove(key, other)).toBe(FencedOutcome.FencingMismatch);
        }
        expect(await client.hgetallBuffer(entry)).toEqual(before);
      }
    });

    it("the format 1 claim's own token still completes, renews and releases it", async () => {
      const store = new ValkeyStore(client, { prefix: freshPrefix('v1own') });
      const fingerprint = fp(BigInt(`0x${FP}`));

      const renewed = await leaveV1(store, v1Processing(9));
      expect(await store.touch(renewed, v1Token(9), 2 * LONG)).toBe(FencedOutcome.Applied);
      expect(await client.pttl(keysOf(store.prefix, renewed).entry)).toBeGreaterThan(LONG);
      expect((await store.get(renewed))?.ttl).toBe(2 * LONG);

      const released = await leaveV1(store, v1Processing(9));
      expect(await store.remove(released, v1Token(9))).toBe(FencedOutcome.Applied);
      expect(await store.get(released)).toBeUndefined();

      const completed = await leaveV1(store, v1Processing(9));
      const wrongFp = processing(1).complete(response());
      expect(await store.complete(completed, wrongFp, v1Token(9), LONG)).toBe(FencedOutcome.FingerprintMismatch);
      const done = processing(BigInt(`0x${FP}`)).complete(response('late'));
      expect(await store.complete(completed, done, v1Token(9), LONG)).toBe(FencedOutcome.Applied);
      // Now a format 2 entry of the same claim: replayed, and a repeat still answers Applied.
      expect(await client.type(keysOf(store.prefix, completed).entry)).toBe('string');
      const replay = await store.tryInsert(completed, new IdempotencyEntry(fingerprint, 1000));
      expect(replay.kind === 'exists' && replay.entry.isCompleted() && replay.entry.response.text()).toBe('late');
      expect(await store.complete(completed, done, v1Token(9), LONG)).toBe(FencedOutcome.Applied);
      expect(await store.touch(completed, v1Token(9), LONG)).toBe(FencedOutcome.KeyExpired);

      const finished = await leaveV1(store, v1Completed(9));
      expect(await store.touch(finished, v1Token(9), LONG)).toBe(FencedOutcome.KeyExpired);
      expect(await store.complete(finished, done, v1Token(9), LONG)).toBe(FencedOutcome.Applied);
      const kept = await store.get(finished);
      expect(kept?.isCompleted() && [...kept.response.body]).toEqual([0x7b, 0x00, 0xff, 0x7d]); // the first response stays
      expect(await store.remove(finished, v1Token(9))).toBe(FencedOutcome.Applied);
    });

    it('purge deletes a format 1 entry, and the next claim draws the next token from the same counter', async () => {
      const store = new ValkeyStore(client, { prefix: freshPrefix('v1purge') });
      const key = await leaveV1(store, v1Completed(11));
      await store.purge(key);
      expect(await store.get(key)).toBeUndefined();
      expect(claimed(await store.tryInsert(key, processing(1))).fencingToken.value).toBe(12n);
    });

    it('an instance of the previous version meets a format 2 entry: its claim fails, it never claims the key', async () => {
      const store = new ValkeyStore(client, { prefix: freshPrefix('old') });
      const key = IdempotencyKey.default();
      const { entry, fence } = keysOf(store.prefix, key);
      claimed(await store.tryInsert(key, processing(1)));
      await expect(client.eval(CLAIM_SCRIPT_V1, 2, entry, fence, FP, String(LONG), NONCE)).rejects.toThrow(
        /IDEMCORRUPT WRONGTYPE/,
      );
      expect(await client.get(fence)).toBe('1');
      expect(await client.type(entry)).toBe('string');
    });
  });

  describe('corrupt format 2 data', () => {
    let store: ValkeyStore;
    beforeAll(() => {
      store = new ValkeyStore(client, { prefix: freshPrefix('corrupt') });
    });
    const token = new FencingToken(3n, NONCE);
    const good = {
      token: 3,
      nonce: NONCE,
      fingerprint: FP,
      ttlMs: LONG,
      status: 200,
      metadata: '{"etag":"x"}',
      body: Buffer.from('body'),
    };
    const set = async (key: IdempotencyKey, value: Buffer): Promise<string> => {
      const { entry } = keysOf(store.prefix, key);
      await client.del(entry);
      await client.set(entry, value, 'PX', LONG);
      return entry;
    };

    it('the hand-written baseline decodes', async () => {
      const key = IdempotencyKey.default();
      await set(key, formatTwoEntry(good));
      const entry = await store.get(key);
      expect(entry?.isCompleted() && entry.response.text()).toBe('body');
      expect(await store.touch(key, token, LONG)).toBe(FencedOutcome.KeyExpired);
    });

    it('a malformed field anywhere: StoreDecodeError from get and claim, and the data is left alone', async () => {
      const base = formatTwoEntry(good);
      const patched = (offset: number, bytes: string | Buffer): Buffer => {
        const copy = Buffer.from(base);
        (typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes).copy(copy, offset);
        return copy;
      };
      const variants: [string, Buffer][] = [
        ['format 3', formatTwoEntry({ ...good, version: 3 })],
        ['format 1 as a string', patched(0, '1')],
        ['unknown state', formatTwoEntry({ ...good, state: 'x' })],
        ['token not hex', patched(2, 'zz')],
        ['nonce with a bad character', patched(18, '!')],
        ['fingerprint not hex', patched(40, 'g')],
        ['ttl 0', formatTwoEntry({ ...good, ttlMs: 0 })],
        ['ttl beyond the limit', patched(72, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))],
        ['status 20', formatTwoEntry({ ...good, status: 20 })],
        ['metadata running past the end', patched(80, Buffer.from([0, 0, 1, 0]))],
        ['metadata not JSON', formatTwoEntry({ ...good, metadata: '{not json' })],
        ['metadata an array', formatTwoEntry({ ...good, metadata: '[]' })],
        ['metadata with a number', formatTwoEntry({ ...good, metadata: '{"a":1}' })],
        [
          'processing with a body',
          Buffer.concat([
            formatTwoEntry({ ...good, status: undefined, metadata: undefined, body: undefined }),
            Buffer.from('x'),
          ]),
        ],
        ['a truncated header', base.subarray(0, 83)],
        ['an empty string', Buffer.alloc(0)],
        ['text', Buffer.from('not an entry')],
      ];
      for (const [name, value] of variants) {
        const key = IdempotencyKey.default();
        const entry = await set(key, value);
        for (const [op, run] of [
          ['get', () => store.get(key)],
          ['tryInsert', () => store.tryInsert(key, processing(1))],
        ] as const) {
          const error = await run().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect([name, op, error]).toEqual([name, op, expect.any(StoreDecodeError)]);
        }
        expect([name, await client.getBuffer(entry)]).toEqual([name, value]);
        expect(await client.get(keysOf(store.prefix, key).fence)).toBeNull();
      }
    });

    it('a malformed processing entry: StoreDecodeError from get and claim; the claim marks its state byte and writes nothing else', async () => {
      const key = IdempotencyKey.default();
      const value = formatTwoEntry({ token: 3, nonce: NONCE, fingerprint: 'not hex'.padEnd(32, '!'), ttlMs: LONG });
      const entry = await set(key, value);
      for (const run of [() => store.tryInsert(key, processing(1)), () => store.get(key)]) {
        await expect(run()).rejects.toBeInstanceOf(StoreDecodeError);
      }
      const marked = Buffer.from(value);
      marked.write('w', 1, 'latin1');
      expect(await client.getBuffer(entry)).toEqual(marked);
      expect(await client.get(keysOf(store.prefix, key).fence)).toBeNull();
    });

    it('a header the scripts cannot read: StoreDecodeError from complete, touch and remove too', async () => {
      const variants: [string, Buffer][] = [
        ['format 3', formatTwoEntry({ ...good, version: 3 })],
        ['unknown state', formatTwoEntry({ ...good, state: 'x' })],
        ['a truncated header', formatTwoEntry(good).subarray(0, 39)],
        ['an empty string', Buffer.alloc(0)],
        ['text', Buffer.from('not an entry')],
      ];
      for (const [name, value] of variants) {
        const key = IdempotencyKey.default();
        const entry = await set(key, value);
        for (const [op, run] of [
          ['complete', () => store.complete(key, processing(1).complete(response()), token, LONG)],
          ['touch', () => store.touch(key, token, LONG)],
          ['remove', () => store.remove(key, token)],
        ] as const) {
          const error = await run().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect([name, op, error]).toEqual([name, op, expect.any(StoreDecodeError)]);
        }
        expect([name, await client.getBuffer(entry)]).toEqual([name, value]);
      }
    });
  });
});
