// One chaos app process: a real Nest app (Express or Fastify) on a real port, built on the package
// in dist/ through its public API. Started by apps.js with its settings in the CHAOS_APP
// environment variable (JSON); reports `{ type: 'ready' }` over IPC once it listens.
//
// POST /op is `@Idempotent({ required: true })`. Its handler writes a `start` ledger record (key,
// a fresh execution id, the claim's fencing token), waits the client's `delayMs`, writes `end`,
// and answers a body unique to this execution. The store is wrapped in a RecordingStore, which
// writes `stored` when a completion is Applied (with a PostgresStore: when the transaction that
// stored it committed). The checker reads these records after the run.
//
// Postgres mode (`store: 'postgres'`): a PostgresStore on a pg.Pool, and the handler also takes
// `@IdempotencyTransaction() tx` and writes one effect row (key, execution, instance) through it
// after the `start` record, so the effect commits with the stored response or not at all. The
// `pool-write` break writes the row through the pool instead, outside the transaction.
'use strict';
require('reflect-metadata');
const { randomUUID } = require('node:crypto');
const { setTimeout: sleep } = require('node:timers/promises');
const { Ledger } = require('./ledger');
const { storeClasses } = require('./recording-store');

/**
 * @typedef {object} AppConfig
 * @property {string} instance stable id of this app slot (e.g. `e1`), kept across restarts
 * @property {'express' | 'fastify'} platform
 * @property {number} port
 * @property {'valkey' | 'memory' | 'postgres'} store
 * @property {number} [proxyPort] the TCP proxy in front of the primary (valkey)
 * @property {string} [postgresUrl] the database (postgres)
 * @property {number} leaseMs
 * @property {number} waitMs
 * @property {number} commandTimeoutMs
 * @property {{ replicas: number, timeoutMs: number } | null} durability
 * @property {string} ledgerDir
 * @property {string} dist the built package
 * @property {string | null} break a deliberately broken setting (see run.js --break)
 * @property {string} keyHashSecret lets the runner match the library's events to keys
 */

/** @type {AppConfig} */
const config = JSON.parse(process.env.CHAOS_APP ?? '{}');
const ledger = new Ledger(config.ledgerDir, config.instance);
const tag = `[${config.instance}/${config.platform} pid ${process.pid}]`;

/** `@Decorator()` on a method, as TypeScript's `__decorate` does it. */
function decorateMethod(target, key, decorators) {
  const descriptor = Object.getOwnPropertyDescriptor(target, key);
  const result = Reflect.decorate(decorators, target, key, descriptor);
  if (result) Object.defineProperty(target, key, result);
}

// Library events worth keeping: what happened to a claim on the way (keys appear as keyHash only).
const KEPT_EVENTS = new Set([
  'released',
  'deferred',
  'store-error',
  'fail-open',
  'lease-lost',
  'key-expired',
  'stale-completion',
  'completion-recovered',
  'completion-abandoned',
]);

/** The Postgres mode's pool: the store's claims and transactions, and the handler's effect rows. */
function makePool() {
  const { Pool } = require('pg');
  const pool = new Pool({
    connectionString: config.postgresUrl,
    max: 20,
    // The harness's pg_terminate_backend nemesis picks this process's connections by this name.
    application_name: `chaos-${config.instance}`,
    connectionTimeoutMillis: config.commandTimeoutMs * 2,
  });
  // An idle connection ended by pg_terminate_backend: the pool drops it and says so here.
  pool.on('error', (error) => ledger.append({ type: 'pool-error', error: String(error?.message ?? error) }));
  return pool;
}

function makeStore(lib, pool) {
  const { RecordingStore, NoFencingStore } = storeClasses(lib);
  let inner;
  if (config.store === 'postgres') {
    if (typeof lib.PostgresStore !== 'function') {
      throw new Error(`${config.dist} exports no PostgresStore (build a branch that has lib/stores/postgres.store.ts)`);
    }
    inner = new lib.PostgresStore(pool);
  } else if (config.store === 'memory' || config.break === 'separate-stores') {
    // `separate-stores` breaks the setup on purpose: each process gets a MemoryStore of its own
    // while the fleet spreads one key's retries over several processes.
    inner = new lib.MemoryStore();
  } else {
    const Redis = require('ioredis');
    const client = new Redis({
      host: '127.0.0.1',
      port: config.proxyPort,
      // Bounded, as docs/stores.md asks: the store's own time limit answers a request first.
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
      connectTimeout: 2_000,
      retryStrategy: (times) => Math.min(times * 50, 500),
    });
    // Without a listener ioredis logs every failed reconnect as an unhandled error.
    client.on('error', () => undefined);
    inner = new lib.ValkeyStore(client, {
      prefix: 'chaos:',
      commandTimeoutMs: config.commandTimeoutMs,
      closeClient: true,
      onWarning: (message) => console.error(`${tag} ${message}`),
      ...(config.durability ? { durability: config.durability } : {}),
    });
  }
  const recording = new RecordingStore(inner, ledger);
  return config.break === 'no-fencing' ? new NoFencingStore(recording) : recording;
}

