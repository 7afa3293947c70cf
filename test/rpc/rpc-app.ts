/**
 * A real Nest microservice for the message handler suites: handlers under `@Idempotent()` on a
 * TCP or Redis transport, and a ClientProxy to talk to it.
 */
import { Controller, Module, UsePipes, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientProxy,
  ClientProxyFactory,
  Ctx,
  EventPattern,
  MessagePattern,
  type MicroserviceOptions,
  Payload,
  Transport,
} from '@nestjs/microservices';
import { IsInt, IsString } from 'class-validator';
import { from, lastValueFrom, Observable } from 'rxjs';
import {
  type IdempotencyClaim as Claim,
  IdempotencyClaim,
  IdempotencyModule,
  type IdempotencyStore,
  Idempotent,
} from '../../lib';
import { AtMostOnceLedger } from '../../lib/testing';
import { getFreePort } from '../support/valkey-server';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export type RpcTransport = 'tcp' | 'redis';

/** What the handlers saw, shared with the test. */
export const ledger = new AtMostOnceLedger();
export const handledEvents: unknown[] = [];
const failures = new Map<string, number>();

interface ChargeData {
  idempotencyKey?: string;
  amount: number;
  delayMs?: number;
}

class DoubleDto {
  @IsString() idempotencyKey!: string;
  @IsInt() value!: number;
}

@Controller()
class PaymentsController {
  @MessagePattern('charge')
  @Idempotent()
  async charge(@Payload() data: ChargeData) {
    const run = ledger.record(`charge:${data.idempotencyKey ?? '-'}`);
    await sleep(data.delayMs ?? 0);
    return { charged: data.amount, run, at: new Date(0) };
  }

  // No parameter decorators, and @Idempotent() below the pattern: Nest still hands it the payload,
  // through the pipes bound to it.
  @MessagePattern('double')
  @UsePipes(new ValidationPipe({ transform: true }))
  @Idempotent()
  double(data: DoubleDto) {
    ledger.record(`double:${data.idempotencyKey}`);
    return { doubled: data.value * 2, dto: data instanceof DoubleDto };
  }

  @Idempotent()
  @MessagePattern({ cmd: 'stream' })
  stream(@Payload() data: { idempotencyKey: string }): Observable<number> {
    ledger.record(`stream:${data.idempotencyKey}`);
    return from([1, 2, 3]);
  }

  @MessagePattern('by-order')
  @Idempotent({ key: (data: { orderId: string }) => data.orderId })
  byOrder(@Payload() data: { orderId: string; note: string }) {
    return { order: data.orderId, run: ledger.record(`by-order:${data.orderId}`) };
  }

  @MessagePattern('required')
  @Idempotent({ required: true })
  required(@Payload() data: { idempotencyKey?: string }) {
    return { run: ledger.record(`required:${data.idempotencyKey}`) };
  }

  @MessagePattern('flaky')
  @Idempotent()
  flaky(@Payload() data: { idempotencyKey: string }) {
    ledger.record(`flaky:${data.idempotencyKey}`);
    const n = (failures.get(data.idempotencyKey) ?? 0) + 1;
    failures.set(data.idempotencyKey, n);
    if (n === 1) throw new Error('first attempt fails');
    return { attempt: n };
  }

  @MessagePattern('claim')
  @Idempotent()
  claim(@Payload() data: { idempotencyKey?: string }, @Ctx() ctx: object, @IdempotencyClaim() claim?: Claim) {
    ledger.record(`claim:${data.idempotencyKey ?? '-'}`);
    return {
      key: claim?.key.toString() ?? null,
      token: claim?.fencingToken.toString() ?? null,
      aborted: claim?.signal.aborted ?? null,
      hasContext: typeof ctx === 'object' && ctx !== null,
    };
  }

  @MessagePattern('waits')
  @Idempotent({ waitMs: 5_000 })
  async waits(@Payload() data: { idempotencyKey: string; delayMs: number }) {
    const run = ledger.record(`waits:${data.idempotencyKey}`);
    await sleep(data.delayMs);
    return { run };
  }

  @EventPattern('order.created')
  @Idempotent()
  async orderCreated(@Payload() data: { idempotencyKey?: string; order: string; delayMs?: number }) {
    ledger.record(`event:${data.idempotencyKey ?? data.order}`);
    await sleep(data.delayMs ?? 0);
    handledEvents.push(data);
  }
}

/** `@Idempotent()` on the class: every message and event handler of it is guarded. */
@Controller()
@Idempotent({ key: (data: { id: string }) => data.id })
class ClassWideController {
  @MessagePattern('class-wide')
  handle(data: { id: string; n: number }) {
    return { n: data.n, run: ledger.record(`class-wide:${data.id}`) };
  }
}

@Module({ controllers: [PaymentsController, ClassWideController] })
class PaymentsModule {}

export interface RpcFixture {
  client: ClientProxy;
  send<T = unknown>(pattern: unknown, data: unknown): Promise<T>;
  /** The error object a `send` is refused with. */
  refusal(pattern: unknown, data: unknown): Promise<Record<string, unknown>>;
  emit(pattern: string, data: unknown): Promise<void>;
  close(): Promise<void>;
}

/** Starts the microservice on `transport` with `store`, and connects a client to it. */
export async function startRpcApp(
  transport: RpcTransport,
  store: IdempotencyStore,
  redis?: { host: string; port: number },
): Promise<RpcFixture> {
  @Module({ imports: [IdempotencyModule.forRoot({ store, leaseMs: 2_000 }), PaymentsModule] })
  class AppModule {}

  const options =
    transport === 'tcp'
      ? { transport: Transport.TCP as const, options: { host: '127.0.0.1', port: await getFreePort() } }
      : { transport: Transport.REDIS as const, options: { host: redis!.host, port: redis!.port } };
  const app = await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, { ...options, logger: false });
  await app.listen();
  const client = ClientProxyFactory.create(options);
  await client.connect();
  return {
    client,
    send: <T>(pattern: unknown, data: unknown) => lastValueFrom(client.send<T>(pattern, data)),
    refusal: async (pattern, data) => {
      try {
        const value = await lastValueFrom(client.send(pattern, data));
        throw new Error(`expected a refusal, got ${JSON.stringify(value)}`);
      } catch (error) {
        return error as Record<string, unknown>;
      }
    },
    emit: async (pattern, data) => {
      await lastValueFrom(client.emit(pattern, data), { defaultValue: undefined });
    },
    close: async () => {
      await client.close();
      await app.close();
    },
  };
}

/** Waits until `check` holds, for up to `ms`. */
export async function eventually(check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(10);
  }
}
