/**
 * Fault tests on real servers: pauses, lost replies and reconnects, script cache flushes,
 * restarts, races between instances, corrupt data, and round trips per operation.
 */
import { Redis } from 'ioredis';
import {
  FencedOutcome,
  FencingToken,
  IdempotencyKey,
  IdempotencyStoreError,
  InsertResult,
  StoreDecodeError,
  StoreTimeoutError,
  ValkeyStore,
} from '../../lib';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import {
  commandStats,
  fewestWrites,
  freshPrefix,
  keysOf,
  processing,
  response,
  sleep,
  stallEventLoop,
  statsDelta,
  writeSyscalls,
} from './helpers';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

const LONG = 60_000;

function claimed(result: InsertResult): Extract<InsertResult, { kind: 'claimed' }> {
  if (result.kind !== 'claimed') throw new Error(`expected a claim, got ${result.kind}`);
  return result;
}

describeValkey('ValkeyStore faults', () => {
  let server: StandaloneServer;
  let admin: Redis;
  const clients = new Set<Redis>();
  const connect = async (port = server.port, extra: Record<string, unknown> = {}): Promise<Redis> => {
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, ...extra });
    clients.add(client);
    await client.connect();
    return client;
  };
  // Once each, and before the server stops: ioredis otherwise waits 2 s for a stream that is gone.
  const disconnect = (client: Redis): void => {
    if (clients.delete(client)) client.disconnect();
  };
  const disconnectFrom = (port: number): void => {
    for (const client of clients) if (client.options.port === port) disconnect(client);
  };

  beforeAll(async () => {
    server = await startStandalone();
    admin = new Redis({ host: server.host, port: server.port });
  }, 30_000);
  afterAll(async () => {
    for (const client of clients) client.disconnect();
    clients.clear();
    admin?.disconnect();
    await server?.stop();
  }, 30_000);

  describe('a paused server (SIGSTOP)', () => {
    let paused: StandaloneServer;
    beforeAll(async () => {
      paused = await startStandalone();
    }, 30_000);
    afterAll(async () => {
      disconnectFrom(paused.port);
      await paused?.stop();
    }, 30_000);

    it('fails every operation with StoreTimeoutError within the timeout, then recovers with no duplicated claim', async () => {
      const client = await connect(paused.port);
      const store = new ValkeyStore(client, { prefix: freshPrefix('pause'), commandTimeoutMs: 300 });
      const held = IdempotencyKey.default();
      const other = IdempotencyKey.default();
      const claim = claimed(await store.tryInsert(held, processing(1, LONG)));
      const done = claim.entry.complete(response('paid'));

      paused.pause();
      try {
        const attempts: [string, () => Promise<unknown>][] = [
          ['claim', () => store.tryInsert(other, processing(1, LONG))],
          ['complete', () => store.complete(held, done, claim.fencingToken, LONG)],
          ['touch', () => store.touch(held, claim.fencingToken, LONG)],
          ['get', () => store.get(held)],
          ['ping', () => store.ping()],
        ];
        for (const [name, attempt] of attempts) {
          const started = Date.now();
          const error = await attempt().then(
            () => undefined,
            (e: unknown) => e,
          );
          const elapsed = Date.now() - started;
          expect([name, error]).toEqual([name, expect.any(StoreTimeoutError)]);
          expect(error).toBeInstanceOf(IdempotencyStoreError);
          expect(elapsed).toBeGreaterThanOrEqual(290);
          expect(elapsed).toBeLessThan(3_000); // an error within the time limit, not a hang (generous: a loaded machine)
        }
      } finally {
        paused.resume();
      }

      // Commands written during the pause still run, in order, once the server resumes: the
      // timed-out claim took the key (a retry pipelined right behind it finds it), and the
      // timed-out completion stored the response. Nothing ran twice.
      const retry = await store.tryInsert(other, processing(1, LONG));
      expect(retry.kind).toBe('exists');
      expect(retry.entry.isCompleted()).toBe(false);
      expect(await client.get(keysOf(store.prefix, other).fence)).toBe('1');
      // Nobody holds that late claim's token: the store releases it as soon as its answer is in,
      // instead of leaving the key blocked until the lease runs out.
      expect(await store.get(other)).toBeUndefined();
      // The holder retries its completion with the same token (as completeWithRetry does).
      expect(await store.complete(held, done, claim.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      const stored = await store.get(held);
      expect(stored?.isCompleted() && Buffer.from(stored.response.body).toString()).toBe('paid');
      expect(await client.get(keysOf(store.prefix, held).fence)).toBe('1');
      // And new work goes through.
      expect(claimed(await store.tryInsert(IdempotencyKey.default(), processing(2))).fencingToken.value).toBe(1n);
      await store.ping();
    });

    it('fails with a typed error, not a hang, while the server is down, and recovers when it is back', async () => {
      const crashing = await startStandalone();
      try {
        const client = await connect(crashing.port);
        const store = new ValkeyStore(client, { prefix: freshPrefix('down'), commandTimeoutMs: 300 });
        const key = IdempotencyKey.default();
        await store.ping();
        process.kill(crashing.pid, 'SIGKILL');
        await sleep(50);
        const started = Date.now();
        await expect(store.tryInsert(key, processing(1))).rejects.toBeInstanceOf(IdempotencyStoreError);
        expect(Date.now() - started).toBeLessThan(3_000); // not a hang (generous: a loaded machine)
        await crashing.restart(); // no AOF: an empty server again
        let up = false;
        for (let i = 0; i < 50 && !up; i++)
          up = await store.ping().then(
            () => true,
            () => sleep(100).then(() => false),
          );
        expect(up).toBe(true);
        // ioredis kept the timed-out claim in its offline queue and sent it after reconnecting, so
        // it took the key; nobody holds its token, so the store released it once its answer came
        // in. A retry then claims afresh with the next token: never two live claims.
        await expect(store.get(key)).resolves.toBeUndefined();
        expect(await client.get(keysOf(store.prefix, key).fence)).toBe('1');
        expect(claimed(await store.tryInsert(key, processing(1))).fencingToken.value).toBe(2n);
        const other = IdempotencyKey.default();
        expect(claimed(await store.tryInsert(other, processing(1))).fencingToken.value).toBe(1n);
      } finally {
        disconnectFrom(crashing.port);
        await crashing.stop();
      }
    }, 20_000);
  });

  describe('a reply lost after the script ran (TCP proxy cuts the connection)', () => {
    let proxy: TcpProxy;
    let client: Redis;
    let store: ValkeyStore;
    beforeAll(async () => {
      proxy = await startTcpProxy(server.port);
      // ioredis defaults: reconnect and re-send unanswered commands.
      client = await connect(proxy.port);
      store = new ValkeyStore(client, { prefix: freshPrefix('proxy'), commandTimeoutMs: 3_000 });
      await store.ping();
    });
    afterAll(async () => {
      disconnect(client);
      await proxy?.close();
    });

    // Scripts the server ran between two snapshots (a re-sent script runs twice).
    const scriptRuns = (delta: Record<string, number>) => (delta.evalsha ?? 0) + (delta.eval ?? 0);

    it('a re-sent claim returns the same claim, and a re-sent completion answers Applied', async () => {
      const key = IdempotencyKey.default();
      const keys = keysOf(store.prefix, key);

      let before = await commandStats(admin);
      let cut = proxy.dropNextReply();
      const connectionsBefore = proxy.connections;
      const claim = claimed(await store.tryInsert(key, processing(7, LONG)));
      await cut;
      expect(proxy.connections).toBe(connectionsBefore + 1); // reconnected
      expect(scriptRuns(statsDelta(before, await commandStats(admin)))).toBe(2); // the claim ran twice
      expect(claim.fencingToken.value).toBe(1n);
      expect(claim.fencingToken.nonce).toBe((await admin.getBuffer(keys.entry))?.toString('latin1', 18, 40));
      expect(await admin.get(keys.fence)).toBe('1'); // one token handed out

      const first = claim.entry.complete(response(Buffer.from([0, 1, 2, 255])));
      before = await commandStats(admin);
      cut = proxy.dropNextReply();
      expect(await store.complete(key, first, claim.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      await cut;
      expect(scriptRuns(statsDelta(before, await commandStats(admin)))).toBe(2); // the completion ran twice
      const stored = await store.get(key);
      expect(stored?.isCompleted() && [...stored.response.body]).toEqual([0, 1, 2, 255]);
      expect(await admin.pttl(keys.entry)).toBeGreaterThan(LONG - 5_000);
    });

    it('a re-sent touch answers Applied and a re-sent remove finds the key gone (as MemoryStore answers a repeat)', async () => {
      const key = IdempotencyKey.default();
      const claim = claimed(await store.tryInsert(key, processing(1, 5_000)));
      let cut = proxy.dropNextReply();
      expect(await store.touch(key, claim.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      await cut;
      expect((await store.get(key))?.ttl).toBe(LONG);

      cut = proxy.dropNextReply();
      expect(await store.remove(key, claim.fencingToken)).toBe(FencedOutcome.KeyExpired);
      await cut;
      expect(await store.get(key)).toBeUndefined();
    });

    it('a re-sent claim that meets another claim answers exists, never a second claim', async () => {
      const key = IdempotencyKey.default();
      const winner = claimed(await store.tryInsert(key, processing(1, LONG)));
      const cut = proxy.dropNextReply();
      const loser = await store.tryInsert(key, processing(1, LONG));
      await cut;
      expect(loser.kind).toBe('exists');
      expect(await admin.get(keysOf(store.prefix, key).fence)).toBe('1');
      expect(await store.remove(key, winner.fencingToken)).toBe(FencedOutcome.Applied);
    });
  });

  it('SCRIPT FLUSH between claim and complete: the completion still applies', async () => {
    const client = await connect();
    const store = new ValkeyStore(client, { prefix: freshPrefix('flush') });
    const key = IdempotencyKey.default();
    const claim = claimed(await store.tryInsert(key, processing(1)));
    expect(await admin.script('FLUSH')).toBe('OK');
    const before = await commandStats(admin);
    expect(await store.complete(key, claim.entry.complete(response('after flush')), claim.fencingToken, LONG)).toBe(
      FencedOutcome.Applied,
    );
    // EVALSHA answered NOSCRIPT and ioredis re-sent the script's source with EVAL.
    expect(statsDelta(before, await commandStats(admin)).eval).toBe(1);
    expect(await admin.script('FLUSH')).toBe('OK');
    const again = await store.tryInsert(key, processing(1));
    expect(again.kind === 'exists' && again.entry.isCompleted() && again.entry.response.text()).toBe('after flush');
    expect(await admin.script('FLUSH')).toBe('OK');
    expect(await store.touch(key, claim.fencingToken, LONG)).toBe(FencedOutcome.KeyExpired);
    expect(await admin.script('FLUSH')).toBe('OK');
    expect(await store.remove(key, claim.fencingToken)).toBe(FencedOutcome.Applied);
  });

  it('a restart with appendonly yes keeps completed entries, live claims and fencing counters', async () => {
    const durable = await startStandalone({ appendonly: true });
    try {
      const client = await connect(durable.port);
      const store = new ValkeyStore(client, { prefix: freshPrefix('aof'), commandTimeoutMs: 5_000 });
      expect((await store.checkServer()).ok).toBe(true);
      const done = IdempotencyKey.default();
      const running = IdempotencyKey.default();
      const body = Buffer.from([0x7b, 0x00, 0xff, 0x7d]);
      const c1 = claimed(await store.tryInsert(done, processing(1)));
      expect(await store.complete(done, c1.entry.complete(response(body, 200)), c1.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
      const c2 = claimed(await store.tryInsert(running, processing(2, LONG)));

      await durable.restart();

      const replay = await store.tryInsert(done, processing(1));
      expect(replay.kind).toBe('exists');
      expect(replay.entry.isCompleted() && Buffer.from(replay.entry.response.body).equals(body)).toBe(true);
      expect(replay.entry.isCompleted() && replay.entry.response.statusCode).toBe(200);
      expect((await store.tryInsert(running, processing(2))).kind).toBe('exists');
      // The holder of the live claim still completes it after the restart.
      expect(await store.complete(running, c2.entry.complete(response('late')), c2.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
      // The counters survived: a reclaim after a purge gets a newer token than before the restart.
      await store.purge(done);
      const c3 = claimed(await store.tryInsert(done, processing(1)));
      expect(c3.fencingToken.isNewerThan(c1.fencingToken)).toBe(true);
      expect(await client.pttl(keysOf(store.prefix, done).entry)).toBeGreaterThan(0);
    } finally {
      disconnectFrom(durable.port);
      await durable.stop();
    }
  }, 30_000);

  it('two stores on separate connections race 40 claims of one key: exactly one wins', async () => {
    const prefix = freshPrefix('race');
    const stores = [new ValkeyStore(await connect(), { prefix }), new ValkeyStore(await connect(), { prefix })];
    for (let round = 0; round < 5; round++) {
      const key = IdempotencyKey.default();
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => stores[i % 2].tryInsert(key, processing(round))),
      );
      const winners = results.filter((r) => r.kind === 'claimed');
      expect(winners).toHaveLength(1);
      expect(results.filter((r) => r.kind === 'exists')).toHaveLength(39);
      // The winner completes; a second race only replays.
      const winner = claimed(winners[0]);
      expect(
        await stores[1].complete(key, winner.entry.complete(response(`r${round}`)), winner.fencingToken, LONG),
      ).toBe(FencedOutcome.Applied);
      const replays = await Promise.all(
        Array.from({ length: 40 }, (_, i) => stores[i % 2].tryInsert(key, processing(round))),
      );
      for (const r of replays) expect(r.kind === 'exists' && r.entry.isCompleted()).toBe(true);
    }
  });

  describe('garbage under a store key', () => {
    let store: ValkeyStore;
    let client: Redis;
    beforeAll(async () => {
      client = await connect();
      store = new ValkeyStore(client, { prefix: freshPrefix('garbage') });
    });

    const token = new FencingToken(1n, 'AAAAAAAAAAAAAAAAAAAAAA');
    const everyOperation = (key: IdempotencyKey): [string, () => Promise<unknown>][] => [
      ['tryInsert', () => store.tryInsert(key, processing(1))],
      ['get', () => store.get(key)],
      ['complete', () => store.complete(key, processing(1).complete(response()), token, LONG)],
      ['touch', () => store.touch(key, token, LONG)],
      ['remove', () => store.remove(key, token)],
    ];
    const expectDecodeErrors = async (key: IdempotencyKey): Promise<void> => {
      for (const [name, operation] of everyOperation(key)) {
        const error = await operation().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect([name, error]).toEqual([name, expect.any(StoreDecodeError)]);
      }
    };

    it('a string, a list or a foreign hash: StoreDecodeError from every operation, data left as it was', async () => {
      const asString = IdempotencyKey.default();
      await client.set(keysOf(store.prefix, asString).entry, 'not an entry');
      await expectDecodeErrors(asString);
      expect(await client.get(keysOf(store.prefix, asString).entry)).toBe('not an entry');

      const asList = IdempotencyKey.default();
      await client.rpush(keysOf(store.prefix, asList).entry, 'a', 'b');
      await expectDecodeErrors(asList);
      expect(await client.lrange(keysOf(store.prefix, asList).entry, 0, -1)).toEqual(['a', 'b']);

      const foreign = IdempotencyKey.default();
      await client.hset(keysOf(store.prefix, foreign).entry, { owner: 'someone else' });
      await expectDecodeErrors(foreign);
      expect(await client.hgetall(keysOf(store.prefix, foreign).entry)).toEqual({ owner: 'someone else' });
      // None of these handed out a token.
      for (const key of [asString, asList, foreign])
        expect(await client.get(keysOf(store.prefix, key).fence)).toBe(null);
      // purge is the way out.
      await store.purge(asString);
      expect(claimed(await store.tryInsert(asString, processing(1))).fencingToken.value).toBe(1n);
    });

    it('an unknown format version or corrupt fields: StoreDecodeError', async () => {
      const good = {
        v: '1',
        state: 'completed',
        fp: '0123456789abcdef0123456789abcdef',
        token: '3',
        nonce: 'AAAAAAAAAAAAAAAAAAAAAA',
        ttl: '60000',
        status: '200',
        body: 'x',
        meta: '{}',
      };
      const variants: Record<string, string>[] = [
        { ...good, v: '2' },
        { ...good, state: 'done' },
        { ...good, fp: 'xyz' },
        { ...good, token: '-1' },
        { ...good, ttl: '0' },
        { ...good, status: '20' },
        { ...good, meta: '{not json' },
        { ...good, meta: '{"a":1}' },
        { ...good, meta: '[]' },
      ];
      const key = IdempotencyKey.default();
      const { entry } = keysOf(store.prefix, key);
      await client.hset(entry, good);
      expect((await store.get(key))?.isCompleted()).toBe(true); // the baseline decodes
      for (const variant of variants) {
        await client.del(entry);
        await client.hset(entry, variant);
        await expect(store.get(key)).rejects.toBeInstanceOf(StoreDecodeError);
        await expect(store.tryInsert(key, processing(1))).rejects.toBeInstanceOf(StoreDecodeError);
      }
      // A completed entry without a body field.
      await client.del(entry);
      const { body: _body, ...noBody } = good;
      await client.hset(entry, noBody);
      await expect(store.get(key)).rejects.toThrow(StoreDecodeError);
      // The scripts refuse an unknown version too, and leave it alone.
      await client.del(entry);
      await client.hset(entry, { ...good, v: '2', state: 'processing' });
      await expectDecodeErrors(key);
      expect(await client.hget(entry, 'v')).toBe('2');
    });

    it('a corrupt fencing counter: StoreDecodeError, and no entry is written', async () => {
      const key = IdempotencyKey.default();
      const keys = keysOf(store.prefix, key);
      await client.set(keys.fence, 'not a number');
      await expect(store.tryInsert(key, processing(1))).rejects.toBeInstanceOf(StoreDecodeError);
      expect(await client.exists(keys.entry)).toBe(0);
    });
  });

  describe('time limits under a stalled event loop, with one timer for every command', () => {
    it('an answer already in the socket wins over a limit that ran out while the loop was stalled', async () => {
      const client = await connect();
      const store = new ValkeyStore(client, { prefix: freshPrefix('stall'), commandTimeoutMs: 100 });
      const key = IdempotencyKey.default();
      await store.ping();
      // Stalled after the command went out: the answer arrives meanwhile and is read before the
      // limit's error is delivered.
      const written = store.tryInsert(key, processing(1));
      await new Promise((resolve) => setImmediate(resolve));
      stallEventLoop(400);
      expect((await written).kind).toBe('claimed');
      // Stalled before the command went out (the same turn that sent it): the clock starts when
      // the command is written, so the stall does not count against it.
      const queued = store.get(key);
      stallEventLoop(400);
      expect((await queued)?.isProcessing()).toBe(true);
    });

    it('a paused server: 200 commands time out together, within about the limit, with one timer', async () => {
      const paused = await startStandalone();
      const client = await connect(paused.port);
      const store = new ValkeyStore(client, { prefix: freshPrefix('timers'), commandTimeoutMs: 200 });
      await store.ping();
      const setTimeoutSpy = jest.spyOn(global, 'setTimeout');
      paused.pause();
      try {
        const started = Date.now();
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            (i % 2
              ? store.get(IdempotencyKey.default())
              : store.tryInsert(IdempotencyKey.default(), processing(1))
            ).then(
              () => 'answered',
              (error: unknown) => error,
            ),
          ),
        );
        const elapsed = Date.now() - started;
        for (const result of results) expect(result).toBeInstanceOf(StoreTimeoutError);
        expect(elapsed).toBeGreaterThanOrEqual(195);
        expect(elapsed).toBeLessThan(3_000); // an error within the time limit, not a hang (generous: a loaded machine)
        // One timer for the earliest deadline, re-armed at most once more: not one per command.
        expect(setTimeoutSpy.mock.calls.length).toBeLessThanOrEqual(2);
      } finally {
        setTimeoutSpy.mockRestore();
        paused.resume();
        disconnectFrom(paused.port);
        await paused.stop();
      }
    });
  });

  describe('socket writes', () => {
    // Counted with /proc/self/io (Linux); the client talks to the server directly, so every write
    // this process makes meanwhile is the client's.
    const measurable = writeSyscalls() !== undefined;
    const itMeasured = measurable ? it : it.skip;
    if (!measurable) it.todo('socket writes cannot be counted here (no /proc/self/io)');

    itMeasured('every operation is one write of one command (one round trip)', async () => {
      const client = await connect();
      const store = new ValkeyStore(client, { prefix: freshPrefix('writes') });
      const key = IdempotencyKey.default();
      const other = IdempotencyKey.default();
      // Warm up every script on this connection (the first use of each sends its source).
      const warm = claimed(await store.tryInsert(other, processing(1)));
      await store.touch(other, warm.fencingToken, LONG);
      await store.complete(other, warm.entry.complete(response()), warm.fencingToken, LONG);
      await store.get(other);
      await store.remove(other, warm.fencingToken);

      let claim!: ReturnType<typeof claimed>;
      expect(await fewestWrites(async () => (claim = claimed(await store.tryInsert(key, processing(1)))), 1)).toBe(1);
      expect(await fewestWrites(() => store.touch(key, claim.fencingToken, LONG))).toBe(1);
      expect(await fewestWrites(() => store.get(key))).toBe(1);
      expect(
        await fewestWrites(() => store.complete(key, claim.entry.complete(response()), claim.fencingToken, LONG), 1),
      ).toBe(1);
      expect(await fewestWrites(() => store.tryInsert(key, processing(1)))).toBe(1); // a replay
      expect(await fewestWrites(() => store.remove(key, claim.fencingToken), 1)).toBe(1);
      expect(await fewestWrites(() => store.purge(key))).toBe(1);
      expect(await fewestWrites(() => store.ping())).toBe(1);
    });

    itMeasured('a fresh executeOrReplay is two writes (claim, complete) and a replay one', async () => {
      const client = await connect();
      const store = new ValkeyStore(client, { prefix: freshPrefix('writes-eor') });
      const run = (key: IdempotencyKey) =>
        store
          .claim(key, 10_000)
          .fingerprint('POST /charges', '{"amount":1}')
          .executeOrReplay(LONG, async () => response('charged'));
      await run(IdempotencyKey.default()); // warm-up
      const key = IdempotencyKey.default();
      expect(await fewestWrites(() => run(key), 1)).toBe(2);
      expect(await fewestWrites(() => run(key))).toBe(1);
    });

    itMeasured(
      'commands sent in one turn of the event loop share one write, and each gets its own answer',
      async () => {
        const client = await connect();
        const store = new ValkeyStore(client, { prefix: freshPrefix('writes-batch') });
        await store.ping();
        let keys: IdempotencyKey[] = [];
        let claims: InsertResult[] = [];
        // Fresh keys on each try: a stray write by something else in the process (a loaded
        // machine) only adds to one try's count.
        expect(
          await fewestWrites(async () => {
            keys = Array.from({ length: 20 }, () => IdempotencyKey.default());
            claims = await Promise.all(keys.map((key) => store.tryInsert(key, processing(1))));
          }),
        ).toBe(1);
        expect(claims.map((c) => c.kind)).toEqual(keys.map(() => 'claimed'));
        expect(new Set(claims.map((c) => claimed(c).fencingToken.nonce)).size).toBe(20);
        // Another user of the same client in that turn rides along, in order.
        let mixed: unknown[] = [];
        expect(
          await fewestWrites(async () => {
            mixed = await Promise.all([
              store.get(keys[0]).then((e) => e?.state),
              client.set('writes-batch-foreign', 'x'),
              store.tryInsert(keys[1], processing(1)).then((r) => r.kind),
              client.get('writes-batch-foreign'),
            ]);
          }),
        ).toBe(1);
        expect(mixed).toEqual(['processing', 'OK', 'exists', 'x']);
      },
    );
  });

  describe('round trips', () => {
    let proxy: TcpProxy;
    let client: Redis;
    let store: ValkeyStore;
    beforeAll(async () => {
      proxy = await startTcpProxy(server.port);
      client = await connect(proxy.port);
      store = new ValkeyStore(client, { prefix: freshPrefix('rtt') });
    });
    afterAll(async () => {
      disconnect(client);
      await proxy?.close();
    });

    /** Runs `operation` and answers the commands the client sent and the server's command stats delta. */
    const measure = async (operation: () => Promise<unknown>) => {
      const before = await commandStats(admin);
      const sent = proxy.commands;
      await operation();
      const names = proxy.names.slice(sent);
      return { sent: proxy.commands - sent, names, server: statsDelta(before, await commandStats(admin)) };
    };

    it('exactly one command per operation (EVAL on a fresh connection, EVALSHA after)', async () => {
      const key = IdempotencyKey.default();
      let token!: FencingToken;
      let entry!: ReturnType<typeof processing>;
      // First use of the claim script on this connection: EVAL with the source, still one command.
      let m = await measure(async () => {
        const c = claimed(await store.tryInsert(key, processing(1)));
        token = c.fencingToken;
        entry = c.entry;
      });
      expect(m).toEqual({
        sent: 1,
        names: ['EVAL'],
        server: { eval: 1, get: 1, incr: 1, set: 1 },
      });
      const other = IdempotencyKey.default();
      m = await measure(() => store.tryInsert(other, processing(1)));
      expect(m).toEqual({
        sent: 1,
        names: ['EVALSHA'],
        server: { evalsha: 1, get: 1, incr: 1, set: 1 },
      });
      // Warm up the other scripts, then count.
      await store.touch(other, new FencingToken(1n, 'x'), LONG);
      await store.remove(other, new FencingToken(1n, 'x'));
      await store.complete(other, processing(1).complete(response()), new FencingToken(1n, 'x'), LONG);
      await store.get(other);

      m = await measure(() => store.touch(key, token, LONG));
      expect(m).toEqual({
        sent: 1,
        names: ['EVALSHA'],
        server: { evalsha: 1, getrange: 1, setrange: 1, pexpire: 1 },
      });
      // A claim that finds the key in flight marks it (SETRANGE of the state byte), so its end is
      // announced (SPUBLISH) to whoever waits; a key nobody found in flight ends without one.
      m = await measure(() => store.tryInsert(key, processing(1)));
      expect(m).toEqual({ sent: 1, names: ['EVALSHA'], server: { evalsha: 1, get: 1, setrange: 1 } });
      m = await measure(() => store.complete(key, entry.complete(response()), token, LONG));
      expect(m).toEqual({ sent: 1, names: ['EVALSHA'], server: { evalsha: 1, getrange: 1, set: 1, spublish: 1 } });
      m = await measure(() => store.tryInsert(key, processing(1)));
      expect(m).toEqual({ sent: 1, names: ['EVALSHA'], server: { evalsha: 1, get: 1 } });
      m = await measure(() => store.get(key));
      expect(m).toEqual({ sent: 1, names: ['EVALSHA'], server: { evalsha: 1, get: 1 } });
      m = await measure(() => store.remove(key, token));
      expect(m).toEqual({ sent: 1, names: ['EVALSHA'], server: { evalsha: 1, getrange: 1, del: 1 } });
      const quiet = IdempotencyKey.default();
      const q = claimed(await store.tryInsert(quiet, processing(1)));
      m = await measure(() => store.complete(quiet, q.entry.complete(response()), q.fencingToken, LONG));
      expect(m).toEqual({ sent: 1, names: ['EVALSHA'], server: { evalsha: 1, getrange: 1, set: 1 } });
      const released = IdempotencyKey.default();
      const r = claimed(await store.tryInsert(released, processing(1)));
      m = await measure(() => store.remove(released, r.fencingToken));
      expect(m).toEqual({ sent: 1, names: ['EVALSHA'], server: { evalsha: 1, getrange: 1, del: 1 } });
      const marked = IdempotencyKey.default();
      const w = claimed(await store.tryInsert(marked, processing(1)));
      await store.tryInsert(marked, processing(1));
      m = await measure(() => store.remove(marked, w.fencingToken));
      expect(m).toEqual({ sent: 1, names: ['EVALSHA'], server: { evalsha: 1, getrange: 1, del: 1, spublish: 1 } });
      m = await measure(() => store.purge(other));
      expect(m).toEqual({ sent: 1, names: ['DEL'], server: { del: 1 } });
      m = await measure(() => store.ping());
      expect(m).toEqual({ sent: 1, names: ['PING'], server: { ping: 1 } });
    });

    it('a fresh executeOrReplay is 2 round trips (claim, complete) and a replay is 1', async () => {
      const key = IdempotencyKey.default();
      const run = () =>
        store
          .claim(key, 10_000)
          .fingerprint('POST /charges', '{"amount":1}')
          .executeOrReplay(LONG, async () => response('charged'));
      let m = await measure(run);
      expect(m.sent).toBe(2);
      expect(m.names).toEqual(['EVALSHA', 'EVALSHA']);
      m = await measure(run);
      expect(m.sent).toBe(1);
      expect(m.server).toEqual({ evalsha: 1, get: 1 });
    });
  });
});
