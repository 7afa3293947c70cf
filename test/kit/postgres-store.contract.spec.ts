/**
 * The example store of docs/custom-stores.md (test/kit/postgres-store.ts, the same code) on a real
 * Postgres: PGlite, in a worker thread (Jest's sandbox refuses PGlite's dynamic import()), and on a
 * real PostgreSQL server through a node-postgres Pool, where concurrent claims run on several
 * connections at once (the READ COMMITTED races the page reasons about; PGlite has one connection).
 */
import type { Pool } from 'pg';
import { Fingerprint, IdempotencyEntry, IdempotencyKey } from '../../lib';
import { storeContract } from '../../lib/testing';
import { Postgres } from '../support/pglite';
import { describePostgres, type PostgresServer, startPostgres } from '../support/postgres-server';
import { PostgresStore } from './postgres-store';

// One Postgres for the file (it takes seconds to start); every store gets tables of its own.
let db: Postgres;
let stores = 0;

beforeAll(async () => {
  db = await Postgres.start();
}, 60_000);

afterAll(async () => {
  await db?.close();
});

async function freshStore(): Promise<{ store: PostgresStore; tablePrefix: string }> {
  const tablePrefix = `kit_${++stores}`;
  const store = new PostgresStore(db, { tablePrefix });
  await store.createTables();
  return { store, tablePrefix };
}

storeContract(
  async () => {
    const { store, tablePrefix } = await freshStore();
    return { store, close: () => db.exec(`DROP TABLE ${tablePrefix}_entries, ${tablePrefix}_counters`) };
  },
  { describe, it, name: 'PostgresStore (docs/custom-stores.md) on PGlite' },
);

describe('PostgresStore, beyond the contract', () => {
  const entry = (ttlMs = 60_000) => new IdempotencyEntry(Fingerprint.fromBigInt(7n), ttlMs);

  it('keeps at most one fencing counter per bucket, however many keys it sees', async () => {
    const { store, tablePrefix } = await freshStore();
    for (let i = 0; i < 3_000; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, j) => store.tryInsert(new IdempotencyKey(`key-${i + j}`), entry())),
      );
    }
    const { rows } = await db.query<{ n: number; total: string }>(
      `SELECT count(*)::int AS n, sum(token)::text AS total FROM ${tablePrefix}_counters`,
    );
    expect(rows[0].n).toBeLessThanOrEqual(1024);
    expect(rows[0].n).toBeGreaterThan(900);
    // Every claim moved exactly one counter by one.
    expect(rows[0].total).toBe('3000');
  }, 30_000);

  it('does not move the counter for a claim that finds the key live', async () => {
    const { store, tablePrefix } = await freshStore();
    const key = IdempotencyKey.default();
    expect((await store.tryInsert(key, entry())).kind).toBe('claimed');
    for (let i = 0; i < 5; i++) expect((await store.tryInsert(key, entry())).kind).toBe('exists');
    const { rows } = await db.query<{ total: string }>(`SELECT sum(token)::text AS total FROM ${tablePrefix}_counters`);
    expect(rows[0].total).toBe('1');
  });

  it('sweeps expired entries out of the table, and only those', async () => {
    const { store, tablePrefix } = await freshStore();
    await store.tryInsert(new IdempotencyKey('short'), entry(50));
    await store.tryInsert(new IdempotencyKey('long'), entry());
    await new Promise((resolve) => setTimeout(resolve, 100));
    await store.sweep();
    const { rows } = await db.query<{ key: string }>(`SELECT key FROM ${tablePrefix}_entries`);
    expect(rows.map((r) => r.key)).toEqual(['long']);
  });

  it('takes only a plain identifier as table prefix', () => {
    for (const bad of ['', 'Upper', 'a;DROP TABLE x', 'a b', '1abc', 'x'.repeat(42)]) {
      expect(() => new PostgresStore(db, { tablePrefix: bad })).toThrow(RangeError);
    }
    expect(new PostgresStore(db).kind).toBe('postgres');
  });
});

describePostgres('PostgresStore (docs/custom-stores.md) on PostgreSQL through a pg Pool', () => {
  let server: PostgresServer;
  let pool: Pool;
  let tables = 0;

  beforeAll(async () => {
    server = await startPostgres();
    pool = server.pool({ max: 10 });
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
  });

  storeContract(
    async () => {
      const tablePrefix = `pool_${++tables}`;
      const store = new PostgresStore(pool, { tablePrefix });
      await store.createTables();
      return { store, close: () => pool.query(`DROP TABLE ${tablePrefix}_entries, ${tablePrefix}_counters`) };
    },
    { describe, it, name: 'PostgresStore (docs/custom-stores.md) on PostgreSQL, pg Pool of 10' },
  );
});
