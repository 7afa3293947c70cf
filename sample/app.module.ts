import { Module } from '@nestjs/common';
import { IdempotencyModule, IdempotencyStore, MemoryStore, ValkeyStore } from '../lib';
import { PaymentsModule } from './payments/payments.module';
import { RefundsModule } from './refunds/refunds.module';

/**
 * The memory store by default; a Valkey store when VALKEY_URL is set
 * (e.g. VALKEY_URL=redis://127.0.0.1:6379 npm run start:sample).
 */
export async function createStore(url = process.env.VALKEY_URL): Promise<IdempotencyStore> {
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
    IdempotencyModule.forRootAsync({
      useFactory: async () => ({ store: await createStore(), ttlMs: 24 * 60 * 60 * 1000 }),
    }),
    PaymentsModule,
    RefundsModule,
  ],
})
export class AppModule {}
