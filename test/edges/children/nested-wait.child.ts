/**
 * Run in a fresh Node process by test/edges/waits-and-shutdown.e2e-spec.ts: a nested
 * `IdempotencyService.run` with the key of the run around it and `waitMs`, in an application
 * context with nothing else holding the event loop (a cron job, a queue consumer). The inner run
 * waits for the outer one, which waits for it: after `waitMs` the inner run must throw in-flight.
 * The wait must keep the process alive until then; if it does not, Node exits in the middle of
 * the work with code 0 and prints nothing.
 */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IdempotencyConflictError, IdempotencyModule, IdempotencyService, MemoryStore } from '../../../lib';

@Module({ imports: [IdempotencyModule.forRoot({ store: new MemoryStore(), waitMs: 400 })] })
class JobModule {}

async function main(): Promise<void> {
  const app = await NestFactory.createApplicationContext(JobModule, { logger: false });
  const idempotency = app.get(IdempotencyService);
  let outcome: string;
  try {
    await idempotency.run('job-1', async () => {
      await idempotency.run('job-1', () => 'inner');
      return 'outer';
    });
    outcome = 'no error';
  } catch (error) {
    outcome = error instanceof IdempotencyConflictError ? `conflict ${error.reason}` : `error ${String(error)}`;
  }
  process.stdout.write(`${JSON.stringify({ outcome })}\n`);
  await app.close();
}

void main();
