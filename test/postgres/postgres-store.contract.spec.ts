/**
 * The shared store contract (the test kit's `storeContract`) on a real PostgreSQL: PostgresStore
 * over a node-postgres Pool, each case on a table of its own (so tokens start at 1), dropped after.
 */
import type { Pool } from 'pg';
import { PostgresStore } from '../../lib';
import { storeContract } from '../../lib/testing';
import { describePostgres, type PostgresServer, startPostgres } from '../support/postgres-server';

describePostgres('PostgresStore contract, PostgreSQL through a pg Pool', () => {
  let server: PostgresServer;
  let pool: Pool;
  let tables = 0;
  beforeAll(async () => {
    server = await startPostgres();
    pool = server.pool({ max: 20 });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  }, 30_000);

  storeContract(
    async () => {
      const table = `contract_${++tables}`;
      const store = new PostgresStore(pool, { table, onWarning: () => undefined });
      await store.migrate();
      return {
        store,
        close: async () => {
          await store.close();
          await pool.query(`DROP TABLE ${table}; DROP SEQUENCE ${table}_token_seq`);
        },
      };
    },
    { describe, it: (name, fn) => it(name, fn, 20_000), name: 'PostgresStore' },
  );
});
