/**
 * Promises of the docs that no other test covered: docs/stores.md (the start-up check inside a Nest app, onWarning's default) and
 * docs/claims.md (custom stores without notifications) promises that had no test.
 */
import { type LoggerService, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import {
  type AnyEntry,
  type CompletedEntry,
  type FencedOutcome,
  type FencingToken,
  type IdempotencyKey,
  IdempotencyModule,
  IdempotencyService,
  IdempotencyStore,
  type InsertResult,
  MemoryStore,
  type ProcessingEntry,
  ValkeyStore,
} from '../../lib';
import { eventually } from '../support/eventually';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class Warnings implements LoggerService {
  readonly warnings: string[] = [];
  log(): void {}
  error(): void {}
  warn(message: unknown, ...rest: unknown[]): void {
    this.warnings.push([message, ...rest].map(String).join(' '));
  }
}

describeValkey('docs/stores.md: the start-up check inside a Nest app', () => {
  let server: StandaloneServer;
  beforeAll(async () => {
    server = await startStandalone(); // AOF off: the check has something to say
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  });

  it.each(['forRoot', 'forRootAsync'] as const)(
    '%s: the check runs by itself at start-up and its warnings reach the Nest logger (onWarning default)',
    async (form) => {
      const client = new Redis({ host: server.host, port: server.port });
      const store = new ValkeyStore(client, { closeClient: true });
      const imports =
        form === 'forRoot'
          ? [IdempotencyModule.forRoot({ store })]
          : [IdempotencyModule.forRootAsync({ useFactory: () => ({ store }) })];
      @Module({ imports })
      class AppModule {}
      const logger = new Warnings();
      const app = await NestFactory.createApplicationContext(AppModule, { logger });
      try {
        const end = Date.now() + 3_000;
        while (!logger.warnings.some((w) => /AOF is off/.test(w)) && Date.now() < end) await sleep(20);
        expect(logger.warnings).toEqual([expect.stringMatching(/ValkeyStore: AOF is off on 127\.0\.0\.1:\d+ /)]);
      } finally {
        await app.close();
        if (form === 'forRoot') await store.close();
      }
    },
  );
});

/** A custom store that delegates to a MemoryStore and has no notifications (no waitForChange). */
class PlainStore extends IdempotencyStore {
  readonly kind = 'plain';
  constructor(private readonly inner: MemoryStore) {
    super();
  }
  tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    return this.inner.tryInsert(key, entry);
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
}

describe('docs/claims.md: custom stores without notifications get the once-a-second check', () => {
  it('a waiter gets the replay about a second after the first ends, never a second run', async () => {
    const inner = new MemoryStore();
    @Module({ imports: [IdempotencyModule.forRoot({ store: new PlainStore(inner) })] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      const service = app.get(IdempotencyService);
      const key = randomUUID();
      let runs = 0;
      const work = async () => {
        runs++;
        await sleep(200);
        return 'done';
      };
      const first = service.run(key, work);
      await eventually(() => runs === 1, 'the first run to start');
      const started = Date.now();
      const waiter = await service.run(key, work, { waitMs: 5_000 });
      expect(waiter).toEqual({ value: 'done', replayed: true });
      // At a re-check (every second), long before waitMs (5 s) ran out; generous for a loaded machine.
      expect(Date.now() - started).toBeLessThan(4_000);
      expect((await first).replayed).toBe(false);
      expect(runs).toBe(1);
    } finally {
      await app.close();
      await inner.close();
    }
  });
});
