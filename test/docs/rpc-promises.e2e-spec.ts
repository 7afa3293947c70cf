/**
 * Promises of the docs that no other test covered: rows of docs/messages-and-graphql.md (message handlers) that had no test.
 */
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientProxyFactory,
  EventPattern,
  MessagePattern,
  type MicroserviceOptions,
  Payload,
  Transport,
} from '@nestjs/microservices';
import { randomUUID } from 'node:crypto';
import { lastValueFrom } from 'rxjs';
import {
  IDEMPOTENCY_PROBLEM_TYPES,
  type IdempotencyEvent,
  IdempotencyModule,
  Idempotent,
  MemoryStore,
} from '../../lib';
import { AtMostOnceLedger, FaultyStore } from '../../lib/testing';
import { eventually } from '../support/eventually';
import { getFreePort } from '../support/valkey-server';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const ledger = new AtMostOnceLedger();
const eventFailures = new Map<string, number>();
/** What the module reported (onEvent): how a test knows an emitted event was handled. */
const events: IdempotencyEvent[] = [];

@Controller()
class ProbeController {
  @MessagePattern('pay')
  @Idempotent()
  pay(@Payload() data: { idempotencyKey: string }) {
    return { run: ledger.record(`pay:${data.idempotencyKey}`) };
  }

  @MessagePattern('big')
  @Idempotent()
  big(@Payload() data: { idempotencyKey: string }) {
    ledger.record(`big:${data.idempotencyKey}`);
    return { n: 10n };
  }

  @EventPattern('evt')
  @Idempotent()
  evt(@Payload() data: { idempotencyKey: string }) {
    ledger.record(`evt:${data.idempotencyKey}`);
    const n = (eventFailures.get(data.idempotencyKey) ?? 0) + 1;
    eventFailures.set(data.idempotencyKey, n);
    if (n === 1) throw new Error('first delivery fails');
  }
}

async function start(store: FaultyStore, extra: Record<string, unknown> = {}) {
  @Module({
    imports: [IdempotencyModule.forRoot({ store, leaseMs: 300, onEvent: (e) => void events.push(e), ...extra })],
    controllers: [ProbeController],
  })
  class AppModule {}
  const options = { transport: Transport.TCP as const, options: { host: '127.0.0.1', port: await getFreePort() } };
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, { ...options, logger: false });
  await app.listen();
  const client = ClientProxyFactory.create(options);
  await client.connect();
  const send = (pattern: string, data: unknown) => lastValueFrom(client.send(pattern, data));
  const refusal = (pattern: string, data: unknown) =>
    send(pattern, data).then(
      (v) => {
        throw new Error(`expected a refusal, got ${JSON.stringify(v)}`);
      },
      (e) => e as Record<string, unknown>,
    );
  const emit = (pattern: string, data: unknown) =>
    lastValueFrom(client.emit(pattern, data), { defaultValue: undefined });
  return {
    send,
    refusal,
    emit,
    close: async () => {
      await client.close();
      await app.close();
    },
  };
}

describe('message handlers: rows of the docs table without a test', () => {
  const store = new FaultyStore(new MemoryStore());
  let app: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    app = await start(store);
  });
  afterAll(async () => {
    await app.close();
    await store.close();
  });

  it('store unreachable when claiming: the 503 store-unavailable problem; the handler does not run', async () => {
    const key = randomUUID();
    store.failNext('tryInsert', new Error('down'));
    const refused = await app.refusal('pay', { idempotencyKey: key });
    expect(refused).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable, status: 503 });
    expect(ledger.count(`pay:${key}`)).toBe(0);
  });

  it('result not stored (store failing after the handler ran): 503; the key stays held, a retry never runs it again', async () => {
    const key = randomUUID();
    store.failNext('complete', new Error('oom'), 1_000_000);
    const refused = await app.refusal('pay', { idempotencyKey: key });
    expect(refused).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable, status: 503 });
    const retry = await app.refusal('pay', { idempotencyKey: key });
    expect(retry).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.inFlight, status: 409 });
    store.heal('complete');
    let replay: unknown;
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      try {
        replay = await app.send('pay', { idempotencyKey: key });
        break;
      } catch {
        // still held
      }
    }
    expect(replay).toEqual({ run: 1 });
    expect(ledger.count(`pay:${key}`)).toBe(1);
  });

  it('a result JSON cannot hold: 500 unsupported-result, now and on retries; the handler ran once', async () => {
    const key = randomUUID();
    const first = await app.refusal('big', { idempotencyKey: key });
    expect(first).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.unsupportedResult, status: 500 });
    const again = await app.refusal('big', { idempotencyKey: key });
    expect(again).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.unsupportedResult, status: 500 });
    expect(ledger.count(`big:${key}`)).toBe(1);
  });

  it('events: the handler throws: the key is released, a redelivery runs again (then duplicates are dropped)', async () => {
    const key = randomUUID();
    // Each delivery is sent once the previous one was handled (emit does not wait for that).
    const deliver = async (outcome: IdempotencyEvent['type']) => {
      const seen = events.length;
      await app.emit('evt', { idempotencyKey: key });
      await eventually(() => events.slice(seen).some((e) => e.type === outcome), `a delivery ${outcome}`);
    };
    await deliver('released');
    await deliver('executed');
    await deliver('replayed');
    expect(ledger.count(`evt:${key}`)).toBe(2);
  });

  it('events: the store unreachable when claiming: the handler does not run', async () => {
    const key = randomUUID();
    store.failNext('tryInsert', new Error('down'));
    const seen = events.length;
    await app.emit('evt', { idempotencyKey: key });
    await eventually(() => events.slice(seen).some((e) => e.type === 'store-error'), 'the claim to fail');
    expect(ledger.count(`evt:${key}`)).toBe(0);
  });
});

describe('message handlers with failOpen', () => {
  it('the store unreachable when claiming: the handler runs unguarded', async () => {
    const store = new FaultyStore(new MemoryStore());
    const app = await start(store, { failOpen: true });
    try {
      const key = randomUUID();
      store.failNext('tryInsert', new Error('down'));
      expect(await app.send('pay', { idempotencyKey: key })).toEqual({ run: 1 });
    } finally {
      await app.close();
      await store.close();
    }
  });
});
