import { Global, Module } from '@nestjs/common';
import type { Pool } from 'pg';

/** The PostgreSQL pool when `DATABASE_URL` is set, else `null`. */
export const DATABASE = Symbol('DATABASE');

/** The payments table the Postgres mode writes to, in the same transaction as the stored response. */
export const PAYMENTS_TABLE_SQL = `CREATE TABLE IF NOT EXISTS payments (
  id text PRIMARY KEY,
  amount integer NOT NULL,
  currency text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
)`;

/**
 * Provides the pool (pg is an optional peer dependency: loaded only when `DATABASE_URL` is set).
 * The idempotency store is handed the pool with `closePool: true`, so the module ends it at
 * shutdown, after the store closed.
 */
@Global()
@Module({
  providers: [
    {
      provide: DATABASE,
      useFactory: async (): Promise<Pool | null> => {
        const url = process.env.DATABASE_URL;
        if (!url) return null;
        const { Pool } = await import('pg');
        const pool = new Pool({ connectionString: url });
        // Without a listener, an idle connection the server drops (a restart) crashes the process.
        pool.on('error', (error) => console.error('postgres:', error.message));
        await pool.query(PAYMENTS_TABLE_SQL);
        return pool;
      },
    },
  ],
  exports: [DATABASE],
})
export class DatabaseModule {}
