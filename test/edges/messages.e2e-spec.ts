/**
 * Issue 17, defects 8 and 11 on message handlers (DESIGN 7.1), over real transports:
 *
 * - Every handler is its own operation: two `@EventPattern()` handlers of one pattern (shipping
 *   and email on `orders.placed`) each run once per key. Before the fix they shared the store key
 *   and fingerprint, and the second was dropped as a duplicate of the first.
 * - A request that is not a retry is never refused because a transport delivered it to several
 *   replicas: Nest's Redis transport publishes each request to every replica, and before the fix
 *   the idle one found the key in flight and its 409 reached the client first.
 * - A message handler's value is bounded by `maxResponseBytes`: the caller gets it, later calls the
 *   413 problem, and the store is not filled by it.
 */
import { Controller, type INestMicroservice, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientProxyFactory,
  EventPattern,
  MessagePattern,
  type MicroserviceOptions,
  Payload,
  Transport,
} from '@nestjs/microservices';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { lastValueFrom } from 'rxjs';
import {
  IDEMPOTENCY_PROBLEM_TYPES,
  IdempotencyModule,
  type IdempotencyStore,
  Idempotent,
  MemoryStore,
  ValkeyStore,
} from '../../lib';
import { AtMostOnceLedger } from '../../lib/testing';
import { eventually } from '../support/eventually';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { freshPrefix, sleep } from '../valkey/helpers';

const ledger = new AtMostOnceLedger();

@Controller()
class ShippingHandler {
  @EventPattern('orders.placed')
  @Idempotent()
  ship(@Payload() data: { idempotencyKey: string }) {
    ledger.record(`ship:${data.idempotencyKey}`);
  }
}

@Controller()
class EmailHandler {
  @EventPattern('orders.placed')
  @Idempotent()
  email(@Payload() data: { idempotencyKey: string }) {
    ledger.record(`email:${data.idempotencyKey}`);
  }
}

@Controller()
class ReportsHandler {
  @MessagePattern('report')
  @Idempotent()
  report(@Payload() data: { idempotencyKey: string; size: number }) {
    ledger.record(`report:${data.idempotencyKey}`);
    return { rows: 'x'.repeat(data.size) };
  }

  @MessagePattern('charge')
  @Idempotent()
  async charge(@Payload() data: { idempotencyKey: string; amount: number }) {
    const run = ledger.record(`charge:${data.idempotencyKey}`);
    await sleep(200);
    return { charged: data.amount, run };
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

type TransportOptions =
  | { transport: Transport.TCP; options: { host: string; port: number } }
  | { transport: Transport.REDIS; options: { host: string; port: number } };

async function startService(store: IdempotencyStore, options: TransportOptions): Promise<INestMicroservice> {
  @Module({
    imports: [
      IdempotencyModule.forRoot({ store, leaseMs: 2_000, maxResponseBytes: 1_000, closeStoreOnShutdown: false }),
    ],
    controllers: [ShippingHandler, EmailHandler, ReportsHandler],
  })
  class ServiceModule {}
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(ServiceModule, { ...options, logger: false });
  await app.listen();
  return app;
}

describe('message handlers over TCP (memory store)', () => {
  const store = new MemoryStore();
  let app: INestMicroservice;
  let client: ReturnType<typeof ClientProxyFactory.create>;

  beforeAll(async () => {
    const options: TransportOptions = {
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port: await freePort() },
    };
    app = await startService(store, options);
    client = ClientProxyFactory.create(options);
    await client.connect();
  });

  afterAll(async () => {
    await client?.close();
    await app?.close();
    await store.close();
  });

  it('two event handlers of one pattern each run once per key (each handler is its own operation)', async () => {
    const key = randomUUID();
    await lastValueFrom(client.emit('orders.placed', { idempotencyKey: key }), { defaultValue: undefined });
    await eventually(() => ledger.count(`ship:${key}`) === 1 && ledger.count(`email:${key}`) === 1);
    // The event delivered again: a duplicate for both, run by neither.
    await lastValueFrom(client.emit('orders.placed', { idempotencyKey: key }), { defaultValue: undefined });
    await lastValueFrom(client.send('report', { idempotencyKey: randomUUID(), size: 1 })); // behind both events
    expect(ledger.count(`ship:${key}`)).toBe(1);
    expect(ledger.count(`email:${key}`)).toBe(1);
  });

  it('a value over maxResponseBytes: the caller gets it, a retry gets the 413 problem, the handler runs once', async () => {
    const key = randomUUID();
    const first = await lastValueFrom(client.send('report', { idempotencyKey: key, size: 5_000 }));
    expect(first).toEqual({ rows: 'x'.repeat(5_000) });
    expect(store.bytes).toBeLessThan(5_000);
    const retry = await lastValueFrom(client.send('report', { idempotencyKey: key, size: 5_000 })).catch(
      (error: unknown) => error,
    );
    expect(retry).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.responseTooLarge, status: 413 });
    expect(ledger.count(`report:${key}`)).toBe(1);
  });
});

describeValkey('message handlers on two replicas behind the Redis transport', () => {
  let server: StandaloneServer;
  const closers: (() => Promise<unknown> | unknown)[] = [];

  beforeAll(async () => {
    server = await startStandalone();
  }, 30_000);

  afterAll(async () => {
    for (const close of closers.reverse()) await close();
    await server?.stop();
  }, 30_000);

  async function replica(prefix: string): Promise<void> {
    const connection = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await connection.connect();
    const store = new ValkeyStore(connection, { prefix, onWarning: () => undefined });
    const app = await startService(store, {
      transport: Transport.REDIS,
      options: { host: server.host, port: server.port },
    });
    closers.push(
      () => connection.disconnect(),
      () => store.close(),
      () => app.close(),
    );
  }

  it('a message sent once is answered with its result, never refused by the replica that did not run it', async () => {
    const prefix = freshPrefix('fanout');
    await replica(prefix);
    await replica(prefix);
    const client = ClientProxyFactory.create({
      transport: Transport.REDIS,
      options: { host: server.host, port: server.port },
    });
    await client.connect();
    closers.push(() => client.close());
    for (let i = 0; i < 10; i++) {
      const key = randomUUID();
      // Both replicas get the request; one runs it, the other must not answer 409 first.
      const answer = await lastValueFrom(client.send('charge', { idempotencyKey: key, amount: i }));
      expect(answer).toEqual({ charged: i, run: 1 });
      expect(ledger.count(`charge:${key}`)).toBe(1);
    }
  }, 60_000);
});
