import { Redis } from 'ioredis';
import { join } from 'node:path';
import {
  FencingToken,
  IdempotencyAdmin,
  IdempotencyKey,
  IdempotencyStore,
  MemoryStore,
  PostgresStore,
  ValkeyStore,
} from '../../lib';
import { describePostgres, startPostgres, type PostgresServer } from '../support/postgres-server';
import { eventually } from '../support/eventually';
import { runTsChild } from '../support/ts-child';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { freshPrefix } from '../valkey/helpers';
import { FaultyStore, ItemsController, startApp, TestApp } from './http-app';

/*
 * IdempotencyAdmin (issue 20, DESIGN 7.4) on a real app, on MemoryStore, a real Valkey and a real
 * PostgreSQL (a key held by a SIGKILLed process there: test/postgres/transactions.e2e-spec.ts): a
 * key in flight, completed, scoped to a principal, held by a SIGKILLed process, and one whose
 * completion was deferred (held by this process).
 */

type MakeStore = () => IdempotencyStore;

function adminSuite(name: string, makeStore: () => MakeStore) {
  describe(`IdempotencyAdmin on ${name}`, () => {
    let t: TestApp;
    let admin: IdempotencyAdmin;
    beforeEach(async () => {
      t = await startApp('express', { store: makeStore()(), controllers: [ItemsController] });
      admin = t.app.get(IdempotencyAdmin);
    });
    afterEach(() => t.close());

    it('says absent for a key never used', async () => {
      expect(await admin.inspect('never-used')).toEqual({ state: 'absent', heldHere: false });
      expect(await admin.release('never-used')).toBe(false);
    });

    it('inspects and releases a key in flight, so the next request runs', async () => {
      const key = `admin-gated-${name}`;
      const first = t.client.post('/items/gated', { headers: { 'idempotency-key': key } });
      await eventually(async () => (await admin.inspect(key)).state === 'processing', 'the claim');
      const seen = await admin.inspect(key);
      expect(seen.fencingToken).toBeInstanceOf(FencingToken);
      expect(seen.msLeft).toBeGreaterThan(0);
      expect(seen.msLeft).toBeLessThanOrEqual(10_000);
      expect(seen.heldHere).toBe(false);
      expect((await t.client.post('/items/gated', { headers: { 'idempotency-key': key } })).status).toBe(409);
      expect(await admin.release(key)).toBe(true);
      expect((await admin.inspect(key)).state).toBe('absent');
      t.executions.open(key);
      expect((await first).status).toBe(201);
    });

    it('leaves a completed key unless forced, and purges', async () => {
      const key = `admin-done-${name}`;
      const headers = { 'idempotency-key': key };
      await t.client.post('/items', { headers, body: {} });
      const done = await admin.inspect(key);
      expect(done.state).toBe('completed');
      expect(done.msLeft).toBeGreaterThan(86_000_000);
      expect(await admin.release(key)).toBe(false);
      expect((await t.client.post('/items', { headers, body: {} })).headers['idempotent-replayed']).toBe('true');
      expect(await admin.release(key, { force: true })).toBe(true);
      expect((await t.client.post('/items', { headers, body: {} })).headers['idempotent-replayed']).toBeUndefined();
      expect(t.executions.count(key)).toBe(2);
      await admin.purge(key);
      expect((await admin.inspect(key)).state).toBe('absent');
    });

    it('scopes keys exactly as requests are (string and numeric principals, long keys)', async () => {
      const key = `admin-scoped-${name}`;
      await t.client.post('/items', { headers: { 'idempotency-key': key, 'x-user': 'alice' }, body: {} });
      await t.client.post('/items', { headers: { 'idempotency-key': key, 'x-user': 'userId:42' }, body: {} });
      expect((await admin.inspect(key)).state).toBe('absent');
      expect((await admin.inspect(key, { scope: 'alice' })).state).toBe('completed');
      expect((await admin.inspect(key, { scope: 42 })).state).toBe('completed');
      expect((await admin.inspect(key, { scope: 'bob' })).state).toBe('absent');
      expect(admin.storeKeyOf(key, { scope: 42 }).equals(admin.storeKeyOf(key, { scope: '42' }))).toBe(true);
      const long = 'L'.repeat(240);
      await t.client.post('/items', { headers: { 'idempotency-key': long, 'x-user': 'alice' }, body: {} });
      expect((await admin.inspect(new IdempotencyKey(long), { scope: 'alice' })).state).toBe('completed');
      await admin.purge(key, { scope: 'alice' });
      expect((await admin.inspect(key, { scope: 'alice' })).state).toBe('absent');
      expect((await admin.inspect(key, { scope: 42 })).state).toBe('completed');
    });
  });

  describe(`a deferred completion on ${name}`, () => {
    it('is heldHere while the store refuses it, and completed once stored', async () => {
      const faulty = new FaultyStore(makeStore()());
      const t = await startApp('express', {
        store: faulty,
        controllers: [ItemsController],
        moduleOptions: { leaseMs: 300 },
      });
      try {
        const admin = t.app.get(IdempotencyAdmin);
        const key = `admin-deferred-${name}`;
        faulty.failCompletes = 1_000_000;
        const res = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        expect(res.status).toBe(503);
        const held = await admin.inspect(key);
        expect(held.heldHere).toBe(true);
        // Its result is held here: released, a retry would run the handler again.
        expect(await admin.release(key)).toBe(false);
        // Retries in this process wait for the held result: 409, never a second run.
        expect((await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} })).status).toBe(409);
        faulty.failCompletes = 0;
        await eventually(async () => {
          const now = await admin.inspect(key);
          return now.state === 'completed' && !now.heldHere;
        }, 'the deferred result to be stored');
        const replay = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        expect(replay.headers['idempotent-replayed']).toBe('true');
        expect(t.executions.count(key)).toBe(1);
      } finally {
        await t.close();
      }
    }, 30_000);
  });
}