/** Writes a `stall` record when the event loop was blocked (or the process stopped) for long. */
function watchStalls() {
  const every = 100;
  let last = Date.now();
  setInterval(() => {
    const now = Date.now();
    if (now - last > every + 400) ledger.append({ type: 'stall', from: last, to: now });
    last = now;
  }, every).unref();
}

async function main() {
  const lib = require(config.dist);
  const { Body, Controller, Module, Post } = require('@nestjs/common');
  const { NestFactory } = require('@nestjs/core');
  ledger.append({ type: 'boot', platform: config.platform, store: config.store, break: config.break });

  const postgres = config.store === 'postgres';
  const pool = postgres ? makePool() : undefined;

  /** The handler: `tx` is the transaction's client in Postgres mode (else undefined). */
  async function op(claim, body, tx) {
    const execution = randomUUID();
    const key = claim?.key?.toString() ?? null;
    const token = claim?.fencingToken?.toString() ?? null;
    ledger.append({ type: 'start', key, execution, token, nonce: claim?.fencingToken?.nonce ?? null });
    if (postgres) {
      // The side effect. `pool-write` (a broken setting) writes it outside the transaction.
      const db = config.break === 'pool-write' ? pool : tx;
      await db.query('INSERT INTO effects (key, execution, instance) VALUES ($1, $2, $3)', [
        key,
        execution,
        config.instance,
      ]);
    }
    const delayMs = Number(body?.delayMs);
    if (Number.isFinite(delayMs) && delayMs > 0) await sleep(delayMs);
    ledger.append({ type: 'end', key, execution, token });
    return { key, execution, instance: config.instance };
  }

  class OpController {
    op(claim, body) {
      return op(claim, body, undefined);
    }
  }
  class PostgresOpController {
    op(claim, tx, body) {
      return op(claim, body, tx);
    }
  }
  Reflect.decorate([Controller()], OpController);
  Reflect.decorate([Controller()], PostgresOpController);
  decorateMethod(OpController.prototype, 'op', [
    Post('op'),
    lib.Idempotent({ required: true }),
    (target, name) => lib.IdempotencyClaim()(target, name, 0),
    (target, name) => Body()(target, name, 1),
    Reflect.metadata('design:paramtypes', [Object, Object]),
  ]);
  decorateMethod(PostgresOpController.prototype, 'op', [
    Post('op'),
    lib.Idempotent({ required: true }),
    (target, name) => lib.IdempotencyClaim()(target, name, 0),
    (target, name) => lib.IdempotencyTransaction()(target, name, 1),
    (target, name) => Body()(target, name, 2),
    Reflect.metadata('design:paramtypes', [Object, Object, Object]),
  ]);

  const store = makeStore(lib, pool);
  const idempotency = lib.IdempotencyModule.forRoot({
    store,
    leaseMs: config.leaseMs,
    ...(config.waitMs > 0 ? { waitMs: config.waitMs } : {}),
    retryAfterSeconds: 1,
    closeStoreOnShutdown: true,
    telemetry: false,
    keyHashSecret: config.keyHashSecret,
    onEvent: (event) => {
      if (!KEPT_EVENTS.has(event.type)) return;
      const error = event.error instanceof Error ? event.error.message : event.error;
      ledger.append({
        type: 'event',
        event: event.type,
        keyHash: event.keyHash,
        token: event.fencingToken ?? null,
        status: event.statusCode ?? null,
        ...(error === undefined ? {} : { error: String(error) }),
      });
    },
  });

  class AppModule {}
  const controllers = [postgres ? PostgresOpController : OpController];
  Reflect.decorate([Module({ imports: [idempotency], controllers })], AppModule);

  let adapter;
  if (config.platform === 'fastify') {
    const { FastifyAdapter } = require('@nestjs/platform-fastify');
    adapter = new FastifyAdapter({ logger: false });
  } else {
    const { ExpressAdapter } = require('@nestjs/platform-express');
    adapter = new ExpressAdapter();
  }
  const app = await NestFactory.create(AppModule, adapter, { logger: ['error', 'warn'], abortOnError: false });
  // SIGTERM: Nest closes the HTTP server, then the module (results still being stored), then exits.
  app.enableShutdownHooks();
  // The same port after a restart: the old socket may linger for a moment.
  for (let attempt = 1; ; attempt++) {
    try {
      await app.listen(config.port, '127.0.0.1');
      break;
    } catch (error) {
      if (error?.code !== 'EADDRINUSE' || attempt >= 50) throw error;
      await sleep(100);
    }
  }
  watchStalls();
  ledger.append({ type: 'ready', port: config.port });
  process.send?.({ type: 'ready', pid: process.pid });
}

// The runner went away (its IPC channel closed): nothing to serve any more.
process.on('disconnect', () => process.exit(0));
process.on('exit', (code) => ledger.append({ type: 'exit', code }));

main().catch((error) => {
  console.error(`${tag} failed to start: ${error?.stack ?? error}`);
  process.send?.({ type: 'failed', error: String(error?.message ?? error) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
