/**
 * Issue 18 (DESIGN 7.3): `@IdempotencyTransaction()` and `claim.transaction` on a real PostgreSQL,
 * through a real Nest app: HTTP routes on Express and Fastify, `IdempotencyService.run`, and a
 * message handler on the TCP transport. Per key, the effect rows the work wrote through the
 * transaction and its stored result commit together or not at all:
 *
 * - the work returns: both committed; a retry is a replay, the effect written once;
 * - the work throws: rolled back (no effect row); the key released, a retry runs cleanly;
 * - the claim was taken over meanwhile: rolled back; the client gets what the key holds now;
 * - the transaction's connection dies before the commit: nothing persisted, 503, a retry runs;
 * - the process dies before the commit: nothing persisted; after the lease the retry runs.
 */
import { BadRequestException, Body, Controller, Headers, Injectable, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientProxyFactory,
  MessagePattern,
  type MicroserviceOptions,
  Payload,
  Transport,
  type ClientProxy,
} from '@nestjs/microservices';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import * as path from 'node:path';
import type { Pool, PoolClient } from 'pg';
import { lastValueFrom } from 'rxjs';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import {
  IdempotencyAdmin,
  IdempotencyConflictError,
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyService,
  IdempotencyTransaction,
  Idempotent,
  MemoryStore,
  PostgresStore,
} from '../../lib';
import { eventually } from '../support/eventually';
import { describePostgres, startPostgres, type PostgresServer } from '../support/postgres-server';
import { getFreePort } from '../support/valkey-server';
import { Executions, type Platform, startApp, type TestApp } from '../e2e/http-app';
import { tsChildCommand } from '../support/ts-child';

const LEASE_MS = 1_500;
/** The killed process's lease: long enough that an operator still sees its claim on a loaded machine. */
const CHILD_LEASE_MS = 6_000;
const PLATFORMS: Platform[] = ['express', 'fastify'];

/** Backend pids of the transactions handlers hold open, by key. */
const backends = new Map<string, number>();

interface ChargeBody {
  amount: number;
  fail?: boolean;
}

async function writeEffect(tx: PoolClient, key: string, amount: number): Promise<void> {
  await tx.query('INSERT INTO effects (key, amount) VALUES ($1, $2)', [key, amount]);
}

@Controller('ledger')
class LedgerController {
  constructor(private readonly executions: Executions) {}

  @Post('charge')
  @Idempotent()
  async charge(
    @Headers('idempotency-key') key: string,
    @Headers('x-hold') hold: string | undefined,
    @Body() body: ChargeBody,
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    await writeEffect(tx, key, body.amount);
    // Held (by a header: the fingerprint is the same as the unheld request's) until the test opens it.
    if (hold !== undefined) {
      backends.set(key, (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid);
      await this.executions.gate(key);
    }
    if (body.fail) throw new BadRequestException('declined');
    return { charged: body.amount, id: randomUUID() };
  }
}

/** The same table, as Drizzle sees it. */
const effects = pgTable('effects', { key: text('key').notNull(), amount: integer('amount').notNull() });

/** The docs' Drizzle recipe: Drizzle over the transaction's client. */
@Controller('orders')
class OrdersController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent()
  async create(
    @Headers('idempotency-key') key: string,
    @Body() body: ChargeBody,
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    const db = drizzle(tx);
    await db.insert(effects).values({ key, amount: body.amount });
    if (body.fail) throw new BadRequestException('declined');
    const [row] = await db.select().from(effects).where(eq(effects.key, key));
    return { amount: row.amount };
  }
}

async function effectRows(pool: Pool, key: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM effects WHERE key = $1', [key]);
  return Number(rows[0].n);
}

