/**
 * docs/operations.md: the runbook's code, as printed, against a real app (Express, on a
 * MemoryStore, and on a real Valkey for the failover check).
 */
import { Redis } from 'ioredis';
import { IdempotencyAdmin, IdempotencyEvent, IdempotencyOutcome, MemoryStore, ValkeyStore } from '../../lib';
import { FaultyStore, ItemsController, startApp } from '../e2e/http-app';
import { eventually } from '../support/eventually';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { freshPrefix, keysOf } from '../valkey/helpers';
import { materialize } from './snippets';

/* eslint-disable @typescript-eslint/no-require-imports */
const { unstick } = require(materialize('ops-stuck')) as {
  unstick: (a: IdempotencyAdmin, k: string, p: string | number | undefined, gone: boolean) => Promise<string>;
};
const { waitForDeferred } = require(materialize('ops-deferred')) as {
  waitForDeferred: (a: IdempotencyAdmin, k: string, p?: string, t?: number) => Promise<string>;
};
const { lostCompletions } = require(materialize('ops-failover')) as {
  lostCompletions: (a: IdempotencyAdmin, answered: { key: string; principal?: string }[]) => Promise<string[]>;
};
const { watchForOperators } = require(materialize('ops-alerts')) as {
  watchForOperators: (page: (e: IdempotencyEvent) => void) => Map<IdempotencyOutcome, number>;
};
/* eslint-enable @typescript-eslint/no-require-imports */

describe('docs/operations.md runbook', () => {
  it('"a key is stuck": reports, refuses to release a live holder, releases a dead one', async () => {
    const t = await startApp('express', { store: new MemoryStore(), controllers: [ItemsController] });
    try {
      const admin = t.app.get(IdempotencyAdmin);
      expect(await unstick(admin, 'ops-free', undefined, true)).toBe('free: the next request runs');
      const first = t.client.post('/items/gated', { headers: { 'idempotency-key': 'ops-stuck', 'x-user': 'u9' } });
      await eventually(async () => (await admin.inspect('ops-stuck', { scope: 'u9' })).state === 'processing');
      expect(await unstick(admin, 'ops-stuck', 'u9', false)).toMatch(/^processing under claim 1: wait \d+ ms/);
      expect(await unstick(admin, 'ops-stuck', 'u9', true)).toBe('released claim 1');
      expect((await admin.inspect('ops-stuck', { scope: 'u9' })).state).toBe('absent');
      t.executions.open('ops-stuck');
      await first;
      expect(await unstick(admin, 'ops-stuck', 'u9', true)).toMatch(/^completed: replayed for \d+ s more$/);
    } finally {
      await t.close();
    }
  });

  it('"a completion was deferred": the alert fires, the key is held here, then stored', async () => {
    const faulty = new FaultyStore(new MemoryStore());
    const t = await startApp('express', {
      store: faulty,
      controllers: [ItemsController],
      moduleOptions: { leaseMs: 300 },
    });
    const paged: IdempotencyEvent[] = [];
    const seen = watchForOperators((event) => paged.push(event));
    try {
      const admin = t.app.get(IdempotencyAdmin);
      faulty.failCompletes = 1_000_000;
      expect((await t.client.post('/items', { headers: { 'idempotency-key': 'ops-deferred' }, body: {} })).status).toBe(
        503,
      );
      expect(seen.get('deferred')).toBe(1);
      expect(paged.some((e) => e.type === 'deferred' && e.statusCode === 503)).toBe(true);
      expect(await waitForDeferred(admin, 'ops-deferred', undefined, 300)).toBe('still held');
      faulty.failCompletes = 0;
      expect(await waitForDeferred(admin, 'ops-deferred')).toBe('stored');
      expect(t.executions.count('ops-deferred')).toBe(1);
    } finally {
      await t.close();
    }
  }, 30_000);
});

describeValkey('docs/operations.md runbook on Valkey', () => {
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

  it('"after a failover": finds the answered keys whose stored response is gone', async () => {
    const prefix = freshPrefix('ops');
    const t = await startApp('express', { store: new ValkeyStore(client, { prefix }), controllers: [ItemsController] });
    try {
      const admin = t.app.get(IdempotencyAdmin);
      for (const key of ['ops-a', 'ops-b', 'ops-c']) {
        expect(
          (await t.client.post('/items', { headers: { 'idempotency-key': key, 'x-user': 'u1' }, body: {} })).status,
        ).toBe(201);
      }
      // What an asynchronous failover can lose: the completion of ops-b never reached the new primary.
      await client.del(keysOf(prefix, admin.storeKeyOf('ops-b', { scope: 'u1' })).entry);
      const answered = ['ops-a', 'ops-b', 'ops-c'].map((key) => ({ key, principal: 'u1' }));
      expect(await lostCompletions(admin, answered)).toEqual(['ops-b']);
    } finally {
      await t.close();
    }
  });
});
