/**
 * Adversarial review of the PostgreSQL store and `@IdempotencyTransaction()` (DESIGN 7.1, 7.3,
 * docs/postgres.md) on a real PostgreSQL and real Nest apps. Each test is an attack on a promise:
 * per key, the effect written through the transaction and the stored response commit together,
 * exactly once; the handler never starts on a claim whose lease has passed; no process crash from
 * a pg client's 'error' event; no key stuck forever.
 */
import { Body, Controller, Headers, Injectable, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import {
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyService,
  IdempotencyTransaction,
  Idempotent,
  PostgresStore,
  type PostgresPool,
} from '../../lib';
import { eventually } from '../support/eventually';
import { describePostgres, startPostgres, type PostgresServer } from '../support/postgres-server';
import { Executions, startApp, type TestApp } from '../e2e/http-app';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function effectRows(pool: Pool, key: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM effects WHERE key = $1', [key]);
  return Number(rows[0].n);
}

@Controller('pay')
class PayController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent()
  async pay(
    @Headers('idempotency-key') key: string,
    @Headers('x-hold') hold: string | undefined,
    @Body() body: { amount: number },
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    await tx.query('INSERT INTO effects (key, amount) VALUES ($1, $2)', [key, body.amount]);
    if (hold !== undefined) await this.executions.gate(key);
    return { paid: body.amount };
  }
}

describePostgres('PostgresStore under attack', () => {
  let server: PostgresServer;
  let pool: Pool;

  beforeAll(async () => {
    server = await startPostgres();
    pool = server.pool();
    await pool.query('CREATE TABLE effects (key text NOT NULL, amount integer NOT NULL)');
  });

  afterAll(async () => {
    await server?.stop();
  });

  const table = () => `adv_${randomUUID().replace(/-/g, '')}`;

  async function freshStore(on: PostgresPool = pool, options: { table?: string; schema?: string } = {}) {
    const store = new PostgresStore(on, { table: options.table ?? table(), schema: options.schema });
    await store.migrate();
    return store;
  }

  it("migrate(): a connection the server ends mid-way rejects the call, never an unhandled 'error' that crashes the process", async () => {
    const name = table();
    const store = new PostgresStore(pool, { table: name });
    // Another instance migrating holds the advisory lock: this migrate waits on it.
    const other = await pool.connect();
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.prependListener('uncaughtException', onUncaught);
    try {
      await other.query('BEGIN');
      await other.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`nestjs-idempotent:${name}`]);
      const migrating = store.migrate();
      migrating.catch(() => undefined);
      let pid: number | undefined;
      await eventually(async () => {
        const { rows } = await pool.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'",
        );
        pid = rows[0]?.pid;
        return pid !== undefined;
      }, 'migrate to wait on the lock');
      await pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await expect(migrating).rejects.toThrow(/postgres migrate failed/);
      await sleep(100);
      expect(uncaught).toEqual([]);
    } finally {
      process.removeListener('uncaughtException', onUncaught);
      await other.query('ROLLBACK').catch(() => undefined);
      other.release();
      await store.close();
    }
  });
});
