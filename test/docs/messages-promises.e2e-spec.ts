/**
 * Promises of docs/messages-and-graphql.md about event and message handlers that no other test
 * covered: the warnings logged for events (a key reused with other data; `required: true` without
 * a key), and the `fingerprint` option (a function is ignored, a strategy applies).
 * A real Nest microservice on a real TCP port, with the Nest logger captured.
 */
import { Controller, type LoggerService, Module } from '@nestjs/common';
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
  DefaultFingerprintStrategy,
  Fingerprint,
  type FingerprintStrategy,
  IDEMPOTENCY_PROBLEM_TYPES,
  IdempotencyModule,
  type IdempotencyOutcome,
  Idempotent,
  MemoryStore,
} from '../../lib';
import { AtMostOnceLedger } from '../../lib/testing';
import { eventually } from '../support/eventually';
import { getFreePort } from '../support/valkey-server';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const ledger = new AtMostOnceLedger();
/** What the module reported (onEvent): how a test knows an emitted event was handled. */
const outcomes: IdempotencyOutcome[] = [];

/** Every warning the Nest logger gets, with its context. */
class CapturingLogger implements LoggerService {
  readonly warnings: string[] = [];
  log(): void {}
  error(): void {}
  debug(): void {}
  verbose(): void {}
  warn(message: unknown, ...rest: unknown[]): void {
    this.warnings.push([message, ...rest].map(String).join(' '));
  }
}

/** A fingerprint function: if it were used, every message would share one fingerprint. */
const fingerprintFunction = jest.fn(() => Fingerprint.fromBigInt(7n));

/** A strategy that ignores the data: every message of a pattern gets one fingerprint. */
class PatternOnlyStrategy implements FingerprintStrategy {
  calls = 0;
  readonly #inner = new DefaultFingerprintStrategy();
  compute(operation: string): Fingerprint {
    this.calls++;
    return this.#inner.compute(operation, '');
  }
}
const patternOnly = new PatternOnlyStrategy();

@Controller()
class EventsController {
  @EventPattern('order.placed')
  @Idempotent()
  placed(@Payload() data: { idempotencyKey?: string; orderId: string }) {
    ledger.record(`placed:${data.idempotencyKey}`);
  }

  @EventPattern('stock.reserved')
  @Idempotent({ required: true })
  reserved(@Payload() data: { idempotencyKey?: string; sku: string }) {
    ledger.record(`reserved:${data.sku}`);
  }

  @MessagePattern('fp.function')
  @Idempotent({ fingerprint: fingerprintFunction })
  withFunction(@Payload() data: { idempotencyKey: string; amount: number }) {
    return { amount: data.amount, run: ledger.record(`fp.function:${data.idempotencyKey}`) };
  }

  @MessagePattern('fp.strategy')
  @Idempotent({ fingerprint: patternOnly })
  withStrategy(@Payload() data: { idempotencyKey: string; amount: number }) {
    return { amount: data.amount, run: ledger.record(`fp.strategy:${data.idempotencyKey}`) };
  }
}

