/**
 * Adversarial review of the PostgreSQL store and `@IdempotencyTransaction()` (DESIGN 7.1, 7.3,
 * docs/postgres.md) on a real PostgreSQL and real Nest apps. Each test is an attack on a promise:
 * per key, the effect written through the transaction and the stored response commit together,
 * exactly once; the handler never starts on a claim whose lease has passed; no process crash from
 * a pg client's 'error' event; no key stuck forever.
 */
import { BadRequestException, Body, Controller, Headers, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import { Client as PgClient, Pool as PgPool, type Pool, type PoolClient } from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
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

/** A pool whose next `connect()` waits until the test opens it: a pool busy with other work. */
function contendedPool(inner: Pool) {
  let gate: Promise<void> | undefined;
  const pooled = inner as unknown as { options: object; Client: unknown };
  const wrapper = {
    options: pooled.options,
    Client: pooled.Client,
    query: (query: never) => inner.query(query),
    async connect() {
      const waitFor = gate;
      gate = undefined;
      if (waitFor !== undefined) await waitFor;
      return inner.connect();
    },
    /** The next connect() waits for the function answered. */
    holdNextConnect(): () => void {
      let open!: () => void;
      gate = new Promise<void>((resolve) => (open = resolve));
      return open;
    },
  };
  return wrapper;
}

/** A pool whose transactions' COMMIT waits until the test opens it (a slow commit). */
function slowCommitPool(inner: Pool) {
  let gate: Promise<void> | undefined;
  let reached!: () => void;
  let commitReached = new Promise<void>((resolve) => (reached = resolve));
  const pooled = inner as unknown as { options: object; Client: unknown };
  return {
    options: pooled.options,
    Client: pooled.Client,
    query: (query: never) => inner.query(query),
    async connect() {
      const client = await inner.connect();
      return new Proxy(client, {
        get(target, property, receiver) {
          if (property !== 'query') return Reflect.get(target, property, receiver) as unknown;
          return async (...args: unknown[]) => {
            if (args[0] === 'COMMIT' && gate !== undefined) {
              reached();
              await gate;
            }
            return (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
          };
        },
      });
    },
    /** The next COMMIT waits; answers when it is reached, and the opener. */
    holdCommit(): { reached: Promise<void>; open: () => void } {
      let open!: () => void;
      gate = new Promise<void>((resolve) => (open = resolve));
      commitReached = new Promise<void>((resolve) => (reached = resolve));
      return {
        reached: commitReached,
        open: () => {
          gate = undefined;
          open();
        },
      };
    },
  };
}

@Controller('pay-or-fail')
class PayOrFailController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent({ cacheErrors: true })
  async pay(
    @Headers('idempotency-key') key: string,
    @Body() body: { amount: number; fail?: boolean },
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    await tx.query('INSERT INTO effects (key, amount) VALUES ($1, $2)', [key, body.amount]);
    if (body.fail) throw new BadRequestException('declined');
    return { paid: body.amount };
  }
}

@Controller('pay')
class PayController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent()
  async pay(
    @Headers('idempotency-key') key: string,
    @Headers('x-hold') hold: string | undefined,
    @Headers('x-pause') pause: string | undefined,
    @Body() body: { amount: number },
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    await tx.query('INSERT INTO effects (key, amount) VALUES ($1, $2)', [key, body.amount]);
    if (hold !== undefined) await this.executions.gate(key);
    if (pause !== undefined) await sleep(Number(pause));
    return { paid: body.amount };
  }
}

const effects = pgTable('effects', { key: text('key').notNull(), amount: integer('amount').notNull() });

/** Handlers that end the library's transaction themselves (what the docs' rules forbid). */
@Controller('ends')
class EndsTransactionController {
  constructor(private readonly executions: Executions) {}

