// One benchmark variant as its own Nest app: `node bench/lib/variant-server.js <variant> <platform>`.
// Serves `POST /orders` (echoes the JSON body, counts executions) and `GET /__stats`, listens on
// 127.0.0.1 port 0 and prints the port. Started by bench/http.js with an IPC channel: it reports
// `{ type: 'ready', port }` (or `{ type: 'failed', error }`), answers `{ cmd: 'stats' }` and exits on
// `{ cmd: 'stop' }` or when the parent goes away. Plain JavaScript: decorators applied by hand.
'use strict';
require('reflect-metadata');

const VARIANTS = [
  'bare',
  'ours-memory',
  'ours-valkey',
  'node-idempotency-memory',
  'node-idempotency-redis',
  'noop-interceptor',
  'floor',
  'floor-valkey',
];
const PLATFORMS = ['express', 'fastify'];
const fs = require('node:fs');

/** Write-type system calls this process made so far (`syscw` of /proc/self/io: write, writev, send*), or null off Linux. */
function writeSyscalls() {
  try {
    const m = /^syscw:\s*(\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const [variant, platform = 'express'] = process.argv.slice(2);
const valkeyUrl = process.env.BENCH_VALKEY_URL;

let executions = 0;
// Every HTTP request the server saw (replays never reach the handler, so they count here).
let requests = 0;
let app;
let layer;
let cleanup = async () => {};

function send(message) {
  if (process.send) process.send(message);
}

function fail(error) {
  const text = error instanceof Error ? error.message : String(error);
  console.error(`[${platform}/${variant}] ${text}`);
  send({ type: 'failed', error: text });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
}

/** `@Decorator()` on a method, as TypeScript's `__decorate` does it. */
function decorateMethod(target, key, decorators) {
  const descriptor = Object.getOwnPropertyDescriptor(target, key);
  const result = Reflect.decorate(decorators, target, key, descriptor);
  if (result) Object.defineProperty(target, key, result);
}

/**
 * JSON text of `value` with every object's keys sorted: the canonical body a fingerprint needs,
 * in its least form (plain JSON values only).
 */
function canonical(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const keys = Object.keys(value).sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) out += ',';
    out += `${JSON.stringify(keys[i])}:${canonical(value[keys[i]])}`;
  }
  return `${out}}`;
}

/** How the floor routes answer: status, JSON type, the replay marker when replayed, the bytes. */
function floorSend(platform) {
  const JSON_TYPE = 'application/json; charset=utf-8';
  return platform === 'fastify'
    ? (res, status, bytes, replayed) => {
        res.code(status).header('content-type', JSON_TYPE);
        if (replayed) res.header('idempotent-replayed', 'true');
        res.send(bytes);
      }
    : (res, status, bytes, replayed) => {
        res.status(status).setHeader('content-type', JSON_TYPE);
        if (replayed) res.setHeader('idempotent-replayed', 'true');
        res.send(bytes);
      };
}

/**
 * The `floor` variant's route: the least work any in-memory idempotency layer has to do, written
 * inline in the handler. It reads the key, fingerprints method, path and canonical body with
 * XXH3-128, and makes one Map lookup; a replay sends the stored bytes with the marker header; a
 * fresh key runs the work, serialises its result once, stores the bytes and sends them. No
 * fencing, no lease, no expiry, no bound, no validation: a yardstick, not a layer.
 */
function floorRoute(platform, work) {
  const { xxh3 } = require('@node-rs/xxhash');
  const entries = new Map();
  const MISMATCH = Buffer.from('{"statusCode":422}');
  const send = floorSend(platform);
  return function create(body, req, res) {
    const key = req.headers['idempotency-key'];
    const fingerprint = xxh3.xxh128(`${req.method} ${req.originalUrl ?? req.url}\n${canonical(body)}`);
    const entry = entries.get(key);
    if (entry !== undefined) {
      if (entry.fingerprint !== fingerprint) return send(res, 422, MISMATCH, false);
      return send(res, 201, entry.bytes, true);
    }
    const bytes = Buffer.from(JSON.stringify(work(body)));
    entries.set(key, { fingerprint, bytes });
    send(res, 201, bytes, false);
  };
}

/**
 * The `floor-valkey` variant's route: the `floor` route with its Map replaced by the two scripts
 * of `floor-valkey.js` on one ioredis connection (with `enableAutoPipelining`, so the commands of one turn of
 * the event loop share a write, as ours do). Tokens are checked, but there are no nonces, no
 * fingerprint check on completion, no waiters, no key hashing, no expiry of the lease while the
 * handler runs, no validation: a yardstick for Valkey's CPU per request, not a layer.
 */
function floorValkeyRoute(platform, work, client) {
  const { xxh3 } = require('@node-rs/xxhash');
  const scripts = require('./floor-valkey').floorScripts(client);
  const CONFLICT = Buffer.from('{"statusCode":409}');
  const MISMATCH = Buffer.from('{"statusCode":422}');
  const send = floorSend(platform);
  return async function create(body, req, res) {
    const key = req.headers['idempotency-key'];
    const fingerprint = xxh3.xxh128(`${req.method} ${req.originalUrl ?? req.url}\n${canonical(body)}`).toString(16);
    const claimed = await scripts.claim(key, 10_000);
    if (typeof claimed !== 'number') {
      // 'c', 32 hex digits of fingerprint, the body; or 'p' and a token while in flight.
      if (claimed[0] !== 0x63) return send(res, 409, CONFLICT, false);
      if (claimed.toString('latin1', 1, 33) !== fingerprint.padStart(32, '0')) return send(res, 422, MISMATCH, false);
      return send(res, 201, claimed.subarray(33), true);
    }
    const bytes = Buffer.from(JSON.stringify(work(body)));
    const entry = Buffer.concat([Buffer.from(`c${fingerprint.padStart(32, '0')}`, 'latin1'), bytes]);
    await scripts.complete(key, claimed, entry, 86_400_000);
    send(res, 201, bytes, false);
  };
}

function idempotencyFor(name) {
  // Answers { imports, routeDecorators, close } for the variant's idempotency layer.
  if (name === 'bare' || name === 'floor') return { imports: [], routeDecorators: [] };
  if (name === 'floor-valkey') {
    const Redis = require('ioredis');
    const client = new Redis(valkeyUrl, { enableAutoPipelining: true });
    return {
      imports: [],
      routeDecorators: [],
      client,
      close: async () => client.quit().catch(() => client.disconnect()),
    };
  }
  if (name === 'noop-interceptor') {
    // The floor of any interceptor-based layer: Nest's interceptor chain around the handler.
    const { Injectable, UseInterceptors } = require('@nestjs/common');
    class NoopInterceptor {
      intercept(_context, next) {
        return next.handle();
      }
    }
    Reflect.decorate([Injectable()], NoopInterceptor);
    return { imports: [], routeDecorators: [UseInterceptors(NoopInterceptor)] };
  }
  if (name.startsWith('ours-')) {
    const { loadLibrary } = require('./common');
    const { lib, reason } = loadLibrary(['IdempotencyModule', 'Idempotent', 'MemoryStore', 'ValkeyStore']);
    if (reason) throw new Error(reason);
    let store;
    let close;
    if (name === 'ours-memory') {
      // The default bounds (maxBytes: a quarter of the heap limit), as users get them: a store that
      // fills up during a run answers 503s, and the run fails instead of looking fast.
      store = new lib.MemoryStore();
      close = async () => store.close();
    } else {
      const Redis = require('ioredis');
      const client = new Redis(valkeyUrl, { enableAutoPipelining: process.env.BENCH_AUTOPIPELINE === '1' });
      store = new lib.ValkeyStore(client, {
        prefix: 'bench:',
        commandTimeoutMs: 2_000,
        checkServerOnInit: false,
        onWarning: () => undefined,
      });
      close = async () => {
        await store.close();
        await client.quit().catch(() => client.disconnect());
      };
    }
    return {
      imports: [lib.IdempotencyModule.forRoot({ store })],
      routeDecorators: [lib.Idempotent()],
      close,
      store,
    };
  }
  const nodeIdempotency = require('@node-idempotency/nestjs');
  const storage =
    name === 'node-idempotency-memory' ? { adapter: 'memory' } : { adapter: 'redis', options: { url: valkeyUrl } };
  return {
    imports: [nodeIdempotency.NodeIdempotencyModule.forRootAsync({ storage })],
    routeDecorators: [nodeIdempotency.Idempotent()],
  };
}

async function main() {
  if (!VARIANTS.includes(variant) || !PLATFORMS.includes(platform)) {
    throw new Error(`usage: variant-server.js <${VARIANTS.join('|')}> [${PLATFORMS.join('|')}]`);
  }
  const { Body, Controller, Get, Module, Post, Req, Res } = require('@nestjs/common');
  const { NestFactory } = require('@nestjs/core');
  layer = idempotencyFor(variant);

  const work = (body) => {
    executions++;
    return body;
  };
  class OrdersController {
    create(body) {
      return work(body);
    }
  }
  const params = [(target, key) => Body()(target, key, 0)];
  if (variant === 'floor' || variant === 'floor-valkey') {
    OrdersController.prototype.create =
      variant === 'floor' ? floorRoute(platform, work) : floorValkeyRoute(platform, work, layer.client);
    params.push(
      (target, key) => Req()(target, key, 1),
      (target, key) => Res()(target, key, 2),
    );
  }
  Reflect.decorate([Controller()], OrdersController);
  decorateMethod(OrdersController.prototype, 'create', [
    Post('orders'),
    ...layer.routeDecorators,
    ...params,
    Reflect.metadata('design:paramtypes', params.length === 3 ? [Object, Object, Object] : [Object]),
  ]);

  class StatsController {
    stats() {
      return { executions, rss: process.memoryUsage.rss() };
    }
  }
  Reflect.decorate([Controller()], StatsController);
  decorateMethod(StatsController.prototype, 'stats', [Get('__stats')]);

  class AppModule {}
  Reflect.decorate([Module({ imports: layer.imports, controllers: [OrdersController, StatsController] })], AppModule);

  let adapter;
  if (platform === 'fastify') {
    const { FastifyAdapter } = require('@nestjs/platform-fastify');
    adapter = new FastifyAdapter({ logger: false });
  } else {
    const { ExpressAdapter } = require('@nestjs/platform-express');
    adapter = new ExpressAdapter();
  }
  app = await NestFactory.create(AppModule, adapter, { logger: ['error', 'warn'], abortOnError: false });
  cleanup = async () => {
    await app.close();
    if (layer.close) await layer.close();
  };
  await app.listen(0, '127.0.0.1');
  app.getHttpServer().on('request', () => requests++);
  const { port } = app.getHttpServer().address();
  console.log(`[${platform}/${variant}] listening on http://127.0.0.1:${port} (pid ${process.pid})`);
  send({ type: 'ready', port });
}

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  const force = setTimeout(() => process.exit(0), 5_000);
  force.unref();
  try {
    await cleanup();
  } catch (error) {
    console.error(`[${platform}/${variant}] close: ${error.message}`);
  }
  // process.exit (not a signal) so that --cpu-prof writes its profile.
  process.exit(0);
}