describe('docs/messages-and-graphql.md: event handlers and the fingerprint option (TCP microservice)', () => {
  const logger = new CapturingLogger();
  const store = new MemoryStore();
  let close: () => Promise<void>;
  let send: (pattern: string, data: unknown) => Promise<unknown>;
  let emit: (pattern: string, data: unknown) => Promise<unknown>;
  let refusal: (pattern: string, data: unknown) => Promise<Record<string, unknown>>;

  beforeAll(async () => {
    @Module({
      imports: [IdempotencyModule.forRoot({ store, onEvent: (e) => void outcomes.push(e.type) })],
      controllers: [EventsController],
    })
    class AppModule {}
    const options = { transport: Transport.TCP as const, options: { host: '127.0.0.1', port: await getFreePort() } };
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, { ...options, logger });
    await app.listen();
    const client = ClientProxyFactory.create(options);
    await client.connect();
    send = (pattern, data) => lastValueFrom(client.send(pattern, data));
    emit = (pattern, data) => lastValueFrom(client.emit(pattern, data), { defaultValue: undefined });
    refusal = (pattern, data) =>
      send(pattern, data).then(
        (value) => {
          throw new Error(`expected a refusal, got ${JSON.stringify(value)}`);
        },
        (error) => error as Record<string, unknown>,
      );
    close = async () => {
      await client.close();
      await app.close();
    };
  }, 30_000);

  afterAll(async () => {
    await close?.();
    await store.close();
  });

  /** Waits until a warning matching `pattern` was logged (or fails after `ms`). */
  async function warningMatching(pattern: RegExp, ms = 3_000): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const found = logger.warnings.find((w) => pattern.test(w));
      if (found !== undefined) return found;
      if (Date.now() > end) throw new Error(`no warning matching ${pattern}; got ${JSON.stringify(logger.warnings)}`);
      await sleep(10);
    }
  }

  it('events: the same key with different data: the handler does not run again, a warning is logged', async () => {
    const key = randomUUID();
    await emit('order.placed', { idempotencyKey: key, orderId: 'o-1' });
    for (let i = 0; i < 300 && ledger.count(`placed:${key}`) === 0; i++) await sleep(10);
    expect(ledger.count(`placed:${key}`)).toBe(1);
    const before = logger.warnings.length;
    // A plain duplicate is dropped silently: no warning (once it was handled: replayed).
    const seen = outcomes.length;
    await emit('order.placed', { idempotencyKey: key, orderId: 'o-1' });
    await eventually(() => outcomes.slice(seen).includes('replayed'), 'the duplicate to be handled');
    expect(logger.warnings.slice(before)).toEqual([]);

    await emit('order.placed', { idempotencyKey: key, orderId: 'o-2' });
    const warning = await warningMatching(/EventsController\.placed\(\)/).catch(() => undefined);
    await sleep(100);
    expect(ledger.count(`placed:${key}`)).toBe(1);
    expect(warning).toMatch(/dropped an event whose idempotency key was already used for a different event/);
    // Keys are never logged.
    expect(warning).not.toContain(key);
    expect(logger.warnings.slice(before)).toHaveLength(1);
  });

  it('events: required: true and no key: refused with the 400 problem, and a warning; the handler does not run', async () => {
    const sku = `sku-${randomUUID()}`;
    const before = logger.warnings.length;
    await emit('stock.reserved', { sku });
    const warning = await warningMatching(/EventsController\.reserved\(\)/);
    expect(warning).toMatch(/refused an event/);
    expect(warning).toContain('This handler requires an idempotency key (data.idempotencyKey).');
    expect(logger.warnings.slice(before)).toHaveLength(1);
    await sleep(100);
    expect(ledger.count(`reserved:${sku}`)).toBe(0);

    // The refusal is the 400 key-missing problem (seen by a sender that asks for an answer).
    expect(await refusal('stock.reserved', { sku })).toEqual({
      type: IDEMPOTENCY_PROBLEM_TYPES.keyMissing,
      title: 'Idempotency key required',
      status: 400,
      detail: 'This handler requires an idempotency key (data.idempotencyKey).',
    });
    expect(ledger.count(`reserved:${sku}`)).toBe(0);
  });

  it('fingerprint: a function is ignored for message handlers (never called; the data still decides: 422 on other data)', async () => {
    const key = randomUUID();
    expect(await send('fp.function', { idempotencyKey: key, amount: 1 })).toEqual({ amount: 1, run: 1 });
    expect(await send('fp.function', { idempotencyKey: key, amount: 1 })).toEqual({ amount: 1, run: 1 });
    // Were the function used, this would share its constant fingerprint and replay.
    expect(await refusal('fp.function', { idempotencyKey: key, amount: 2 })).toMatchObject({
      type: IDEMPOTENCY_PROBLEM_TYPES.keyReused,
      status: 422,
    });
    expect(fingerprintFunction).not.toHaveBeenCalled();
    expect(ledger.count(`fp.function:${key}`)).toBe(1);
  });

  it('fingerprint: a strategy is used for message handlers', async () => {
    const key = randomUUID();
    const calls = patternOnly.calls;
    expect(await send('fp.strategy', { idempotencyKey: key, amount: 1 })).toEqual({ amount: 1, run: 1 });
    // The strategy ignores the data: other data under the key is a replay, not a 422.
    expect(await send('fp.strategy', { idempotencyKey: key, amount: 2 })).toEqual({ amount: 1, run: 1 });
    expect(patternOnly.calls).toBe(calls + 2);
    expect(ledger.count(`fp.strategy:${key}`)).toBe(1);
  });
});
