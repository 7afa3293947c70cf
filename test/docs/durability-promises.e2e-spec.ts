/**
 * docs/stores.md, "Durability": a claim fewer replicas acknowledged than `durability` asks is
 * removed and fails with `StoreDurabilityError`; the handler does not run, "IdempotencyService.run
 * and message handlers throw it, resolvers answer IDEMPOTENCY_STORE_UNAVAILABLE", and the key is
 * free for the retry. The HTTP side is test/e2e/http-durability.e2e-spec.ts; this covers the
 * service, a message handler (TCP microservice) and a GraphQL mutation (Apollo), on a real
 * valkey-server primary with one replica paused by SIGSTOP.
 */
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { Controller, type INestApplication, type INestMicroservice, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Args, GraphQLModule, Int, Mutation, Query, Resolver } from '@nestjs/graphql';
import {
  ClientProxyFactory,
  type ClientProxy,
  MessagePattern,
  type MicroserviceOptions,
  Payload,
  Transport,
} from '@nestjs/microservices';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { lastValueFrom } from 'rxjs';
import {
  IDEMPOTENCY_GRAPHQL_ERROR_CODES as CODES,
  IDEMPOTENCY_PROBLEM_TYPES,
  type IdempotencyEvent,
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyService,
  IdempotencyStoreError,
  Idempotent,
  StoreDurabilityError,
  storeKeyFor,
  ValkeyStore,
} from '../../lib';
import { AtMostOnceLedger } from '../../lib/testing';
import {
  describeValkey,
  getFreePort,
  startReplica,
  startStandalone,
  waitForReplica,
  type StandaloneServer,
} from '../support/valkey-server';
import { freshPrefix } from '../valkey/helpers';

const WAIT_MS = 300;
const ledger = new AtMostOnceLedger();

@Controller()
class ChargeController {
  @MessagePattern('charge')
  @Idempotent()
  charge(@Payload() data: { idempotencyKey: string; amount: number }) {
    return { amount: data.amount, run: ledger.record(`charge:${data.idempotencyKey}`) };
  }
}

@Resolver()
class ChargeResolver {
  @Query(() => String)
  hello(): string {
    return 'hi';
  }

  @Mutation(() => Int)
  @Idempotent()
  charge(@Args('tag') tag: string): number {
    return ledger.record(`mutation:${tag}`);
  }
}