process.on('message', (message) => {
  if (message?.cmd === 'stats') {
    const cpu = process.cpuUsage();
    send({
      type: 'stats',
      id: message.id,
      executions,
      requests,
      rss: process.memoryUsage.rss(),
      cpuUs: cpu.user + cpu.system,
      writes: writeSyscalls(),
    });
  } else if (message?.cmd === 'memory') {
    // After full collections (the server runs with --expose-gc for this): what the heap retains.
    if (typeof global.gc === 'function') for (let i = 0; i < 3; i++) global.gc();
    const m = process.memoryUsage();
    send({
      type: 'memory',
      id: message.id,
      gc: typeof global.gc === 'function',
      executions,
      heapUsed: m.heapUsed,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      rss: m.rss,
      store: layer?.store === undefined ? null : { size: layer.store.size, bytes: layer.store.bytes ?? null },
    });
  } else if (message?.cmd === 'scavenge') {
    // A young-generation collection (bench/instructions.js, before each counted window): every
    // window starts with an empty nursery, so how many scavenges fall inside it does not depend
    // on where the last one left off. It flushes no compiled code (only full collections do).
    if (typeof global.gc === 'function') global.gc({ type: 'minor' });
    send({ type: 'scavenge', id: message.id, gc: typeof global.gc === 'function' });
  } else if (message?.cmd === 'stop') {
    void stop();
  }
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

main().catch(fail);
