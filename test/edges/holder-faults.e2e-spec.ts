/**
 * Issue 17, defects 3 and 7 (DESIGN 7.1), over real HTTP on Express and Fastify:
 *
 * - A store outage longer than the lease, right after the handler ran: the process holds the
 *   unstored result, and its own retry (sent the moment the store answers again, while the
 *   background completion sleeps in its back-off) gets the replay, never a second run. On a real
 *   Valkey paused with SIGSTOP.
 * - A process paused between its claim's reply and the handler, past the lease, while another
 *   request takes the key over: the paused request never starts the handler (409), on the memory
 *   store and a real Valkey.
 */
import { Controller, Headers, Post } from '@nestjs/common';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import {
  IDEMPOTENCY_PROBLEM_TYPES,
  type AnyEntry,
  type CompletedEntry,
  type FencedOutcome,
  type FencingToken,
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyStore,
  Idempotent,
  type InsertResult,
  MemoryStore,
  type ProcessingEntry,
  ValkeyStore,
} from '../../lib';
import { eventually } from '../support/eventually';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { freshPrefix, sleep } from '../valkey/helpers';
import { Executions, type Platform, startApp, type TestApp } from '../e2e/http-app';

const LEASE_MS = 1_500;
const PLATFORMS: Platform[] = ['express', 'fastify'];

@Controller('holder')
class HolderController {
  constructor(private readonly executions: Executions) {}

  @Post('gated')
  @Idempotent()
  async gated(@Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    await this.executions.gate(key);
    return { n };
  }

  @Post('quick')
  @Idempotent()
  quick(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }
}

/**
 * Delegates to a store; the reply of the next claim reaches the app only `stallMs` after the
 * store made it, as when the process is stopped (SIGSTOP, a long GC) right after the reply came.
 */
class StallingStore extends IdempotencyStore {
  readonly kind: string;
  stallNextClaimMs = 0;
  /** Resolves when a stalled claim has been made in the store (the stall has begun). */
  stalled: Promise<void> = Promise.resolve();
  #markStalled: () => void = () => undefined;

  constructor(readonly inner: IdempotencyStore) {
    super();
    this.kind = inner.kind;
  }

  stallNext(ms: number): void {
    this.stallNextClaimMs = ms;
    this.stalled = new Promise((resolve) => (this.#markStalled = resolve));
  }

  async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    const stall = this.stallNextClaimMs;
    this.stallNextClaimMs = 0;
    const result = await this.inner.tryInsert(key, entry);
    if (stall > 0) {
      this.#markStalled();
      await sleep(stall);
    }
    return result;
  }
  complete(key: IdempotencyKey, entry: CompletedEntry, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    return this.inner.complete(key, entry, token, ttlMs);
  }
  remove(key: IdempotencyKey, token: FencingToken): Promise<FencedOutcome> {
    return this.inner.remove(key, token);
  }
  touch(key: IdempotencyKey, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    return this.inner.touch(key, token, ttlMs);
  }
  purge(key: IdempotencyKey): Promise<void> {
    return this.inner.purge(key);
  }
  get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    return this.inner.get(key);
  }
  override waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.inner.waitForChange(key, timeoutMs, signal);
  }
}

/** A paused claim holder never starts its handler on a lease that ran out and was taken over. */
function pausedBeforeTheHandler(
  platform: Platform,
  makeStore: () => Promise<{ store: IdempotencyStore; close(): Promise<void> }>,
) {
  it(`a request paused between its claim and the handler, past the lease, never runs the handler after another took the key (${platform})`, async () => {
    const made = await makeStore();
    const store = new StallingStore(made.store);
    const t = await startApp(platform, {
      store,
      controllers: [HolderController],
      module: IdempotencyModule.forRoot({ store, leaseMs: LEASE_MS }),
    });
    try {
      const key = randomUUID();
      const headers = { 'idempotency-key': key };
      store.stallNext(LEASE_MS * 2);
      const paused = t.client.post('/holder/quick', { headers });
      await store.stalled;
      await sleep(LEASE_MS + 300); // the paused claim's lease runs out in the store
      const taker = await t.client.post('/holder/quick', { headers });
      expect(taker.status).toBe(201);
      const late = await paused;
      expect(t.executions.count(key)).toBe(1);
      expect(late.status).toBe(201);
      expect(late.headers['idempotent-replayed']).toBe('true');
      expect(late.body.equals(taker.body)).toBe(true);
    } finally {
      await t.close();
      await made.close();
    }
  }, 20_000);
}

describe.each(PLATFORMS)('paused holders on the memory store (%s)', (platform) => {
  pausedBeforeTheHandler(platform, async () => {
    const store = new MemoryStore();
    return { store, close: () => store.close() };
  });
});

describeValkey('faults of the claim holder on a real Valkey', () => {
  let server: StandaloneServer;

  beforeAll(async () => {
    server = await startStandalone();
  }, 30_000);

  afterAll(async () => {
    if (server?.paused) server.resume();
    await server?.stop();
  }, 30_000);

  async function valkeyStore(commandTimeoutMs = 3_000) {
    const client = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true });
    client.on('error', () => undefined);
    await client.connect();
    const store = new ValkeyStore(client, {
      prefix: freshPrefix('holder'),
      commandTimeoutMs,
      onWarning: () => undefined,
    });
    return {
      store,
      close: async () => {
        await store.close();
        client.disconnect();
      },
    };
  }

  describe.each(PLATFORMS)('on %s', (platform) => {
    pausedBeforeTheHandler(platform, () => valkeyStore());

    it('Valkey paused past the lease right after the handler ran: 503, then the retry sent as it comes back gets the replay, never a second run', async () => {
      const made = await valkeyStore(400);
      const t: TestApp = await startApp(platform, {
        store: made.store,
        controllers: [HolderController],
        module: IdempotencyModule.forRoot({ store: made.store, leaseMs: LEASE_MS }),
      });
      try {
        const key = randomUUID();
        const headers = { 'idempotency-key': key };
        const first = t.client.post('/holder/gated', { headers });
        await eventually(() => t.executions.count(key) === 1);
        server.pause();
        const pausedAt = Date.now();
        t.executions.open(key); // the handler returns while the store is away
        const answered = await first;
        expect(answered.status).toBe(503);
        expect(answered.json().type).toBe(IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
        // Away for well past the lease: the run's claim has expired in the store.
        await sleep(Math.max(0, LEASE_MS * 2 - (Date.now() - pausedAt)));
        server.resume();
        const retry = await t.client.post('/holder/gated', { headers });
        expect(t.executions.count(key)).toBe(1);
        expect(retry.status).toBe(201);
        expect(retry.headers['idempotent-replayed']).toBe('true');
        expect(retry.json()).toEqual({ n: 1 });
      } finally {
        if (server.paused) server.resume();
        await t.close();
        await made.close();
      }
    }, 30_000);
  });
});