describeValkey('docs/stores.md durability (replicas: 1) beyond HTTP: service, message handler, mutation', () => {
  let primary: StandaloneServer;
  let replica: StandaloneServer;
  let client: Redis;
  let store: ValkeyStore;
  let rpcApp: INestMicroservice;
  let rpcClient: ClientProxy;
  let gqlApp: INestApplication;
  let gqlUrl: string;
  let service: IdempotencyService;
  const events: IdempotencyEvent[] = [];

  beforeAll(async () => {
    primary = await startStandalone();
    replica = await startReplica(primary);
    client = new Redis({ host: '127.0.0.1', port: primary.port, lazyConnect: true });
    await client.connect();
    store = new ValkeyStore(client, {
      prefix: freshPrefix('docdur'),
      durability: { replicas: 1, timeoutMs: WAIT_MS },
      commandTimeoutMs: 3_000,
      onWarning: () => undefined,
    });
    const idempotency = IdempotencyModule.forRoot({ store, leaseMs: 1_500, onEvent: (e) => events.push(e) });

    @Module({ imports: [idempotency], controllers: [ChargeController] })
    class RpcModule {}
    const options = { transport: Transport.TCP as const, options: { host: '127.0.0.1', port: await getFreePort() } };
    rpcApp = await NestFactory.createMicroservice<MicroserviceOptions>(RpcModule, { ...options, logger: false });
    await rpcApp.listen();
    rpcClient = ClientProxyFactory.create(options);
    await rpcClient.connect();

    @Module({
      imports: [
        idempotency,
        GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, playground: false }),
      ],
      providers: [ChargeResolver],
    })
    class GqlModule {}
    gqlApp = await NestFactory.create(GqlModule, { logger: false });
    await gqlApp.listen(0, '127.0.0.1');
    gqlUrl = `${await gqlApp.getUrl()}/graphql`.replace('[::1]', '127.0.0.1');
    service = gqlApp.get(IdempotencyService);
  }, 60_000);

  afterAll(async () => {
    if (replica?.paused) replica.resume();
    await rpcClient?.close();
    await rpcApp?.close();
    await gqlApp?.close();
    await store?.close();
    client?.disconnect();
    await replica?.stop();
    await primary?.stop();
  }, 30_000);

  afterEach(async () => {
    if (replica.paused) replica.resume();
    await waitForReplica(primary.port, replica.port);
  });

  const held = async (key: string) => (await store.get(storeKeyFor(new IdempotencyKey(key), undefined))) !== undefined;

  it('IdempotencyService.run: throws StoreDurabilityError (an IdempotencyStoreError), work does not run, the key is free for the retry', async () => {
    const key = randomUUID();
    const work = jest.fn(async () => ({ done: true }));
    replica.pause();
    const error = await service.run(key, work).then(
      () => {
        throw new Error('expected run() to throw');
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StoreDurabilityError);
    expect(error).toBeInstanceOf(IdempotencyStoreError);
    expect(error).toMatchObject({ operation: 'claim', asked: 1, acked: 0, aof: false });
    expect(work).not.toHaveBeenCalled();
    expect(await held(key)).toBe(false);

    replica.resume();
    await waitForReplica(primary.port, replica.port);
    expect(await service.run(key, work)).toEqual({ value: { done: true }, replayed: false });
    expect(await service.run(key, work)).toEqual({ value: { done: true }, replayed: true });
    expect(work).toHaveBeenCalledTimes(1);
  });

  it('a message handler: the sender gets the 503 store-unavailable problem, the handler does not run, the key is free for the retry', async () => {
    const key = randomUUID();
    const data = { idempotencyKey: key, amount: 5 };
    const before = events.length;
    replica.pause();
    const error = await lastValueFrom(rpcClient.send('charge', data)).then(
      (value) => {
        throw new Error(`expected a refusal, got ${JSON.stringify(value)}`);
      },
      (e: unknown) => e,
    );
    expect(error).toEqual({
      type: IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable,
      title: expect.any(String),
      status: 503,
      detail: expect.any(String),
    });
    expect(ledger.count(`charge:${key}`)).toBe(0);
    expect(await held(key)).toBe(false);
    // What reached the handler's guard was the StoreDurabilityError of the claim.
    const storeError = events.slice(before).find((e) => e.type === 'store-error');
    expect(storeError?.error).toBeInstanceOf(StoreDurabilityError);
    expect(storeError?.error).toMatchObject({ operation: 'claim', asked: 1, acked: 0 });

    replica.resume();
    await waitForReplica(primary.port, replica.port);
    expect(await lastValueFrom(rpcClient.send('charge', data))).toEqual({ amount: 5, run: 1 });
    expect(await lastValueFrom(rpcClient.send('charge', data))).toEqual({ amount: 5, run: 1 });
    expect(ledger.count(`charge:${key}`)).toBe(1);
  });

  it('a GraphQL mutation: IDEMPOTENCY_STORE_UNAVAILABLE with status 503, the resolver does not run, the key is free for the retry', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const post = async () =>
      (
        await fetch(gqlUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'Idempotency-Key': key },
          body: JSON.stringify({ query: 'mutation($t: String!) { charge(tag: $t) }', variables: { t: tag } }),
        })
      ).json() as Promise<{ data?: unknown; errors?: { path?: string[]; extensions?: Record<string, unknown> }[] }>;
    const before = events.length;
    replica.pause();
    const refused = await post();
    expect(refused.errors).toHaveLength(1);
    expect(refused.errors?.[0]?.path).toEqual(['charge']);
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: CODES.storeUnavailable,
      type: IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable,
      status: 503,
    });
    expect(ledger.count(`mutation:${tag}`)).toBe(0);
    expect(await held(key)).toBe(false);
    const storeError = events.slice(before).find((e) => e.type === 'store-error');
    expect(storeError?.error).toBeInstanceOf(StoreDurabilityError);

    replica.resume();
    await waitForReplica(primary.port, replica.port);
    expect(await post()).toEqual({ data: { charge: 1 } });
    expect(await post()).toEqual({ data: { charge: 1 } });
    expect(ledger.count(`mutation:${tag}`)).toBe(1);
  });
});