describePostgres('@IdempotencyTransaction on PostgreSQL', () => {
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

  async function freshStore(): Promise<PostgresStore> {
    const store = new PostgresStore(pool, { table: `keys_${randomUUID().replace(/-/g, '')}` });
    await store.migrate();
    return store;
  }

  describe.each(PLATFORMS)('HTTP routes on %s', (platform) => {
    let app: TestApp;
    let store: PostgresStore;

    beforeAll(async () => {
      store = await freshStore();
      app = await startApp(platform, {
        store,
        controllers: [LedgerController, OrdersController],
        moduleOptions: { leaseMs: LEASE_MS },
      });
    });

    afterAll(async () => {
      await app?.close();
    });

    const charge = (key: string, body: ChargeBody, hold = false) =>
      app.client.request('POST', '/ledger/charge', {
        headers: { 'idempotency-key': key, 'x-hold': hold ? '1' : undefined },
        body,
      });

    it('commits the effect with the stored response; a retry replays it, the effect written once', async () => {
      const key = `ok-${randomUUID()}`;
      const first = await charge(key, { amount: 5 });
      expect(first.status).toBe(201);
      expect(await effectRows(pool, key)).toBe(1);
      expect((await store.get(new IdempotencyKey(key)))?.isCompleted()).toBe(true);

      const again = await charge(key, { amount: 5 });
      expect(again.status).toBe(201);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.json()).toEqual(first.json());
      expect(app.executions.count(key)).toBe(1);
      expect(await effectRows(pool, key)).toBe(1);
    });

    it('rolls the effect back when the handler throws; the key is free and a retry runs cleanly', async () => {
      const key = `fail-${randomUUID()}`;
      const failed = await charge(key, { amount: 7, fail: true });
      expect(failed.status).toBe(400);
      expect(await effectRows(pool, key)).toBe(0);
      expect(await store.get(new IdempotencyKey(key))).toBeUndefined();

      const retry = await charge(key, { amount: 7 });
      expect(retry.status).toBe(201);
      expect(retry.headers['idempotent-replayed']).toBeUndefined();
      expect(app.executions.count(key)).toBe(2);
      expect(await effectRows(pool, key)).toBe(1);
    });

    it('rolls back a holder whose claim was taken over; its client gets what the key holds now', async () => {
      const key = `taken-${randomUUID()}`;
      const first = charge(key, { amount: 3 }, true);
      await eventually(() => backends.has(key));
      // The holder's claim ends (as when its lease ran out) and another request takes the key.
      await store.purge(new IdempotencyKey(key));
      const second = await charge(key, { amount: 3 });
      expect(second.status).toBe(201);
      app.executions.open(key);
      const late = await first;
      // The late holder's effect was rolled back with its completion; it answers the stored result.
      expect(late.status).toBe(201);
      expect(late.headers['idempotent-replayed']).toBe('true');
      expect(late.json()).toEqual(second.json());
      expect(app.executions.count(key)).toBe(2);
      expect(await effectRows(pool, key)).toBe(1);
    });

    it("answers 503 when the transaction's connection dies before the commit; nothing persisted, a retry runs", async () => {
      const key = `gone-${randomUUID()}`;
      const first = charge(key, { amount: 9 }, true);
      await eventually(() => backends.has(key));
      await pool.query('SELECT pg_terminate_backend($1)', [backends.get(key)]);
      app.executions.open(key);
      const failed = await first;
      expect(failed.status).toBe(503);
      expect(failed.headers['retry-after']).toBeDefined();
      expect(await effectRows(pool, key)).toBe(0);

      const retry = await charge(key, { amount: 9 });
      expect(retry.status).toBe(201);
      expect(app.executions.count(key)).toBe(2);
      expect(await effectRows(pool, key)).toBe(1);
    });

    it('runs Drizzle over the transaction: its writes commit with the response, or roll back with it', async () => {
      const order = (key: string, body: ChargeBody) =>
        app.client.request('POST', '/orders', { headers: { 'idempotency-key': key }, body });
      const key = `drizzle-${randomUUID()}`;
      expect((await order(key, { amount: 12, fail: true })).status).toBe(400);
      expect(await effectRows(pool, key)).toBe(0);
      const created = await order(key, { amount: 12 });
      expect(created.status).toBe(201);
      expect(created.json()).toEqual({ amount: 12 });
      const again = await order(key, { amount: 12 });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(app.executions.count(key)).toBe(2);
      expect(await effectRows(pool, key)).toBe(1);
    });
  });

  describe('IdempotencyService.run', () => {
    @Injectable()
    class Refunds {
      constructor(private readonly idempotency: IdempotencyService) {}
      runs = 0;

      refund(key: string, amount: number, fail = false) {
        return this.idempotency.run(
          key,
          async (claim) => {
            this.runs++;
            await writeEffect(claim.transaction as PoolClient, key, amount);
            if (fail) throw new Error('the provider declined');
            return { refunded: amount };
          },
          { request: { amount } },
        );
      }
    }

    @Module({ providers: [Refunds] })
    class RefundsModule {}

    let refunds: Refunds;
    let close: () => Promise<void>;

    beforeAll(async () => {
      const store = await freshStore();
      @Module({ imports: [IdempotencyModule.forRoot({ store, leaseMs: LEASE_MS }), RefundsModule] })
      class AppModule {}
      const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
      refunds = app.get(Refunds);
      close = () => app.close();
    });

    afterAll(async () => {
      await close?.();
    });

    it('commits the effect with the stored value; the second call is a replay', async () => {
      const key = `svc-${randomUUID()}`;
      expect(await refunds.refund(key, 4)).toEqual({ value: { refunded: 4 }, replayed: false });
      expect(await refunds.refund(key, 4)).toEqual({ value: { refunded: 4 }, replayed: true });
      expect(await effectRows(pool, key)).toBe(1);
    });

    it('rolls back when the work throws, and runs cleanly on the next call', async () => {
      const key = `svc-fail-${randomUUID()}`;
      const runs = refunds.runs;
      await expect(refunds.refund(key, 6, true)).rejects.toThrow('the provider declined');
      expect(await effectRows(pool, key)).toBe(0);
      expect(await refunds.refund(key, 6)).toEqual({ value: { refunded: 6 }, replayed: false });
      expect(refunds.runs - runs).toBe(2);
      expect(await effectRows(pool, key)).toBe(1);
    });

    it('refuses the same key with another request, and writes nothing', async () => {
      const key = `svc-reuse-${randomUUID()}`;
      await refunds.refund(key, 1);
      await expect(refunds.refund(key, 2)).rejects.toBeInstanceOf(IdempotencyConflictError);
      expect(await effectRows(pool, key)).toBe(1);
    });
  });

  describe('a message handler on the TCP transport', () => {
    let handled = 0;

    @Controller()
    class PaymentsHandler {
      @MessagePattern('charge')
      @Idempotent()
      async charge(
        @Payload() data: { idempotencyKey: string; amount: number; fail?: boolean },
        @IdempotencyTransaction() tx: PoolClient,
      ) {
        handled++;
        await writeEffect(tx, data.idempotencyKey, data.amount);
        if (data.fail) throw new Error('declined');
        return { charged: data.amount };
      }
    }

    let client: ClientProxy;
    let close: () => Promise<void>;

    beforeAll(async () => {
      const store = await freshStore();
      @Module({ imports: [IdempotencyModule.forRoot({ store, leaseMs: LEASE_MS })], controllers: [PaymentsHandler] })
      class AppModule {}
      const port = await getFreePort();
      const app = await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, {
        transport: Transport.TCP,
        options: { host: '127.0.0.1', port },
        logger: false,
      });
      await app.listen();
      client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port } });
      await client.connect();
      close = async () => {
        await client.close();
        await app.close();
      };
    });

    afterAll(async () => {
      await close?.();
    });

    const send = (data: object) => lastValueFrom(client.send('charge', data));

    it('commits the effect with the stored reply; a redelivery gets the reply, the effect written once', async () => {
      const key = `msg-${randomUUID()}`;
      const before = handled;
      expect(await send({ idempotencyKey: key, amount: 2 })).toEqual({ charged: 2 });
      expect(await send({ idempotencyKey: key, amount: 2 })).toEqual({ charged: 2 });
      expect(handled - before).toBe(1);
      expect(await effectRows(pool, key)).toBe(1);
    });

    it('rolls back when the handler throws; the redelivery runs cleanly', async () => {
      const key = `msg-fail-${randomUUID()}`;
      const before = handled;
      await expect(send({ idempotencyKey: key, amount: 8, fail: true })).rejects.toBeDefined();
      expect(await effectRows(pool, key)).toBe(0);
      expect(await send({ idempotencyKey: key, amount: 8 })).toEqual({ charged: 8 });
      expect(handled - before).toBe(2);
      expect(await effectRows(pool, key)).toBe(1);
    });
  });

  it('refuses @IdempotencyTransaction() at start-up with a store that cannot run transactions', async () => {
    await expect(
      startApp('express', { store: new MemoryStore(), controllers: [LedgerController] }).then((app) => app.close()),
    ).rejects.toThrow(/IdempotencyTransaction.*PostgresStore|PostgresStore.*IdempotencyTransaction/s);
  });

  it('persists nothing when the process dies before the commit; after the lease the retry runs once', async () => {
    const table = `keys_${randomUUID().replace(/-/g, '')}`;
    const store = new PostgresStore(pool, { table });
    await store.migrate();
    const key = `crash-${randomUUID()}`;
    const [command, args] = tsChildCommand(path.join(__dirname, 'children/transaction-holder.child.ts'));
    const child = spawn(command, args, {
      cwd: path.resolve(__dirname, '../..'),
      env: { ...process.env, DATABASE_URL: server.connectionString, TABLE: table, LEASE_MS: String(CHILD_LEASE_MS) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const match = /listening (\S+)/.exec(out);
          if (match) resolve(match[1]);
        });
        child.once('exit', (code) => reject(new Error(`the child exited with ${code}`)));
      });
      // The child's handler writes its effect, then never returns.
      const request = fetch(`${url}/ledger/charge`, {
        method: 'POST',
        headers: { 'idempotency-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ amount: 11 }),
      }).catch(() => undefined);
      await eventually(async () => {
        const { rows } = await pool.query<{ n: string }>(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'idle in transaction'",
        );
        return Number(rows[0].n) > 0;
      });
      child.kill('SIGKILL');
      await request;
    } finally {
      child.kill('SIGKILL');
    }
    expect(await effectRows(pool, key)).toBe(0);

    // Another instance on the same table: 409 while the dead holder's lease lasts, then it runs once.
    const app = await startApp('fastify', {
      store,
      controllers: [LedgerController],
      moduleOptions: { leaseMs: LEASE_MS },
    });
    try {
      // What an operator sees meanwhile: the dead holder's claim, not held by this process.
      const stuck = await app.app.get(IdempotencyAdmin).inspect(key);
      expect(stuck).toMatchObject({ state: 'processing', heldHere: false });
      expect(stuck.msLeft).toBeLessThanOrEqual(CHILD_LEASE_MS);
      const charge = () =>
        app.client.request('POST', '/ledger/charge', { headers: { 'idempotency-key': key }, body: { amount: 11 } });
      let response = await charge();
      while (response.status === 409) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        response = await charge();
      }
      expect(response.status).toBe(201);
      expect(app.executions.count(key)).toBe(1);
      expect(await effectRows(pool, key)).toBe(1);
    } finally {
      await app.close();
    }
  });

  it('with encryption, the row holds the sealed response only, committed with the effect', async () => {
    const store = await freshStore();
    const app = await startApp('express', {
      store,
      controllers: [LedgerController],
      moduleOptions: { encryption: { keys: [{ id: 'k1', key: randomBytes(32) }] } },
    });
    try {
      const key = `sealed-${randomUUID()}`;
      const first = await app.client.request('POST', '/ledger/charge', {
        headers: { 'idempotency-key': key },
        body: { amount: 4242 },
      });
      expect(first.status).toBe(201);
      const { rows } = await pool.query<{ body: Buffer; metadata: unknown }>(
        `SELECT body, metadata::text AS metadata FROM ${store.table} WHERE status_code IS NOT NULL`,
      );
      expect(rows).toHaveLength(1);
      const raw = `${rows[0].body.toString('latin1')}${String(rows[0].metadata)}`;
      expect(raw).not.toContain('4242');
      expect(raw).not.toContain('charged');
      expect(raw).not.toContain('application/json');
      const again = await app.client.request('POST', '/ledger/charge', {
        headers: { 'idempotency-key': key },
        body: { amount: 4242 },
      });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.json()).toEqual(first.json());
      expect(await effectRows(pool, key)).toBe(1);
    } finally {
      await app.close();
    }
  });
});
