/**
 * An app whose transactional route writes its effect and then never returns, so the test can kill
 * the process with the transaction open (before its commit). Prints `listening <url>` when ready.
 */
import { Body, Controller, Headers, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Pool, type PoolClient } from 'pg';
import { IdempotencyModule, IdempotencyTransaction, Idempotent, PostgresStore } from '../../../lib';

@Controller('ledger')
class LedgerController {
  @Post('charge')
  @Idempotent()
  async charge(
    @Headers('idempotency-key') key: string,
    @Body() body: { amount: number },
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    await tx.query('INSERT INTO effects (key, amount) VALUES ($1, $2)', [key, body.amount]);
    await new Promise(() => undefined);
  }
}

async function main(): Promise<void> {
  const pool = new Pool({ connectionString: process.env.DATABASE_URL });
  const store = new PostgresStore(pool, { table: process.env.TABLE });
  @Module({
    imports: [IdempotencyModule.forRoot({ store, leaseMs: Number(process.env.LEASE_MS) })],
    controllers: [LedgerController],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false });
  await app.listen(0, '127.0.0.1');
  process.stdout.write(`listening ${(await app.getUrl()).replace('[::1]', '127.0.0.1')}\n`);
}

void main();
