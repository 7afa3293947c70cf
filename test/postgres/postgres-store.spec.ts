/**
 * PostgresStore beyond the shared contract, on a real PostgreSQL: migration and names, its
 * transactions (both or neither, the row not locked before the completion, a commit whose
 * connection is lost), LISTEN/NOTIFY waits across instances, the sweeper, close, and the
 * synchronous_commit warning.
 */
import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import {
  CachedResponse,
  FencedOutcome,
  FencingToken,
  Fingerprint,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyStoreError,
  postgresMigrationSql,
  PostgresStore,
  type PostgresStoreOptions,
  StoreClosedError,
  type ClaimedResult,
} from '../../lib';
import { eventually } from '../support/eventually';
import { describePostgres, type PostgresServer, startPostgres } from '../support/postgres-server';

const FP = Fingerprint.fromBigInt(42n);
const LONG = 60_000;
const response = (body = '{"ok":true}') => new CachedResponse({ statusCode: 201, body });

describePostgres('PostgresStore on PostgreSQL', () => {
  let server: PostgresServer;
  let pool: Pool;
  let tables = 0;
  const stores: PostgresStore[] = [];

  beforeAll(async () => {
    server = await startPostgres();
    pool = server.pool({ max: 20 });
  }, 60_000);
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await server?.stop();
  }, 30_000);

  /** A store on a fresh table (migrated), and the table's name. */
  async function fresh(options: PostgresStoreOptions = {}): Promise<{ store: PostgresStore; table: string }> {
    const table = options.table ?? `t_${++tables}`;
    const store = new PostgresStore(pool, { onWarning: () => undefined, ...options, table });
    stores.push(store);
    await store.migrate();
    return { store, table };
  }

  async function claim(store: PostgresStore, key: IdempotencyKey, leaseMs = LONG): Promise<ClaimedResult> {
    const result = await store.tryInsert(key, new IdempotencyEntry(FP, leaseMs));
    expect(result.kind).toBe('claimed');
    return result as ClaimedResult;
  }

  /** A table the work writes to. */
  async function workTable(): Promise<string> {
    const name = `work_${++tables}`;
    await pool.query(`CREATE TABLE ${name} (id text PRIMARY KEY)`);
    return name;
  }

  const rows = async (table: string) => (await pool.query(`SELECT id FROM ${table} ORDER BY id`)).rows.map((r) => r.id);

  describe('migrate and names', () => {
    it('migrates twice, and at once from several instances', async () => {
      const { store, table } = await fresh();
      await store.migrate();
      await Promise.all(
        Array.from({ length: 4 }, () => new PostgresStore(pool, { table, onWarning: () => undefined }).migrate()),
      );
      expect((await claim(store, IdempotencyKey.default())).fencingToken.value).toBe(1n);
    });

    it('gives the SQL it runs, with quoted names, in a schema when asked', async () => {
      expect(postgresMigrationSql()).toContain('CREATE TABLE IF NOT EXISTS "idempotency_keys" (');
      const sql = postgresMigrationSql({ table: 'Keys', schema: 'idem' });
      expect(sql).toContain('CREATE SEQUENCE IF NOT EXISTS "idem"."Keys_token_seq"');
      expect(sql).toContain('CREATE TABLE IF NOT EXISTS "idem"."Keys" (');
      expect(sql).toContain('CREATE INDEX IF NOT EXISTS "Keys_expires_at" ON "idem"."Keys" (expires_at)');
      await pool.query('CREATE SCHEMA idem');
      const { store } = await fresh({ table: 'Keys', schema: 'idem' });
      expect(store.table).toBe('idem.Keys');
      const c = await claim(store, IdempotencyKey.default());
      expect(c.fencingToken.value).toBe(1n);
      const { rows: found } = await pool.query(`SELECT count(*)::int AS n FROM idem."Keys"`);
      expect(found[0].n).toBe(1);
    });

    it('refuses table and schema names that are not plain identifiers', () => {
      for (const table of ['', '1keys', 'keys; DROP TABLE x', 'a"b', 'a.b', 'ké', 'k'.repeat(49)]) {
        expect(() => new PostgresStore(pool, { table })).toThrow(TypeError);
        expect(() => postgresMigrationSql({ table })).toThrow(/table must be a plain identifier/);
      }
      for (const schema of ['', 'public"', 'a b', 's'.repeat(64)]) {
        expect(() => new PostgresStore(pool, { schema })).toThrow(/schema must be a plain identifier/);
      }
      expect(new PostgresStore(pool, { table: 'k'.repeat(48), schema: 's'.repeat(63) }).kind).toBe('postgres');
    });

    it('says to migrate when the table is missing, as an IdempotencyStoreError', async () => {
      const store = new PostgresStore(pool, { table: 'never_migrated', onWarning: () => undefined });
      stores.push(store);
      const failure = store.get(IdempotencyKey.default());
      await expect(failure).rejects.toBeInstanceOf(IdempotencyStoreError);
      await expect(failure).rejects.toThrow(/migrate\(\)/);
    });
  });

  describe('transactions', () => {
    it('commit persists the work’s writes and the completion together', async () => {
      const { store } = await fresh();
      const work = await workTable();
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const tx = await store.beginTransaction();
      await tx.client.query(`INSERT INTO ${work} (id) VALUES ('charge-1')`);
      expect(await tx.complete(key, c.entry.complete(response('done')), c.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
      // Not visible outside the transaction before the commit.
      expect((await store.get(key))?.isProcessing()).toBe(true);
      expect(await rows(work)).toEqual([]);
      expect(await tx.commit()).toBe('committed');
      expect(await rows(work)).toEqual(['charge-1']);
      const stored = await store.get(key);
      expect(stored?.isCompleted() && Buffer.from(stored.response.body).toString()).toBe('done');
      expect(pool.totalCount - pool.idleCount).toBe(0); // the connection went back
    });

    it('rollback persists neither, and the claim stays processing', async () => {
      const { store } = await fresh();
      const work = await workTable();
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const done = c.entry.complete(response());
      const tx = await store.beginTransaction();
      await tx.client.query(`INSERT INTO ${work} (id) VALUES ('charge-1')`);
      expect(await tx.complete(key, done, c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      await tx.rollback();
      await tx.rollback(); // never throws, also twice
      expect(await rows(work)).toEqual([]);
      expect((await store.get(key))?.isProcessing()).toBe(true);
      expect(pool.totalCount - pool.idleCount).toBe(0);
      // The claim is still its holder's.
      expect(await store.complete(key, done, c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
    });

    it('a stale token completes nothing: FencingMismatch, and the rollback leaves nothing', async () => {
      const { store } = await fresh();
      const work = await workTable();
      const key = IdempotencyKey.default();
      const stale = await claim(store, key, 50);
      await eventually(async () => (await store.get(key)) === undefined, 'the lease to run out');
      const current = await claim(store, key);
      const tx = await store.beginTransaction();
      await tx.client.query(`INSERT INTO ${work} (id) VALUES ('charge-1')`);
      expect(await tx.complete(key, stale.entry.complete(response('stale')), stale.fencingToken, LONG)).toBe(
        FencedOutcome.FencingMismatch,
      );
      const forged = new FencingToken(current.fencingToken.value, 'forged');
      expect(await tx.complete(key, current.entry.complete(response()), forged, LONG)).toBe(
        FencedOutcome.FencingMismatch,
      );
      await tx.rollback();
      expect(await rows(work)).toEqual([]);
      expect((await store.get(key))?.isProcessing()).toBe(true);
    });

    it('does not lock the row before the completion; a claim of the expired key then waits for the commit and sees the result', async () => {
      const { store } = await fresh();
      const key = IdempotencyKey.default();
      const c = await claim(store, key, 400);
      const tx = await store.beginTransaction();
      // The work runs without holding the row: others read and claim-check it freely meanwhile.
      expect((await store.tryInsert(key, new IdempotencyEntry(FP, LONG))).kind).toBe('exists');
      expect(await tx.complete(key, c.entry.complete(response('committed')), c.fencingToken, LONG)).toBe(
        FencedOutcome.Applied,
      );
      // Past the lease, as the committed row says it: the key looks free outside the transaction.
      await eventually(async () => (await store.get(key)) === undefined, 'the lease to run out');
      let settled = false;
      const contender = store.tryInsert(key, new IdempotencyEntry(FP, LONG)).finally(() => (settled = true));
      await eventually(async () => {
        const { rows: waiting } = await pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO%'`,
        );
        return waiting.length > 0;
      }, 'the claim to wait on the row lock');
      expect(settled).toBe(false);
      expect(await tx.commit()).toBe('committed');
      const result = await contender;
      expect(result.kind).toBe('exists');
      expect(result.entry.isCompleted() && Buffer.from(result.entry.response.body).toString()).toBe('committed');
    });

    it('commit of a transaction whose backend was terminated answers rolled-back, and nothing persisted', async () => {
      const { store } = await fresh();
      const work = await workTable();
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const tx = await store.beginTransaction();
      const client = tx.client as unknown as PoolClient;
      const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await client.query(`INSERT INTO ${work} (id) VALUES ('charge-1')`);
      expect(await tx.complete(key, c.entry.complete(response()), c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      await pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await eventually(
        async () => (await pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rows.length === 0,
        'the backend to be gone',
      );
      expect(await tx.commit()).toBe('rolled-back');
      expect(await rows(work)).toEqual([]);
      expect((await store.get(key))?.isProcessing()).toBe(true);
      // The broken connection was destroyed, not given back.
      expect(pool.totalCount - pool.idleCount).toBe(0);
      expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    });

    it('commit answers rolled-back when the server refuses it (a deferred constraint) or the transaction had failed', async () => {
      const { store } = await fresh();
      const name = `deferred_${++tables}`;
      await pool.query(`CREATE TABLE ${name} (id int, UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)`);
      const key = IdempotencyKey.default();
      const c = await claim(store, key);
      const tx = await store.beginTransaction();
      await tx.client.query(`INSERT INTO ${name} VALUES (1), (1)`);
      expect(await tx.complete(key, c.entry.complete(response()), c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      expect(await tx.commit()).toBe('rolled-back');
      expect((await store.get(key))?.isProcessing()).toBe(true);
      expect((await pool.query(`SELECT count(*)::int AS n FROM ${name}`)).rows[0].n).toBe(0);

      const failed = await store.beginTransaction();
      await expect(failed.client.query('SELECT 1/0')).rejects.toThrow(/division by zero/);
      expect(await failed.commit()).toBe('rolled-back');
      await expect(failed.commit()).rejects.toBeInstanceOf(IdempotencyStoreError);
      expect(pool.totalCount - pool.idleCount).toBe(0);
    });
  });

  describe('waitForChange', () => {
    /** The LISTEN/NOTIFY channel of a table: `idempotency_` and a hash of its qualified name. */
    const channelOf = (table: string) => `idempotency_${createHash('sha256').update(table).digest('hex').slice(0, 24)}`;
    const listeners = async (table: string) =>
      (
        await pool.query(`SELECT state FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()`, [
          `LISTEN ${channelOf(table)}`,
        ])
      ).rows as { state: string }[];
    /** Until a store on `table` listens (its connection's last statement was the LISTEN). */
    const listening = (table: string) =>
      eventually(async () => (await listeners(table)).some((r) => r.state === 'idle'), 'the LISTEN connection');

    it('wakes promptly on a completion or a removal by another instance on the table, and falls back to the timeout', async () => {
      const { store: waiter, table } = await fresh();
      const other = new PostgresStore(pool, { table, onWarning: () => undefined });
      stores.push(other);
      const key = IdempotencyKey.default();
      void waiter.waitForChange(IdempotencyKey.default(), 1); // opens the connection
      await listening(table);

      const c = await claim(other, key);
      let started = Date.now();
      let wait = waiter.waitForChange(key, 10_000);
      expect(await other.complete(key, c.entry.complete(response()), c.fencingToken, LONG)).toBe(FencedOutcome.Applied);
      await wait;
      expect(Date.now() - started).toBeLessThan(2_000); // woken, not the timeout (a loaded machine can take a while)

      started = Date.now();
      wait = waiter.waitForChange(key, 10_000);
      expect(await other.remove(key, c.fencingToken)).toBe(FencedOutcome.Applied);
      await wait;
      expect(Date.now() - started).toBeLessThan(2_000); // woken, not the timeout (a loaded machine can take a while)

      // Nothing happens: the timeout.
      started = Date.now();
      await waiter.waitForChange(key, 200);
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      // An abort ends a wait at once.
      const abort = new AbortController();
      started = Date.now();
      wait = waiter.waitForChange(key, 10_000, abort.signal);
      abort.abort();
      await wait;
      expect(Date.now() - started).toBeLessThan(2_000); // woken, not the timeout (a loaded machine can take a while)
    });

    it('waits to the timeout while its connection is lost, and listens again on a later wait', async () => {
      const { store, table } = await fresh();
      const key = IdempotencyKey.default();
      void store.waitForChange(key, 1);
      await listening(table);
      await pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`, [
        `LISTEN ${channelOf(table)}`,
      ]);
      await eventually(async () => (await listeners(table)).length === 0, 'the LISTEN backend to be gone');
      const started = Date.now();
      await store.waitForChange(key, 300); // never rejects
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      // A later wait listens again (the client may learn of the loss only after that wait began,
      // so each try starts a wait of its own).
      await eventually(async () => {
        void store.waitForChange(IdempotencyKey.default(), 1);
        return (await listeners(table)).some((r) => r.state === 'idle');
      }, 'a later wait to listen again');
      const c = await claim(store, key);
      const wait = store.waitForChange(key, 10_000);
      const t0 = Date.now();
      await store.purge(key);
      await wait;
      expect(Date.now() - t0).toBeLessThan(2_000); // woken, not the timeout (a loaded machine can take a while)
      void c;
    });
  });

  describe('sweeping', () => {
    it('deletes expired rows in batches, never a live one nor one another transaction holds', async () => {
      const { store, table } = await fresh({ sweepBatch: 10, sweepIntervalMs: 3_600_000 });
      const live = IdempotencyKey.default();
      await claim(store, live);
      for (let i = 0; i < 26; i++) await claim(store, new IdempotencyKey(`expired-${i}`), 30);
      await eventually(
        async () =>
          (await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE expires_at < clock_timestamp()`)).rows[0]
            .n === 26,
        'the 26 leases to run out',
      );
      // Another transaction holds one expired row (as a completion in an open transaction would).
      const holder = await pool.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(`SELECT 1 FROM ${table} WHERE key = 'expired-0' FOR UPDATE`);
        expect(await store.sweep()).toBe(10);
        expect(await store.sweep()).toBe(10);
        expect(await store.sweep()).toBe(5);
        expect(await store.sweep()).toBe(0);
        const left = (await pool.query(`SELECT key FROM ${table} ORDER BY key`)).rows.map((r) => r.key);
        expect(left.sort()).toEqual([live.toString(), 'expired-0'].sort());
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
      }
      expect(await store.sweep()).toBe(1);
      expect((await store.get(live))?.isProcessing()).toBe(true);
    });

    it('sweeps on its timer', async () => {
      const { store, table } = await fresh({ sweepBatch: 3, sweepIntervalMs: 50 });
      for (let i = 0; i < 8; i++) await claim(store, new IdempotencyKey(`expired-${i}`), 20);
      const live = IdempotencyKey.default();
      await claim(store, live);
      await eventually(
        async () => (await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n === 1,
        'the sweeper to delete the expired rows',
      );
      expect((await store.get(live))?.isProcessing()).toBe(true);
    });
  });

  it('close refuses every operation with StoreClosedError and leaves the pool alone', async () => {
    const { store } = await fresh();
    const key = IdempotencyKey.default();
    const c = await claim(store, key);
    const waiting = store.waitForChange(key, 60_000);
    await store.close();
    await waiting; // woken
    await store.close(); // twice is fine
    const done = c.entry.complete(response());
    const operations: [string, () => Promise<unknown>][] = [
      ['tryInsert', () => store.tryInsert(key, new IdempotencyEntry(FP, LONG))],
      ['complete', () => store.complete(key, done, c.fencingToken, LONG)],
      ['remove', () => store.remove(key, c.fencingToken)],
      ['touch', () => store.touch(key, c.fencingToken, LONG)],
      ['purge', () => store.purge(key)],
      ['get', () => store.get(key)],
      ['ping', () => store.ping()],
      ['sweep', () => store.sweep()],
      ['migrate', () => store.migrate()],
      ['beginTransaction', () => store.beginTransaction()],
    ];
    for (const [operation, run] of operations) {
      await expect(run()).rejects.toEqual(expect.objectContaining({ name: 'StoreClosedError', operation }));
      await expect(run()).rejects.toBeInstanceOf(StoreClosedError);
    }
    const started = Date.now();
    await store.waitForChange(key, 60_000);
    expect(Date.now() - started).toBeLessThan(2_000); // woken, not the timeout (a loaded machine can take a while)
    expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    expect(pool.ended).toBe(false);
  });

  it('with closePool, close ends the pool once the transactions still running gave their connections back', async () => {
    const own = server.pool();
    const store = new PostgresStore(own, { table: `own_${Date.now()}`, closePool: true, onWarning: () => undefined });
    await store.migrate();
    const tx = await store.beginTransaction();
    const closed = store.close();
    await (tx.client as { query(text: string): Promise<unknown> }).query('SELECT 1');
    await tx.rollback();
    await closed;
    expect(own.ended).toBe(true);
  });

  it('pings', async () => {
    const { store } = await fresh();
    await expect(store.ping()).resolves.toBeUndefined();
  });

  describe('synchronous_commit', () => {
    it('warns once when it is off (as this test server runs)', async () => {
      const warnings: string[] = [];
      const { store } = await fresh({ onWarning: (message) => warnings.push(message) });
      const key = IdempotencyKey.default();
      await claim(store, key);
      await store.get(key);
      await store.migrate();
      await eventually(() => warnings.length > 0, 'the warning');
      expect(warnings).toEqual([expect.stringMatching(/synchronous_commit is off.*crash of PostgreSQL can lose/)]);
    });

    it('warns on first use too, without migrate, and not when it is on', async () => {
      const warnings: string[] = [];
      const { table } = await fresh();
      const off = new PostgresStore(pool, { table, onWarning: (message) => warnings.push(message) });
      stores.push(off);
      await off.get(IdempotencyKey.default());
      await eventually(() => warnings.length === 1, 'the warning');

      const onPool = server.pool({ options: '-c synchronous_commit=on' });
      const on = new PostgresStore(onPool, { table, onWarning: (message) => warnings.push(message) });
      stores.push(on);
      await on.migrate();
      await on.get(IdempotencyKey.default());
      expect(warnings).toHaveLength(1);
      await on.close();
    });
  });
});
