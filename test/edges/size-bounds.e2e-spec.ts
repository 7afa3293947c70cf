/**
 * Issue 17, defect 8 (DESIGN 7.1): every entry point bounds the size of what it stores, with a
 * clear answer, and a store's `maxBytes` holds on every path. Before the fix, values of
 * `IdempotencyService.run` (and of message handlers and resolvers, the same runner) were stored
 * whole, and `MemoryStore` always accepted a completion: one 3 MB value put a 1 MiB store at 3x
 * its bound, and every later claim on any key was refused until it expired.
 */
import { Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  CachedResponse,
  Fingerprint,
  IDEMPOTENCY_PROBLEM_TYPES,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyService,
  IdempotencyValueTooLargeError,
  MemoryStore,
  StoreFullError,
} from '../../lib';

const MiB = 1024 * 1024;

describe('MemoryStore: maxBytes holds for completions too', () => {
  it('a response that does not fit is refused (StoreFullError); the claim stays processing and the bound holds', async () => {
    const store = new MemoryStore({ maxBytes: MiB, onWarning: () => undefined });
    const key = new IdempotencyKey('big');
    const fingerprint = Fingerprint.fromHex('0'.repeat(32));
    const claim = await store.tryInsert(key, new IdempotencyEntry(fingerprint, 10_000));
    if (claim.kind !== 'claimed') throw new Error('expected a claim');
    const big = new CachedResponse({ statusCode: 200, body: 'x'.repeat(2 * MiB) });
    await expect(store.complete(key, claim.entry.complete(big), claim.fencingToken, 60_000)).rejects.toThrow(
      StoreFullError,
    );
    expect(store.bytes).toBeLessThanOrEqual(MiB);
    expect((await store.get(key))?.isProcessing()).toBe(true);
    // One that fits is stored.
    const small = new CachedResponse({ statusCode: 200, body: 'ok' });
    const retry = new IdempotencyEntry(fingerprint, 10_000).complete(small);
    expect(await store.complete(key, retry, claim.fencingToken, 60_000)).toBe('applied');
    await store.close();
  });
});

describe('IdempotencyService.run bounds what it stores (maxResponseBytes)', () => {
  it('a value over maxResponseBytes: the first call gets it, later calls throw IdempotencyValueTooLargeError, the store stays within its bound and keeps taking claims', async () => {
    const store = new MemoryStore({ maxBytes: MiB, onWarning: () => undefined });
    @Module({ imports: [IdempotencyModule.forRoot({ store, closeStoreOnShutdown: false })] })
    class JobsModule {}
    const warnings: string[] = [];
    const app = await NestFactory.createApplicationContext(JobsModule, { logger: false });
    const idempotency = app.get(IdempotencyService);
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation((message: unknown) => {
      warnings.push(String(message));
    });
    try {
      let runs = 0;
      const report = () => {
        runs++;
        return { rows: 'x'.repeat(3 * MiB) };
      };
      const first = await idempotency.run('report-1', report);
      expect(first.replayed).toBe(false);
      expect(first.value.rows).toHaveLength(3 * MiB);
      expect(store.bytes).toBeLessThan(MiB);
      const again = await idempotency.run('report-1', report).catch((error: unknown) => error);
      expect(again).toBeInstanceOf(IdempotencyValueTooLargeError);
      expect(again).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.responseTooLarge, limit: MiB });
      expect((again as IdempotencyValueTooLargeError).bytes).toBeGreaterThan(3 * MiB);
      expect(runs).toBe(1);
      // The store was not filled by it: other keys are claimed as usual.
      expect(await idempotency.run('report-2', () => 'small')).toEqual({ value: 'small', replayed: false });
      expect(warnings.some((w) => /over maxResponseBytes/.test(w))).toBe(true);
    } finally {
      warn.mockRestore();
      await app.close();
      await store.close();
    }
  });
});
