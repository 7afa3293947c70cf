// One Postgres bench variant as its own Nest app: `node bench/lib/pg-server.js <variant> [fastify|express]`
// with BENCH_PG_URL. `POST /orders` writes one row `INSERT INTO orders (key, amount)`:
//   ours  @Idempotent({ required: true }) on a PostgresStore, the row written through
//         @IdempotencyTransaction() tx (the library claims, then stores the response in the same
//         transaction and commits)
//   bare  no idempotency layer: the route writes the row in a transaction of its own
//         (BEGIN, INSERT, COMMIT on one pooled connection)
// Reports `{ type: 'ready', port }` over IPC; exits when the parent goes away or asks.
'use strict';
require('reflect-metadata');
const path = require('node:path');

const DIST = process.env.BENCH_DIST ?? path.resolve(__dirname, '..', '..', 'dist');
const [variant, platform = 'fastify'] = process.argv.slice(2);

let executions = 0;

function decorateMethod(target, key, decorators) {
  const descriptor = Object.getOwnPropertyDescriptor(target, key);
  const result = Reflect.decorate(decorators, target, key, descriptor);
  if (result) Object.defineProperty(target, key, result);
}

async function main() {
  const lib = require(DIST);
  const { Body, Controller, Headers, Module, Post } = require('@nestjs/common');
  const { NestFactory } = require('@nestjs/core');
  const { Pool } = require('pg');
  const pool = new Pool({ connectionString: process.env.BENCH_PG_URL, max: 16 });
  pool.on('error', () => undefined);
  const INSERT = 'INSERT INTO orders (key, amount) VALUES ($1, $2)';

  class OrdersController {}
  if (variant === 'ours') {
    OrdersController.prototype.create = async function create(tx, body, headers) {
      executions++;
      await tx.query(INSERT, [headers['idempotency-key'], body.amount]);
      return { ok: true, amount: body.amount };
    };
    decorateMethod(OrdersController.prototype, 'create', [
      Post('orders'),
      lib.Idempotent({ required: true }),
      (target, name) => lib.IdempotencyTransaction()(target, name, 0),
      (target, name) => Body()(target, name, 1),
      (target, name) => Headers()(target, name, 2),
      Reflect.metadata('design:paramtypes', [Object, Object, Object]),
    ]);
  } else if (variant === 'bare') {
    OrdersController.prototype.create = async function create(body, headers) {
      executions++;
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(INSERT, [headers['idempotency-key'] ?? null, body.amount]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
      return { ok: true, amount: body.amount };
    };
    decorateMethod(OrdersController.prototype, 'create', [
      Post('orders'),
      (target, name) => Body()(target, name, 0),
      (target, name) => Headers()(target, name, 1),
      Reflect.metadata('design:paramtypes', [Object, Object]),
    ]);
  } else {
    throw new Error(`unknown variant ${variant}`);
  }
  Reflect.decorate([Controller()], OrdersController);

  const imports = [];
  if (variant === 'ours') {
    imports.push(lib.IdempotencyModule.forRoot({ store: new lib.PostgresStore(pool), telemetry: false }));
  }
  class AppModule {}
  Reflect.decorate([Module({ imports, controllers: [OrdersController] })], AppModule);
  let adapter;
  if (platform === 'express') {
    const { ExpressAdapter } = require('@nestjs/platform-express');
    adapter = new ExpressAdapter();
  } else {
    const { FastifyAdapter } = require('@nestjs/platform-fastify');
    adapter = new FastifyAdapter({ logger: false });
  }
  const app = await NestFactory.create(AppModule, adapter, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  process.send?.({ type: 'ready', port: app.getHttpServer().address().port });
}

process.on('disconnect', () => process.exit(0));
// bench/instructions.js: `{ cmd: 'stats', id }` answers the handler's executions, `{ cmd: 'memory', id }`
// runs full collections (with --expose-gc), `{ cmd: 'scavenge', id }` a young-generation one, `{ cmd: 'stop' }` exits.
process.on('message', (m) => {
  if (m?.cmd === 'stats') process.send?.({ type: 'stats', id: m.id, executions });
  else if (m?.cmd === 'memory') {
    if (typeof global.gc === 'function') for (let i = 0; i < 3; i++) global.gc();
    process.send?.({ type: 'memory', id: m.id });
  } else if (m?.cmd === 'scavenge') {
    // A young-generation collection before each counted window (flushes no compiled code).
    if (typeof global.gc === 'function') global.gc({ type: 'minor' });
    process.send?.({ type: 'scavenge', id: m.id });
  } else if (m?.cmd === 'stop') process.exit(0);
});
main().catch((error) => {
  console.error(`[pg-server ${variant}] ${error?.stack ?? error}`);
  process.send?.({ type: 'failed', error: String(error?.message ?? error) });
  process.exit(1);
});
