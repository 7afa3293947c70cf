/**
 * Run in a fresh Node process by test/e2e/idempotency-admin.e2e-spec.ts: a worker that claims a
 * key on a real Valkey through `IdempotencyService.run` (as principal `u-crash`, with a long
 * lease) and is SIGKILLed in the middle of its work, as a crashed holder is: the key stays
 * processing until its lease ends, or until an operator releases it.
 */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { IdempotencyModule, IdempotencyService, ValkeyStore } from '../../../lib';

const client = new Redis(process.env.ADMIN_CHILD_VALKEY_URL!);

@Module({
  imports: [
    IdempotencyModule.forRoot({
      store: new ValkeyStore(client, { prefix: process.env.ADMIN_CHILD_PREFIX }),
      leaseMs: 120_000,
    }),
  ],
})
class WorkerModule {}

async function main(): Promise<void> {
  const app = await NestFactory.createApplicationContext(WorkerModule, { logger: false });
  await app.get(IdempotencyService).run(
    'crashed-job',
    (claim) => {
      process.stdout.write(`${JSON.stringify({ fencingToken: claim.fencingToken.toString() })}\n`);
      process.kill(process.pid, 'SIGKILL');
      return new Promise(() => undefined);
    },
    { scope: 'u-crash' },
  );
}

void main();