  /** The idiomatic Drizzle call: `db.transaction()` over the client (BEGIN ... COMMIT on it). */
  @Post('drizzle')
  @Idempotent()
  async drizzle(
    @Headers('idempotency-key') key: string,
    @Headers('x-hold') hold: string | undefined,
    @Body() body: { amount: number },
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    await drizzle(tx).transaction(async (t) => {
      await t.insert(effects).values({ key, amount: body.amount });
    });
    if (hold !== undefined) await this.executions.gate(key);
    return { amount: body.amount };
  }

  /** A raw COMMIT, then a failure. */
  @Post('commit-then-throw')
  @Idempotent()
  async commitThenThrow(
    @Headers('idempotency-key') key: string,
    @Body() body: { amount: number },
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    await tx.query('INSERT INTO effects (key, amount) VALUES ($1, $2)', [key, body.amount]);
    await tx.query('COMMIT');
    throw new Error('the provider declined');
  }

  /** A ROLLBACK hidden after another statement, then a value: a response with no effect. */
  @Post('rollback-then-return')
  @Idempotent()
  async rollbackThenReturn(
    @Headers('idempotency-key') key: string,
    @Body() body: { amount: number },
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    await tx.query(`INSERT INTO effects (key, amount) VALUES ('${key}', ${Number(body.amount)}); rollback`);
    return { amount: body.amount };
  }

  /** Gives the transaction's connection back to the pool. */
  @Post('release')
  @Idempotent()
  async release(@Headers('idempotency-key') key: string, @IdempotencyTransaction() tx: PoolClient) {
    this.executions.hit(key);
    tx.release();
    return { released: true };
  }

