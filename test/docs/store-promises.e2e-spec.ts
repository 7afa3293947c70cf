/**
 * Promises of the docs that no other test covered: README.md "The module" (store ownership), docs/stores.md MemoryStore bounds and
 * docs/testing.md (overrideProvider) promises that had no test.
 */
import { Controller, Headers, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { randomUUID } from 'node:crypto';
import {
  CachedResponse,
  Fingerprint,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyService,
  IdempotencyStore,
  Idempotent,
  MemoryStore,
  StoreFullError,
} from '../../lib';

const counts = new Map<string, number>();

@Controller('pay')
class PayController {
  @Post()
  @Idempotent({ required: true })
  pay(@Headers('idempotency-key') key: string) {
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    return { n };
  }
}

async function startApp(store: IdempotencyStore, closeStoreOnShutdown?: boolean) {
  @Module({ imports: [IdempotencyModule.forRoot({ store, closeStoreOnShutdown })], controllers: [PayController] })
  class AppModule {}
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const pay = (key: string) => fetch(`${url}/pay`, { method: 'POST', headers: { 'idempotency-key': key } });
  return { app, pay };
}

describe('README "The module": closeStoreOnShutdown: false keeps a MemoryStore that apps share', () => {
  // Closing one app must not empty the store under another app (or a restarted one) that still
  // uses it; otherwise a retry there runs again.
  it('a MemoryStore shared by two apps keeps the entries of the one still running when the other closes', async () => {
    const store = new MemoryStore();
    const a = await startApp(store, false);
    const b = await startApp(store, false);
    try {
      const key = randomUUID();
      const first = await b.pay(key);
      expect(first.status).toBe(201);
      await a.app.close();
      const retry = await b.pay(key);
      expect({ replayed: retry.headers.get('idempotent-replayed'), runs: counts.get(key) }).toEqual({
        replayed: 'true',
        runs: 1,
      });
    } finally {
      await b.app.close();
      await store.close();
    }
  });
});

describe('docs/testing.md: overrideProvider(IdempotencyStore) replaces the store every route and service uses', () => {
  it('routes and IdempotencyService use the overriding store, not the one given to forRoot', async () => {
    const configured = new MemoryStore();
    const override = new MemoryStore();
    @Module({ imports: [IdempotencyModule.forRoot(configured)], controllers: [PayController] })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(IdempotencyStore)
      .useValue(override)
      .compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    try {
      const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
      const key = randomUUID();
      expect((await fetch(`${url}/pay`, { method: 'POST', headers: { 'idempotency-key': key } })).status).toBe(201);
      await app.get(IdempotencyService).run(`svc-${key}`, () => 1);
      expect(configured.size).toBe(0);
      expect(override.size).toBe(2);
    } finally {
      await app.close();
      await configured.close();
      await override.close();
    }
  });
});

describe('docs/stores.md: MemoryStore bounds', () => {
  const fp = Fingerprint.fromBytes(new Uint8Array(16));
  const claim = async (store: MemoryStore, id: string) => {
    const result = await store.tryInsert(new IdempotencyKey(id), new IdempotencyEntry(fp, 60_000));
    if (result.kind !== 'claimed') throw new Error('expected a claim');
    return result;
  };

  it('maxEntries: warns past 80%, then refuses new claims with StoreFullError', async () => {
    const warnings: string[] = [];
    const store = new MemoryStore({ maxEntries: 10, onWarning: (m) => warnings.push(m) });
    for (let i = 0; i < 8; i++) await claim(store, `k${i}`);
    expect(warnings).toEqual([]);
    await claim(store, 'k8');
    expect(warnings.filter((w) => /over 80%/.test(w))).toHaveLength(1);
    await claim(store, 'k9');
    await expect(claim(store, 'k10')).rejects.toBeInstanceOf(StoreFullError);
    expect(store.size).toBe(10);
    await store.close();
  });

  it('maxBytes is checked on every claim and every completion: a response that does not fit is refused, its key stays held', async () => {
    const store = new MemoryStore({ maxBytes: 4_000, onWarning: () => undefined });
    const key = new IdempotencyKey('big');
    const claimed = await claim(store, 'big');
    await expect(
      store.complete(
        key,
        claimed.entry.complete(new CachedResponse({ statusCode: 200, body: 'x'.repeat(10_000) })),
        claimed.fencingToken,
        60_000,
      ),
    ).rejects.toBeInstanceOf(StoreFullError);
    expect((await store.get(key))?.isProcessing()).toBe(true);
    expect(store.bytes).toBeLessThanOrEqual(4_000);
    await claim(store, 'next'); // the bound was never passed: claims go on
    await store.close();
  });
});
