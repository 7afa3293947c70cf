/**
 * Issue 17, defects 2, 5 and 10 (DESIGN 7.1): a closed store refuses claims and shutdown never
 * wakes a waiter into a second run; `failOpen` never runs a request unguarded once it has seen
 * its key in flight; a wait the caller awaits keeps the process alive.
 */
import { Controller, Headers, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import {
  CompletionFailedError,
  IDEMPOTENCY_PROBLEM_TYPES,
  IdempotencyModule,
  IdempotencyService,
  Idempotent,
  MemoryStore,
  StoreClosedError,
} from '../../lib';
import { FaultyStore } from '../../lib/testing';
import { Executions, type Platform, startApp } from '../e2e/http-app';
import { eventually } from '../support/eventually';
import { runTsChild } from '../support/ts-child';

describe('shutdown never wakes a waiter into a second run (defect 2)', () => {
  it('IdempotencyService.run with waitMs, the queue-consumer pattern: the waiter is refused, the work runs once', async () => {
    @Module({ imports: [IdempotencyModule.forRoot(new MemoryStore())] })
    class ConsumerModule {}
    const app = await NestFactory.createApplicationContext(ConsumerModule, { logger: false });
    const idempotency = app.get(IdempotencyService);
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const work = async () => {
      runs++;
      await gate;
      return { shipped: true };
    };
    const first = idempotency.run('order-1', work, { request: { order: 1 } });
    await eventually(() => runs === 1);
    const waiter = idempotency.run('order-1', work, { request: { order: 1 }, waitMs: 10_000 });
    const waiterSettled = waiter.then(
      () => 'resolved',
      (error: unknown) => error,
    );
    // Let the waiter's first claim find the key in flight before the application shuts down.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await app.close(); // closes the module's MemoryStore
    // Before the fix the waiter claimed the emptied store and ran the work beside the first run.
    const waited = await Promise.race([
      waiterSettled,
      eventually(() => runs > 1).then(
        () => 'ran twice',
        () => 'never ran twice',
      ),
    ]);
    expect(runs).toBe(1);
    expect(waited).toBeInstanceOf(StoreClosedError);
    release();
    // The first run's value cannot be stored in a closed store: it says so, and nothing runs again.
    await expect(first).rejects.toBeInstanceOf(CompletionFailedError);
    expect(runs).toBe(1);
  });

  it('one MemoryStore in an AppModule made again and again (e2e tests): closed with the last app that uses it, open again with the next', async () => {
    const store = new MemoryStore();
    @Module({ imports: [IdempotencyModule.forRoot(store)] })
    class AppModule {}
    const one = await NestFactory.createApplicationContext(AppModule, { logger: false });
    const two = await NestFactory.createApplicationContext(AppModule, { logger: false });
    await one.get(IdempotencyService).run('a', () => 1);
    await one.close();
    // The other application still runs on it.
    expect(await two.get(IdempotencyService).run('a', () => 2)).toEqual({ value: 1, replayed: true });
    await two.close();
    await expect(store.get(new (await import('../../lib')).IdempotencyKey('a'))).rejects.toThrow(StoreClosedError);
    // The next application starts on it again, empty.
    const three = await NestFactory.createApplicationContext(AppModule, { logger: false });
    expect(await three.get(IdempotencyService).run('a', () => 3)).toEqual({ value: 3, replayed: false });
    await three.close();
  });

  it('a closed MemoryStore refuses every operation with StoreClosedError', async () => {
    const store = new MemoryStore();
    await store.close();
    const { IdempotencyEntry, IdempotencyKey, Fingerprint } = await import('../../lib');
    const key = new IdempotencyKey('k');
    await expect(store.tryInsert(key, new IdempotencyEntry(Fingerprint.fromHex('0'.repeat(32)), 1000))).rejects.toThrow(
      StoreClosedError,
    );
    await expect(store.get(key)).rejects.toThrow(StoreClosedError);
    await expect(store.purge(key)).rejects.toThrow(StoreClosedError);
  });
});

@Controller('waits')
class WaitsController {
  constructor(private readonly executions: Executions) {}

  @Post('gated')
  @Idempotent({ failOpen: true, waitMs: 5_000 })
  async gated(@Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    await this.executions.gate(key);
    return { n };
  }
}

describe.each<Platform>(['express', 'fastify'])(
  'failOpen never runs a request unguarded once it saw its key in flight (defect 5, %s)',
  (platform) => {
    it('a store failure while waiting answers 503 and runs nothing beside the first run', async () => {
      const store = new FaultyStore(new MemoryStore());
      const t = await startApp(platform, { store, controllers: [WaitsController] });
      try {
        const key = randomUUID();
        const headers = { 'idempotency-key': key };
        const first = t.client.post('/waits/gated', { headers });
        await eventually(() => t.executions.count(key) === 1);
        const claimsBefore = store.calls.tryInsert;
        const second = t.client.post('/waits/gated', { headers });
        // The second request's claim found the key in flight: it now waits.
        await eventually(() => store.calls.tryInsert === claimsBefore + 1);
        store.failNext('tryInsert', undefined, Infinity).failNext('get', undefined, Infinity);
        // Before the fix the waiter ran the handler unguarded, beside the first run.
        const waited = await Promise.race([
          second,
          eventually(() => t.executions.count(key) > 1).then(
            () => undefined,
            () => undefined,
          ),
        ]);
        expect(t.executions.count(key)).toBe(1);
        expect(waited?.status).toBe(503);
        expect(waited?.json().type).toBe(IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
        store.heal();
        t.executions.open(key);
        expect((await first).status).toBe(201);
        expect(t.executions.count(key)).toBe(1);
      } finally {
        await t.close();
      }
    });
  },
);

describe('a wait the caller awaits keeps the process alive (defect 10)', () => {
  it('a nested run with the same key and waitMs, in a job with nothing else on the loop, ends with in-flight', () => {
    const run = runTsChild(path.join(__dirname, 'children/nested-wait.child.ts'));
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe(JSON.stringify({ outcome: 'conflict in-flight' }));
    expect(run.status).toBe(0);
  });
});