  /** A savepoint is allowed: a part that fails is rolled back, the rest commits with the response. */
  @Post('savepoint')
  @Idempotent()
  async savepoint(
    @Headers('idempotency-key') key: string,
    @Body() body: { amount: number },
    @IdempotencyTransaction() tx: PoolClient,
  ) {
    this.executions.hit(key);
    await tx.query('INSERT INTO effects (key, amount) VALUES ($1, $2)', [key, body.amount]);
    await tx.query('SAVEPOINT part');
    await tx.query('INSERT INTO effects (key, amount) VALUES ($1, $2)', [key, -1]);
    await tx.query('ROLLBACK TO SAVEPOINT part');
    await drizzle(tx)
      .transaction(async (t) => {
        // Drizzle's nested transactions are savepoints too, and are refused only at the outer level.
        await t.transaction(async () => undefined).catch(() => undefined);
      })
      .catch(() => undefined);
    return { amount: body.amount };
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

  it('never starts the handler on a claim whose lease ran out while it waited for a pool connection', async () => {
    const contended = contendedPool(pool);
    const store = await freshStore(contended as unknown as PostgresPool);
    const app = await startApp('express', { store, controllers: [PayController], moduleOptions: { leaseMs: 600 } });
    try {
      const key = `pool-wait-${randomUUID()}`;
      const pay = () =>
        app.client.request('POST', '/pay', { headers: { 'idempotency-key': key }, body: { amount: 3 } });
      const open = contended.holdNextConnect();
      // Claimed; its transaction waits for a connection past the lease.
      const first = pay();
      await eventually(async () => (await store.inspect(new IdempotencyKey(key))) !== undefined, 'the claim');
      await eventually(async () => (await store.inspect(new IdempotencyKey(key))) === undefined, 'the lease to end');
      // The retry claims the free key and runs.
      const second = await pay();
      expect(second.status).toBe(201);
      expect(app.executions.count(key)).toBe(1);
      open();
      const late = await first;
      // The late one must not run the handler on its lost claim: it answers what the key holds.
      expect(app.executions.count(key)).toBe(1);
      expect(late.status).toBe(201);
      expect(late.headers['idempotent-replayed']).toBe('true');
      expect(await effectRows(pool, key)).toBe(1);
    } finally {
      await app.close();
    }
  });

  it.each(['repeatable read', 'serializable'])(
    'completes a handler that outlives a lease renewal when the server default isolation is %s',
    async (level) => {
      const strict = server.pool({ options: `-c default_transaction_isolation=${level.replace(' ', '\\ ')}` });
      const store = await freshStore(strict);
      const app = await startApp('express', { store, controllers: [PayController], moduleOptions: { leaseMs: 300 } });
      try {
        const key = `iso-${randomUUID()}`;
        const answer = app.client.request('POST', '/pay', {
          headers: { 'idempotency-key': key, 'x-hold': '1' },
          body: { amount: 4 },
        });
        await eventually(() => app.executions.count(key) === 1, 'the handler to start');
        // Past two renewals of the lease (each updates the key's row).
        await sleep(450);
        app.executions.open(key);
        const done = await answer;
        expect(done.status).toBe(201);
        expect(await effectRows(pool, key)).toBe(1);
        expect((await store.get(new IdempotencyKey(key)))?.isCompleted()).toBe(true);
      } finally {
        await app.close();
        await strict.end();
      }
    },
  );

  it('never lets two keys, or two principals, that differ only in unpaired surrogates meet as one row', async () => {
    const store = await freshStore();
    @Module({ imports: [IdempotencyModule.forRoot({ store, leaseMs: 2_000 })] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      const service = app.get(IdempotencyService);
      let runs = 0;
      const call = (key: string, scope?: string) =>
        service.run(key, async () => ({ run: ++runs }), { request: { same: true }, scope });
      // UTF-8 (the column, every digest) has no unpaired surrogate: both would be 'k-\uFFFD'.
      expect(await call('k-\uFFFD')).toEqual({ value: { run: 1 }, replayed: false });
      await expect(call('k-\uD800')).rejects.toMatchObject({ code: 'INVALID_KEY' });
      await expect(call('k-\uDC00')).rejects.toMatchObject({ code: 'INVALID_KEY' });
      // A principal is any string: one user's result is never another's.
      const key = `scoped-${randomUUID()}`;
      expect(await call(key, 'user-\uD800')).toEqual({ value: { run: 2 }, replayed: false });
      expect(await call(key, 'user-\uDC00')).toEqual({ value: { run: 3 }, replayed: false });
      expect(await call(key, 'user-\uFFFD')).toEqual({ value: { run: 4 }, replayed: false });
      expect(await call(key, 'user-\uD800')).toEqual({ value: { run: 2 }, replayed: true });
      expect(runs).toBe(4);
    } finally {
      await app.close();
    }
  });
  it('a lease that runs out between the completion and its COMMIT: the retry waits for the commit and replays', async () => {
    const slow = slowCommitPool(pool);
    const store = await freshStore(slow as unknown as PostgresPool);
    const app = await startApp('express', { store, controllers: [PayController], moduleOptions: { leaseMs: 300 } });
    try {
      const key = `slow-commit-${randomUUID()}`;
      const pay = () =>
        app.client.request('POST', '/pay', { headers: { 'idempotency-key': key }, body: { amount: 2 } });
      const commit = slow.holdCommit();
      const first = pay();
      await commit.reached;
      // The claim's lease (as committed) has run out; the completed row is not committed yet.
      await sleep(450);
      const second = pay();
      await sleep(150);
      commit.open();
      const [a, b] = await Promise.all([first, second]);
      expect(a.status).toBe(201);
      expect(b.status).toBe(201);
      expect(b.headers['idempotent-replayed']).toBe('true');
      expect(b.json()).toEqual(a.json());
      expect(app.executions.count(key)).toBe(1);
      expect(await effectRows(pool, key)).toBe(1);
    } finally {
      await app.close();
    }
  });

  it('idle_in_transaction_session_timeout ends a slow handler: 503, nothing persisted, no crash, the retry runs', async () => {
    const timed = server.pool({ options: '-c idle_in_transaction_session_timeout=150' });
    const store = await freshStore(timed);
    const app = await startApp('express', { store, controllers: [PayController], moduleOptions: { leaseMs: 3_000 } });
    try {
      const key = `idle-${randomUUID()}`;
      const pay = (hold: boolean) =>
        app.client.request('POST', '/pay', {
          headers: { 'idempotency-key': key, 'x-hold': hold ? '1' : undefined },
          body: { amount: 6 },
        });
      const first = pay(true);
      await eventually(() => app.executions.count(key) === 1, 'the handler');
      await sleep(400);
      app.executions.open(key);
      expect((await first).status).toBe(503);
      expect(await effectRows(pool, key)).toBe(0);
      const retry = await pay(false);
      expect(retry.status).toBe(201);
      expect(await effectRows(pool, key)).toBe(1);
    } finally {
      await app.close();
      await timed.end();
    }
  });

  it('the store closed while a transaction runs: it still completes and commits, both together', async () => {
    const store = await freshStore();
    const app = await startApp('express', { store, controllers: [PayController], moduleOptions: { leaseMs: 3_000 } });
    try {
      const key = `closed-${randomUUID()}`;
      const first = app.client.request('POST', '/pay', {
        headers: { 'idempotency-key': key, 'x-hold': '1' },
        body: { amount: 8 },
      });
      await eventually(() => app.executions.count(key) === 1, 'the handler');
      await store.close();
      app.executions.open(key);
      expect((await first).status).toBe(201);
      expect(await effectRows(pool, key)).toBe(1);
      const reader = new PostgresStore(pool, { table: store.table });
      expect((await reader.get(new IdempotencyKey(key)))?.isCompleted()).toBe(true);
      await reader.close();
    } finally {
      await app.close();
    }
  });

  it('cacheErrors: the thrown error is stored, the effect rolled back; the retry replays it and writes nothing', async () => {
    const store = await freshStore();
    const app = await startApp('express', { store, controllers: [PayOrFailController] });
    try {
      const key = `cached-error-${randomUUID()}`;
      const pay = () =>
        app.client.request('POST', '/pay-or-fail', {
          headers: { 'idempotency-key': key },
          body: { amount: 1, fail: true },
        });
      expect((await pay()).status).toBe(400);
      const again = await pay();
      expect(again.status).toBe(400);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(app.executions.count(key)).toBe(1);
      expect(await effectRows(pool, key)).toBe(0);
    } finally {
      await app.close();
    }
  });

  it('waitMs across two instances (two pools, one table): the waiter is woken by the commit and replays', async () => {
    const name = table();
    const poolB = server.pool();
    const storeA = await freshStore(pool, { table: name });
    const storeB = await freshStore(poolB, { table: name });
    const appA = await startApp('express', { store: storeA, controllers: [PayController] });
    const appB = await startApp('fastify', {
      store: storeB,
      controllers: [PayController],
      moduleOptions: { waitMs: 10_000 },
    });
    try {
      const key = `across-${randomUUID()}`;
      const pay = (app: TestApp, hold: boolean) =>
        app.client.request('POST', '/pay', {
          headers: { 'idempotency-key': key, 'x-hold': hold ? '1' : undefined },
          body: { amount: 7 },
        });
      const first = pay(appA, true);
      await eventually(() => appA.executions.count(key) === 1, 'the handler');
      const waiting = pay(appB, false);
      await sleep(300);
      const opened = Date.now();
      appA.executions.open(key);
      const [a, b] = await Promise.all([first, waiting]);
      expect(a.status).toBe(201);
      expect(b.status).toBe(201);
      expect(b.headers['idempotent-replayed']).toBe('true');
      // Woken by the notification, not by the one-second re-check.
      expect(Date.now() - opened).toBeLessThan(900);
      expect(appB.executions.count(key)).toBe(0);
      expect(await effectRows(pool, key)).toBe(1);
    } finally {
      await appA.close();
      await appB.close();
      await poolB.end();
    }
  });

  it('a small pool under many concurrent transactional calls, their duplicates waiting: no deadlock, each effect once', async () => {
    const small = server.pool({ max: 3 });
    const store = await freshStore(small);
    const app = await startApp('express', {
      store,
      controllers: [PayController],
      moduleOptions: { leaseMs: 1_500, waitMs: 20_000 },
    });
    try {
      const keys = Array.from({ length: 15 }, () => `crowd-${randomUUID()}`);
      // Each handler outlives a lease renewal, which waits for the pool behind the others.
      const pay = (key: string) =>
        app.client.request('POST', '/pay', {
          headers: { 'idempotency-key': key, 'x-pause': '600' },
          body: { amount: 1 },
        });
      const answers = await Promise.all(keys.flatMap((key) => [pay(key), pay(key), pay(key)]));
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 201));
      for (const key of keys) {
        expect(app.executions.count(key)).toBe(1);
        expect(await effectRows(pool, key)).toBe(1);
      }
    } finally {
      await app.close();
      await small.end();
    }
  });