adminSuite('MemoryStore', () => () => new MemoryStore());

describeValkey('IdempotencyAdmin on a real Valkey', () => {
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

  adminSuite('ValkeyStore', () => {
    const prefix = freshPrefix('admin');
    return () => new ValkeyStore(client, { prefix });
  });

  it('inspects and releases a key held by a SIGKILLed process', async () => {
    const prefix = freshPrefix('admin-kill');
    const run = runTsChild(join(__dirname, 'children/crashed-holder.child.ts'), 30_000, {
      ADMIN_CHILD_VALKEY_URL: server.url,
      ADMIN_CHILD_PREFIX: prefix,
    });
    expect({ signal: run.signal, stderr: run.stderr }).toMatchObject({ signal: 'SIGKILL' });
    const { fencingToken } = JSON.parse(run.stdout.trim()) as { fencingToken: string };

    const t = await startApp('express', {
      store: new ValkeyStore(client, { prefix }),
      controllers: [ItemsController],
    });
    try {
      const admin = t.app.get(IdempotencyAdmin);
      const stuck = await admin.inspect('crashed-job', { scope: 'u-crash' });
      expect(stuck.state).toBe('processing');
      expect(stuck.fencingToken?.toString()).toBe(fencingToken);
      expect(stuck.msLeft).toBeGreaterThan(100_000); // the dead holder's 120 s lease
      expect(stuck.heldHere).toBe(false);
      expect((await admin.inspect('crashed-job')).state).toBe('absent'); // unscoped: another key
      expect(await admin.release('crashed-job', { scope: 'u-crash' })).toBe(true);
      expect(await admin.inspect('crashed-job', { scope: 'u-crash' })).toEqual({ state: 'absent', heldHere: false });
    } finally {
      await t.close();
    }
  }, 60_000);
});

describePostgres('IdempotencyAdmin on a real PostgreSQL', () => {
  let server: PostgresServer;
  const table = 'admin_keys';
  beforeAll(async () => {
    server = await startPostgres();
    await new PostgresStore(server.pool(), { table, onWarning: () => undefined }).migrate();
  }, 30_000);
  afterAll(() => server?.stop(), 30_000);

  // One table for the suite: every case uses keys of its own.
  adminSuite('PostgresStore', () => () => new PostgresStore(server.pool(), { table, onWarning: () => undefined }));
});
