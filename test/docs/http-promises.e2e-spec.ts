/**
 * Promises of the docs that no other test covered: promises of docs/http.md, docs/claims.md and docs/service.md that had no test.
 */
import { Controller, Headers, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import {
  CompletionFailedError,
  IdempotencyClaim,
  type IdempotencyClaim as IdempotencyClaimType,
  IdempotencyConflictError,
  IdempotencyModule,
  IdempotencyService,
  Idempotent,
  MemoryStore,
  type ProblemDetails,
} from '../../lib';
import {
  BareKindsController,
  Executions,
  FaultyStore,
  IdempotentKindsController,
  ItemsController,
  type Platform,
  startApp,
  type TestApp,
} from '../e2e/http-app';
import { FaultyStore as KitFaultyStore } from '../../lib/testing';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const shape = (problem: ProblemDetails) => ({
  error: { code: problem.type.split(':').pop(), status: problem.status },
});

@Controller('waiting')
class RouteWaitController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent({ waitMs: 3_000 })
  async slow(@Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    await sleep(300);
    return { n };
  }
}

@Controller('shared')
class SharedKeyController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent()
  create(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(`route:${key}`) };
  }
}

describe.each<Platform>(['express', 'fastify'])('docs promises on %s', (platform) => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    for (const app of apps) await app.close();
  });
  async function start(options: Parameters<typeof startApp>[1]) {
    const app = await startApp(platform, options);
    apps.push(app);
    return app;
  }

  it('http.md: stored problems (413, 500 unsupported-result) are rendered by problemBody when it is set', async () => {
    const t = await start({
      store: new MemoryStore(),
      moduleOptions: { problemBody: shape },
      controllers: [ItemsController, BareKindsController, IdempotentKindsController],
    });
    const key = randomUUID();
    const first = await t.client.post('/items/large', { headers: { 'idempotency-key': key } });
    expect(first.status).toBe(201);
    const retry = await t.client.post('/items/large', { headers: { 'idempotency-key': key } });
    expect(retry.status).toBe(413);
    expect(retry.json()).toEqual({ error: { code: 'response-too-large', status: 413 } });

    const k2 = randomUUID();
    const circular = await t.client.post('/ikinds/circular', { headers: { 'idempotency-key': k2 } });
    expect(circular.status).toBe(500);
    expect(circular.json()).toEqual({ error: { code: 'unsupported-result', status: 500 } });
    const again = await t.client.post('/ikinds/circular', { headers: { 'idempotency-key': k2 } });
    expect(again.status).toBe(500);
    expect(again.json()).toEqual({ error: { code: 'unsupported-result', status: 500 } });
    expect(t.executions.count(k2)).toBe(1);
    t.logger.clear();
  });

  it('http.md: a completion the store refuses answers 503 in the problemBody shape, with Retry-After; no second run', async () => {
    const store = new FaultyStore(new MemoryStore());
    const t = await start({
      store,
      moduleOptions: { problemBody: shape, leaseMs: 300 },
      controllers: [ItemsController],
    });
    const key = randomUUID();
    store.failCompletes = 1_000_000;
    const first = await t.client.post('/items', { headers: { 'idempotency-key': key } });
    expect(first.status).toBe(503);
    expect(first.headers['retry-after']).toBe('1');
    expect(first.json()).toEqual({ error: { code: 'store-unavailable', status: 503 } });
    const retry = await t.client.post('/items', { headers: { 'idempotency-key': key } });
    expect(retry.status).toBe(409);
    store.failCompletes = 0;
    let replay = retry;
    for (let i = 0; i < 100 && replay.status !== 201; i++) {
      await sleep(100);
      replay = await t.client.post('/items', { headers: { 'idempotency-key': key } });
    }
    expect(replay.status).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(t.executions.count(key)).toBe(1);
    t.logger.clear();
  });

  it('claims.md: waitMs per route (not module-wide) makes duplicates wait and replay', async () => {
    const t = await start({ store: new MemoryStore(), controllers: [RouteWaitController] });
    const key = randomUUID();
    const responses = await Promise.all(
      Array.from({ length: 5 }, () => t.client.post('/waiting', { headers: { 'idempotency-key': key } })),
    );
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
    expect(responses.filter((r) => r.headers['idempotent-replayed'] === 'true')).toHaveLength(4);
    expect(t.executions.count(key)).toBe(1);
  });

  it("service.md: a route's key reused for run (and the other way round) is key-reused, never a replay", async () => {
    const t = await start({ store: new MemoryStore(), controllers: [SharedKeyController] });
    const service = t.app.get(IdempotencyService) as IdempotencyService;
    const k1 = randomUUID();
    expect((await t.client.post('/shared', { headers: { 'idempotency-key': k1 } })).status).toBe(201);
    await expect(service.run(k1, () => 'service ran')).rejects.toBeInstanceOf(IdempotencyConflictError);
    await expect(service.run(k1, () => 'service ran')).rejects.toMatchObject({ reason: 'key-reused' });

    const k2 = randomUUID();
    expect(await service.run(k2, () => 'service')).toEqual({ value: 'service', replayed: false });
    const route = await t.client.post('/shared', { headers: { 'idempotency-key': k2 } });
    expect(route.status).toBe(422);
    expect(t.executions.count(`route:${k2}`)).toBe(0);
  });
});

@Controller('claim-open')
class FailOpenClaimController {
  static seen: unknown[] = [];
  @Post()
  @Idempotent({ failOpen: true })
  create(@IdempotencyClaim() claim?: IdempotencyClaimType) {
    FailOpenClaimController.seen.push(claim);
    return { guarded: claim !== undefined };
  }
}

describe('claims.md: @IdempotencyClaim() is undefined under failOpen with the store down', () => {
  it.each<Platform>(['express', 'fastify'])('%s', async (platform) => {
    const store = new KitFaultyStore(new MemoryStore());
    const t = await startApp(platform, { store, controllers: [FailOpenClaimController] });
    try {
      store.failNext('tryInsert', new Error('down'));
      const res = await t.client.post('/claim-open', { headers: { 'idempotency-key': randomUUID() } });
      expect(res.status).toBe(201);
      expect(res.json()).toEqual({ guarded: false });
    } finally {
      await t.close();
    }
  });
});

describe('service.md: CompletionFailedError: the key stays held, later calls get in-flight, then the value', () => {
  it('runs work once across the failure', async () => {
    const store = new KitFaultyStore(new MemoryStore());
    @Module({ imports: [IdempotencyModule.forRoot({ store, leaseMs: 300 })] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      const service = app.get(IdempotencyService);
      const key = randomUUID();
      let runs = 0;
      const work = () => ++runs;
      store.failNext('complete', new Error('oom'), Number.POSITIVE_INFINITY);
      await expect(service.run(key, work)).rejects.toBeInstanceOf(CompletionFailedError);
      await expect(service.run(key, work)).rejects.toMatchObject({ reason: 'in-flight' });
      store.heal('complete');
      let result: unknown;
      for (let i = 0; i < 100 && result === undefined; i++) {
        await sleep(100);
        result = await service.run(key, work).catch(() => undefined);
      }
      expect(result).toEqual({ value: 1, replayed: true });
      expect(runs).toBe(1);
    } finally {
      await app.close();
    }
  });
});
