/**
 * A subclass of IdempotencyInterceptor registered as APP_INTERCEPTOR handles message handlers too:
 * its shouldSkip hook sees them (context type `rpc`), and the handler's own wrapper steps aside,
 * so a message is claimed once, not twice.
 */
import { Controller, type ExecutionContext, Injectable, Module } from '@nestjs/common';
import { APP_INTERCEPTOR, NestFactory } from '@nestjs/core';
import {
  ClientProxyFactory,
  MessagePattern,
  type MicroserviceOptions,
  Payload,
  Transport,
} from '@nestjs/microservices';
import { randomUUID } from 'node:crypto';
import { lastValueFrom } from 'rxjs';
import { IdempotencyInterceptor, IdempotencyModule, Idempotent, MemoryStore } from '../../lib';
import { AtMostOnceLedger } from '../../lib/testing';
import { getFreePort } from '../support/valkey-server';

const ledger = new AtMostOnceLedger();
const seen: string[] = [];

@Injectable()
class SkippingInterceptor extends IdempotencyInterceptor {
  protected override shouldSkip(context: ExecutionContext): boolean {
    seen.push(context.getType());
    return context.getType() === 'rpc' && (context.getArgByIndex(0) as { skip?: boolean }).skip === true;
  }
}

@Controller()
class CounterController {
  @MessagePattern('count')
  @Idempotent()
  count(@Payload() data: { idempotencyKey: string; skip?: boolean }) {
    return { run: ledger.record(data.idempotencyKey) };
  }
}

describe('IdempotencyInterceptor subclass as APP_INTERCEPTOR on a microservice', () => {
  const store = new MemoryStore();
  let close: () => Promise<void>;
  let send: (data: object) => Promise<unknown>;

  beforeAll(async () => {
    @Module({
      imports: [IdempotencyModule.forRoot(store)],
      controllers: [CounterController],
      providers: [{ provide: APP_INTERCEPTOR, useClass: SkippingInterceptor }],
    })
    class AppModule {}
    const options = { transport: Transport.TCP as const, options: { host: '127.0.0.1', port: await getFreePort() } };
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, { ...options, logger: false });
    await app.listen();
    const client = ClientProxyFactory.create(options);
    await client.connect();
    send = (data) => lastValueFrom(client.send('count', data));
    close = async () => {
      await client.close();
      await app.close();
      await store.close();
    };
  });

  afterAll(async () => {
    await close?.();
  });

  it('claims once per message (not once per layer), replays, and asks shouldSkip', async () => {
    const key = randomUUID();
    expect(await send({ idempotencyKey: key })).toEqual({ run: 1 });
    expect(await send({ idempotencyKey: key })).toEqual({ run: 1 });
    expect(ledger.count(key)).toBe(1);
    expect(seen).toContain('rpc');
  });

  it('shouldSkip lets a message through unguarded', async () => {
    const key = randomUUID();
    expect(await send({ idempotencyKey: key, skip: true })).toEqual({ run: 1 });
    expect(await send({ idempotencyKey: key, skip: true })).toEqual({ run: 2 });
  });
});
