/**
 * docs/postgres.md, run as printed on a real PostgreSQL: the set-up module, the route, the
 * service and the Drizzle recipe write their rows exactly once per key, and the migration SQL
 * the page shows is the SQL `migrate()` runs.
 */
import { type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { postgresMigrationSql } from '../../lib';
import { materialize } from '../docs/snippets';
import { describePostgres, startPostgres, type PostgresServer } from '../support/postgres-server';

/* eslint-disable @typescript-eslint/no-require-imports */
const { AppModule } = require(materialize('postgres-setup')) as { AppModule: new () => object };
const { PaymentsController } = require(materialize('postgres-route')) as { PaymentsController: new () => object };
const { RefundsConsumer } = require(materialize('postgres-service')) as {
  RefundsConsumer: new (...args: never[]) => { refund(id: string, amount: number): Promise<unknown> };
};
const { OrdersController } = require(materialize('postgres-drizzle')) as { OrdersController: new () => object };
/* eslint-enable @typescript-eslint/no-require-imports */

const PAGE = readFileSync(path.join(__dirname, '../../docs/postgres.md'), 'utf8');

it('shows the SQL migrate() runs', () => {
  const block = /<!-- postgres: migration -->\s*```sql\n([\s\S]*?)```/.exec(PAGE);
  expect(block?.[1]).toBe(postgresMigrationSql());
});

describePostgres('docs/postgres.md on PostgreSQL', () => {
  let server: PostgresServer;
  let app: INestApplication;
  let url: string;
  const previous = process.env.DATABASE_URL;

  beforeAll(async () => {
    server = await startPostgres();
    process.env.DATABASE_URL = server.connectionString;
    await server
      .pool()
      .query(
        'CREATE TABLE payments (id serial PRIMARY KEY, amount integer NOT NULL);' +
          'CREATE TABLE refunds (id text PRIMARY KEY, amount integer NOT NULL);' +
          'CREATE TABLE orders (id serial PRIMARY KEY, amount integer NOT NULL);',
      );
    @Module({ imports: [AppModule], controllers: [PaymentsController, OrdersController], providers: [RefundsConsumer] })
    class DocsApp {}
    app = await NestFactory.create(DocsApp, { logger: false });
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close(); // closePool: ends the snippet's own pool
    process.env.DATABASE_URL = previous;
    await server?.stop();
  });

  const count = async (table: string) =>
    Number((await server.pool().query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);

  const post = (route: string, key: string, body: object) =>
    fetch(`${url}/${route}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(body),
    });

  it('the route and the Drizzle recipe write their row once per key, and replay the response', async () => {
    for (const route of ['payments', 'orders']) {
      const key = randomUUID();
      const first = await post(route, key, { amount: 250 });
      expect(first.status).toBe(201);
      const again = await post(route, key, { amount: 250 });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.json()).toEqual(await first.json());
      expect(await count(route)).toBe(1);
    }
  });

  it('the service recipe refunds once per refund id', async () => {
    const refunds = app.get(RefundsConsumer);
    const id = `re_${randomUUID()}`;
    const results = await Promise.all([refunds.refund(id, 40), refunds.refund(id, 40)]);
    expect(results).toEqual(
      expect.arrayContaining([
        { value: { refunded: 40 }, replayed: false },
        { value: { refunded: 40 }, replayed: true },
      ]),
    );
    expect(await count('refunds')).toBe(1);
  });
});