  it('two stores on tables of the same name in two schemas keep their keys apart', async () => {
    await pool.query('CREATE SCHEMA IF NOT EXISTS tenant_a; CREATE SCHEMA IF NOT EXISTS tenant_b');
    const a = await freshStore(pool, { table: 'keys', schema: 'tenant_a' });
    const b = await freshStore(pool, { table: 'keys', schema: 'tenant_b' });
    const appA = await startApp('express', { store: a, controllers: [PayController] });
    const appB = await startApp('express', { store: b, controllers: [PayController] });
    try {
      const key = `schemas-${randomUUID()}`;
      const pay = (app: TestApp) =>
        app.client.request('POST', '/pay', { headers: { 'idempotency-key': key }, body: { amount: 1 } });
      expect((await pay(appA)).headers['idempotent-replayed']).toBeUndefined();
      expect((await pay(appB)).headers['idempotent-replayed']).toBeUndefined();
      expect((await pay(appA)).headers['idempotent-replayed']).toBe('true');
      expect(await effectRows(pool, key)).toBe(2);
    } finally {
      await appA.close();
      await appB.close();
    }
  });

  it("every connection ended at once (what a server restart does), on the docs' own pool: no crash, 503, the retry runs", async () => {
    // As docs/postgres.md sets it up: a pool of the store's own (closePool), no 'error' listener of ours.
    const own = new PgPool({ connectionString: server.connectionString, max: 5, application_name: 'restarted' });
    const store = new PostgresStore(own, { table: table(), closePool: true });
    await store.migrate();
    const app = await startApp('express', {
      store,
      controllers: [PayController],
      moduleOptions: { leaseMs: 3_000, waitMs: 10_000 },
    });
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.prependListener('uncaughtException', onUncaught);
    const admin = new PgClient({ connectionString: server.connectionString });
    await admin.connect();
    try {
      const key = `restart-${randomUUID()}`;
      const pay = (hold: boolean) =>
        app.client.request('POST', '/pay', {
          headers: { 'idempotency-key': key, 'x-hold': hold ? '1' : undefined },
          body: { amount: 5 },
        });
      // Idle connections in the pool, a transaction open, a waiter listening.
      expect((await pay(false).then(() => pay(false))).status).toBe(201);
      const other = `restart-held-${randomUUID()}`;
      const held = app.client.request('POST', '/pay', {
        headers: { 'idempotency-key': other, 'x-hold': '1' },
        body: { amount: 5 },
      });
      await eventually(() => app.executions.count(other) === 1, 'the handler');
      const waiter = app.client.request('POST', '/pay', { headers: { 'idempotency-key': other }, body: { amount: 5 } });
      await sleep(200);
      await admin.query(
        // Every connection of the app (its pool's, its LISTEN one), as a restart ends them.
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'restarted'",
      );
      app.executions.open(other);
      const [first, second] = await Promise.all([held, waiter]);
      expect(first.status).toBe(503);
      expect(await effectRows(pool, other)).toBeLessThanOrEqual(1);
      // The waiter ran it once the key was free, or still sees it held: never twice.
      expect([201, 409, 503]).toContain(second.status);
      const retry = await app.client.request('POST', '/pay', {
        headers: { 'idempotency-key': other },
        body: { amount: 5 },
      });
      expect(retry.status).toBe(201);
      expect(await effectRows(pool, other)).toBe(1);
      await sleep(100);
      expect(uncaught).toEqual([]);
    } finally {
      process.removeListener('uncaughtException', onUncaught);
      await admin.end();
      await app.close();
    }
  });

