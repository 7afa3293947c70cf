/**
 * Issue 19, what a newcomer tripped on (the code half):
 * 1. Forgetting IdempotencyModule says so, instead of Nest's error about an internal pipe.
 * 2. A class-level `@Idempotent()` leaves safe methods (GET, HEAD, OPTIONS) alone; on such a method
 *    itself it applies, as asked, with one start-up warning naming the route (DESIGN 7.1).
 * 4. `key-reused` from `IdempotencyService.run` says that the request differs from the stored one.
 * 5. `IdempotencyService.run`'s value is typed as what it is: a JSON round trip.
 */
import { Controller, Get, Head, Headers, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { randomUUID } from 'node:crypto';
import {
  IdempotencyConflictError,
  IdempotencyModule,
  IdempotencyService,
  Idempotent,
  type Jsonified,
  MemoryStore,
} from '../../lib';
import { CapturingLogger, Executions, type Platform, startApp, type TestApp } from '../e2e/http-app';

@Controller('orders')
@Idempotent({ required: true })
class OrdersController {
  constructor(private readonly executions: Executions) {}

  @Post()
  create(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Get()
  list(@Headers('x-tag') tag: string) {
    return { n: this.executions.hit(`list:${tag}`) };
  }

  @Head('meta') // its own path: Fastify answers HEAD of a GET route by itself
  head() {
    return '';
  }
}

@Controller('reports')
class ReportsController {
  constructor(private readonly executions: Executions) {}

  /** A GET with side effects: guarded on purpose. */
  @Get('export')
  @Idempotent()
  export(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(`export:${key}`) };
  }
}

describe('forgetting IdempotencyModule (1)', () => {
  @Controller('pay')
  class PayController {
    @Post()
    @Idempotent()
    pay() {
      return { ok: true };
    }
  }

  @Module({ controllers: [PayController] })
  class AppWithoutTheModule {}

  it.each<Platform>(['express', 'fastify'])(
    'start-up fails with an error that says to import IdempotencyModule (%s)',
    async (platform) => {
      const adapter = platform === 'express' ? new ExpressAdapter() : new FastifyAdapter();
      const failed = await NestFactory.create(AppWithoutTheModule, adapter, {
        logger: false,
        abortOnError: false,
      }).then(
        async (app) => {
          await app.close();
          return undefined;
        },
        (error: unknown) => error,
      );
      expect(failed).toBeInstanceOf(Error);
      expect((failed as Error).message).toMatch(
        /@Idempotent\(\) needs IdempotencyModule: add IdempotencyModule\.forRoot/,
      );
    },
  );
});

describe.each<Platform>(['express', 'fastify'])('safe methods (2, %s)', (platform) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(platform, { store: new MemoryStore(), controllers: [OrdersController, ReportsController] });
  });
  afterAll(() => t?.close());

  it('a class-level @Idempotent({ required: true }) guards POST, and leaves GET and HEAD alone: no 400 without a key, never replayed', async () => {
    expect((await t.client.post('/orders')).status).toBe(400);
    const tag = randomUUID();
    const first = await t.client.get('/orders', { headers: { 'x-tag': tag } });
    expect(first.status).toBe(200);
    const again = await t.client.get('/orders', { headers: { 'x-tag': tag, 'idempotency-key': randomUUID() } });
    const same = await t.client.get('/orders', { headers: { 'x-tag': tag, 'idempotency-key': 'k-1' } });
    const sameAgain = await t.client.get('/orders', { headers: { 'x-tag': tag, 'idempotency-key': 'k-1' } });
    expect([again.status, same.status, sameAgain.status]).toEqual([200, 200, 200]);
    expect(sameAgain.headers['idempotent-replayed']).toBeUndefined();
    expect(t.executions.count(`list:${tag}`)).toBe(4);
    expect((await t.client.request('HEAD', '/orders/meta')).status).toBe(200);
  });

  it('@Idempotent() on a GET method itself applies, as asked, with one start-up warning naming the route', async () => {
    const key = randomUUID();
    const first = await t.client.get('/reports/export', { headers: { 'idempotency-key': key } });
    const replay = await t.client.get('/reports/export', { headers: { 'idempotency-key': key } });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(first.json());
    expect(t.executions.count(`export:${key}`)).toBe(1);
    const warnings = t.logger.warnings.filter((w) => /ReportsController\.export\(\), a GET route/.test(w));
    expect(warnings).toHaveLength(1);
    expect(t.logger.warnings.some((w) => /OrdersController/.test(w))).toBe(false);
  });
});

describe('IdempotencyService.run (4, 5)', () => {
  it('key-reused says that the request given now differs from the stored one', async () => {
    @Module({ imports: [IdempotencyModule.forRoot(new MemoryStore())] })
    class JobsModule {}
    const app = await NestFactory.createApplicationContext(JobsModule, { logger: new CapturingLogger() });
    try {
      const idempotency = app.get(IdempotencyService);
      await idempotency.run('job-1', () => 1, { request: { attemptsMade: 0, data: { order: 1 } } });
      const error = await idempotency
        .run('job-1', () => 1, { request: { attemptsMade: 1, data: { order: 1 } } })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdempotencyConflictError);
      expect((error as Error).message).toMatch(/the request given now differs from the one stored with the key/);
    } finally {
      await app.close();
    }
  });

  it('the value is typed as its JSON round trip: a Date is a string, to the compiler and at run time', async () => {
    @Module({ imports: [IdempotencyModule.forRoot(new MemoryStore())] })
    class JobsModule {}
    const app = await NestFactory.createApplicationContext(JobsModule, { logger: false });
    try {
      const idempotency = app.get(IdempotencyService);
      const result = await idempotency.run(randomUUID(), () => ({ at: new Date(0), n: 1, skip: () => 1 }));
      const at: string = result.value.at;
      // @ts-expect-error a Date does not come back as a Date
      const asDate: Date = result.value.at;
      // @ts-expect-error functions are left out of JSON
      void result.value.skip;
      expect(at).toBe('1970-01-01T00:00:00.000Z');
      expect(typeof asDate).toBe('string');
      const n: number = result.value.n;
      expect(n).toBe(1);
      const nested: Jsonified<{ when: Date[] }> = { when: ['x'] };
      expect(nested.when).toEqual(['x']);
    } finally {
      await app.close();
    }
  });
});
