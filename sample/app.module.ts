import { Module } from '@nestjs/common';
import type { Pool } from 'pg';
import { IdempotencyModule, IdempotencyStore, MemoryStore, PostgresStore, ValkeyStore } from '../lib';
import { DATABASE, DatabaseModule } from './database';
import { PaymentsModule } from './payments/payments.module';
import { RefundsModule } from './refunds/refunds.module';

/**
 * The memory store by default; a PostgreSQL store when DATABASE_URL is set (the payments route
 * then writes its payment in the same transaction as the stored response); a Valkey store when
 * VALKEY_URL is set (e.g. VALKEY_URL=redis://127.0.0.1:6379 npm run start:sample).
 */
export async function createStore(url = process.env.VALKEY_URL, pool?: Pool | null): Promise<IdempotencyStore> {
  if (pool) {
    // closePool: the pool was made for this app; closing the store at shutdown ends it.
    const store = new PostgresStore(pool, { closePool: true });
    await store.migrate();
    return store;
  }
  if (!url) return new MemoryStore();
  // ioredis is an optional peer dependency: only Valkey users install it.
  const { Redis } = await import('ioredis');
  const client = new Redis(url);
  // ioredis reconnects by itself; without a listener each failed attempt is an unhandled 'error'.
  client.on('error', (error) => console.error('valkey:', error.message));
  // closeClient: the client was made for this store, so closing the store (at shutdown) quits it.
  return new ValkeyStore(client, { closeClient: true });
}

@Module({
  imports: [
    DatabaseModule,
    IdempotencyModule.forRootAsync({
      inject: [DATABASE],
      useFactory: async (pool: Pool | null) => ({
        store: await createStore(process.env.VALKEY_URL, pool),
        ttlMs: 24 * 60 * 60 * 1000,
      }),
    }),
    PaymentsModule.register(),
    RefundsModule,
  ],
})
export class AppModule {}