  describe('a handler that ends the transaction itself', () => {
    let app: TestApp;
    let store: PostgresStore;

    beforeAll(async () => {
      store = await freshStore();
      app = await startApp('express', {
        store,
        controllers: [EndsTransactionController],
        moduleOptions: { leaseMs: 2_000 },
      });
    });

    afterAll(async () => {
      await app?.close();
    });

    const post = (route: string, key: string, hold = false) =>
      app.client.request('POST', `/ends/${route}`, {
        headers: { 'idempotency-key': key, 'x-hold': hold ? '1' : undefined },
        body: { amount: 5 },
      });

    it("Drizzle's db.transaction() on the client never commits an effect that a takeover then writes again", async () => {
      const key = `drizzle-tx-${randomUUID()}`;
      const first = post('drizzle', key, true);
      await eventually(() => app.executions.count(key) === 1, 'the handler');
      // Past db.transaction() (its COMMIT), at the gate, or refused.
      await Promise.race([first, sleep(300)]);
      // The holder's claim ends (as when its lease runs out) and the retry takes the key.
      await store.purge(new IdempotencyKey(key));
      const second = await post('drizzle', key, false);
      app.executions.open(key);
      const answers = [(await first).status, second.status];
      // db.transaction() is refused on the client: each call fails, and nothing was written.
      expect(answers).toEqual([500, 500]);
      // Drizzle wraps the refusal ("Failed query: begin"; its cause says why).
      expect(JSON.stringify(app.logger)).toMatch(/Failed query: begin/);
      expect(await effectRows(pool, key)).toBe(0);
    });

    it('a COMMIT in the handler, then a throw, never leaves an effect a retry writes again', async () => {
      const key = `commit-throw-${randomUUID()}`;
      await post('commit-then-throw', key);
      await post('commit-then-throw', key);
      expect(await effectRows(pool, key)).toBe(0);
    });

    it('a ROLLBACK in the handler never lets a response be stored without its effect', async () => {
      const key = `rollback-return-${randomUUID()}`;
      const answer = await post('rollback-then-return', key);
      const stored = await store.get(new IdempotencyKey(key));
      const effects = await effectRows(pool, key);
      // Both or neither.
      expect({ stored: stored?.isCompleted() === true, effect: effects === 1 }).toEqual(
        answer.status === 201 ? { stored: true, effect: true } : { stored: false, effect: false },
      );
    });

    it("releasing the transaction's client is refused, never a connection handed on mid-transaction", async () => {
      const key = `release-${randomUUID()}`;
      const answer = await post('release', key);
      expect(answer.status).toBe(500);
      expect(await store.get(new IdempotencyKey(key))).toBeUndefined();
      // The pool is sound: the next call runs and commits.
      expect((await post('savepoint', `after-${key}`)).status).toBe(201);
    });

    it('SAVEPOINT and ROLLBACK TO SAVEPOINT work: the rest commits with the response', async () => {
      const key = `savepoint-${randomUUID()}`;
      expect((await post('savepoint', key)).status).toBe(201);
      expect(await effectRows(pool, key)).toBe(1);
    });
  });
});
