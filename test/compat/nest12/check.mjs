// Boots real NestJS 12 apps (ESM-only packages) on Express and Fastify with the built
// nestjs-idempotent (CommonJS) and checks the basic contract over real HTTP on 127.0.0.1.
// Plain JavaScript, so decorators are applied by hand, as TypeScript would.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { Body, Controller, Inject, Injectable, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { IdempotencyModule, IdempotencyStore, Idempotent, MemoryStore } from 'nestjs-idempotent';

const nestVersion = (await import('@nestjs/core/package.json', { with: { type: 'json' } })).default.version;
assert.ok(nestVersion.startsWith('12.'), `expected NestJS 12, found ${nestVersion}`);

function decorate(target, key, decorators) {
  const descriptor = Object.getOwnPropertyDescriptor(target, key);
  Object.defineProperty(target, key, Reflect.decorate(decorators, target, key, descriptor));
}

function buildApp() {
  const counter = { executions: 0 };

  class OrdersController {
    create(body) {
      counter.executions++;
      return { order: counter.executions, item: body.item };
    }
  }
  Body()(OrdersController.prototype, 'create', 0);
  decorate(OrdersController.prototype, 'create', [Post(), Idempotent()]);
  Reflect.decorate([Controller('orders')], OrdersController);

  class StoreProbe {
    constructor(store) {
      this.store = store;
    }
  }
  Inject(IdempotencyStore)(StoreProbe, undefined, 0);
  Reflect.decorate([Injectable()], StoreProbe);

  class AppModule {}
  Reflect.decorate(
    [
      Module({
        imports: [IdempotencyModule.forRoot(new MemoryStore())],
        controllers: [OrdersController],
        providers: [StoreProbe],
      }),
    ],
    AppModule,
  );
  return { AppModule, StoreProbe, counter };
}

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`  ok   ${name}`);
  } catch (error) {
    failed++;
    console.log(`  FAIL ${name}\n${error?.stack ?? error}`);
  }
}

for (const [platform, makeAdapter] of [
  ['express', () => new ExpressAdapter()],
  ['fastify', () => new FastifyAdapter()],
]) {
  console.log(`NestJS ${nestVersion} on ${platform}`);
  const { AppModule, StoreProbe, counter } = buildApp();
  const app = await NestFactory.create(AppModule, makeAdapter(), { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  const url = `${await app.getUrl()}/orders`.replace('[::1]', '127.0.0.1');
  const post = (body, key) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
      body: JSON.stringify(body),
    });
  try {
    await check('IdempotencyStore is injectable', () => {
      assert.ok(app.get(StoreProbe).store instanceof MemoryStore);
    });
    await check('first request runs, retry replays the same bytes', async () => {
      const first = await post({ item: 'book' }, 'k-1');
      const firstBody = await first.text();
      assert.equal(first.status, 201);
      const again = await post({ item: 'book' }, 'k-1');
      assert.equal(again.status, 201);
      assert.equal(await again.text(), firstBody);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.equal(counter.executions, 1);
    });
    await check('same key, other body: 422 problem details', async () => {
      const res = await post({ item: 'pen' }, 'k-1');
      assert.equal(res.status, 422);
      assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
      assert.equal(counter.executions, 1);
    });
    await check('malformed key: 400, handler not run', async () => {
      const res = await post({ item: 'pen' }, 'a:b');
      assert.equal(res.status, 400);
      assert.equal(counter.executions, 1);
    });
    await check('no key: runs normally', async () => {
      const res = await post({ item: 'pen' });
      assert.equal(res.status, 201);
      assert.equal(counter.executions, 2);
    });
  } finally {
    await app.close();
  }
}

console.log(`nest12: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
