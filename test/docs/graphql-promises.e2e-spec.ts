/**
 * Promises of the docs that no other test covered: rows of docs/messages-and-graphql.md (GraphQL mutations) that had no test.
 */
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { type ExecutionContext, Injectable, type INestApplication, Module } from '@nestjs/common';
import { APP_INTERCEPTOR, NestFactory } from '@nestjs/core';
import { Args, GraphQLModule, Int, Mutation, Query, Resolver } from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { randomUUID } from 'node:crypto';
import {
  IDEMPOTENCY_GRAPHQL_ERROR_CODES as CODES,
  IdempotencyInterceptor,
  IdempotencyModule,
  Idempotent,
  MemoryStore,
} from '../../lib';
import { AtMostOnceLedger, FaultyStore } from '../../lib/testing';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const ledger = new AtMostOnceLedger();
const failures = new Map<string, number>();

@Resolver()
class ProbeResolver {
  @Query(() => String)
  hello(): string {
    return 'hi';
  }

  @Mutation(() => Int)
  @Idempotent()
  async slow(@Args('tag') tag: string, @Args('ms', { type: () => Int }) ms: number): Promise<number> {
    const run = ledger.record(`slow:${tag}`);
    await sleep(ms);
    return run;
  }

  @Mutation(() => Int)
  @Idempotent()
  flaky(@Args('tag') tag: string): number {
    ledger.record(`flaky:${tag}`);
    const n = (failures.get(tag) ?? 0) + 1;
    failures.set(tag, n);
    if (n === 1) throw new Error('first attempt fails');
    return n;
  }

  @Mutation(() => String)
  @Idempotent()
  cyclic(@Args('tag') tag: string): unknown {
    ledger.record(`cyclic:${tag}`);
    const value: Record<string, unknown> = {};
    value.self = value;
    return value;
  }
}

type Server = 'apollo-express' | 'mercurius-fastify';

async function start(server: Server, store: FaultyStore) {
  const graphql =
    server === 'apollo-express'
      ? GraphQLModule.forRoot<ApolloDriverConfig>({
          driver: ApolloDriver,
          autoSchemaFile: true,
          playground: false,
          allowBatchedHttpRequests: true,
        })
      : GraphQLModule.forRoot<MercuriusDriverConfig>({
          driver: MercuriusDriver,
          autoSchemaFile: true,
          cache: false,
          allowBatchedQueries: true,
        });
  @Module({
    imports: [IdempotencyModule.forRoot({ store, leaseMs: 2_000, waitMs: 5_000 }), graphql],
    providers: [ProbeResolver],
  })
  class AppModule {}
  const app: INestApplication =
    server === 'apollo-express'
      ? await NestFactory.create(AppModule, { logger: false })
      : await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = `${await app.getUrl()}/graphql`.replace('[::1]', '127.0.0.1');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const post = async (body: unknown, key?: string): Promise<any> => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'Idempotency-Key': key }) },
      body: JSON.stringify(body),
    });
    return response.json();
  };
  return { post, close: () => app.close() };
}

describe.each<Server>(['apollo-express', 'mercurius-fastify'])('GraphQL mutations on %s (docs promises)', (server) => {
  const store = new FaultyStore(new MemoryStore());
  let app: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    app = await start(server, store);
  }, 30_000);
  afterAll(async () => {
    await app.close();
    await store.close();
  });

  const SLOW = 'mutation($t: String!, $ms: Int!) { slow(tag: $t, ms: $ms) }';

  it('waitMs: concurrent duplicates wait for the first and get the stored result', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 5 }, () => app.post({ query: SLOW, variables: { t: tag, ms: 300 } }, key)),
    );
    for (const r of results) expect(r).toEqual({ data: { slow: 1 } });
    expect(ledger.count(`slow:${tag}`)).toBe(1);
  });

  it('the resolver throws: the key is released, the retry runs again', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const q = 'mutation($t: String!) { flaky(tag: $t) }';
    const first = await app.post({ query: q, variables: { t: tag } }, key);
    expect(first.errors?.[0]?.message).toMatch(/first attempt fails/);
    const second = await app.post({ query: q, variables: { t: tag } }, key);
    expect(second).toEqual({ data: { flaky: 2 } });
    expect(ledger.count(`flaky:${tag}`)).toBe(2);
  });

  it('the store unreachable: IDEMPOTENCY_STORE_UNAVAILABLE with status 503; the resolver does not run', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    store.failNext('tryInsert', new Error('down'));
    const r = await app.post({ query: SLOW, variables: { t: tag, ms: 0 } }, key);
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: CODES.storeUnavailable, status: 503 });
    expect(ledger.count(`slow:${tag}`)).toBe(0);
  });

  it('a result JSON cannot hold: IDEMPOTENCY_UNSUPPORTED_RESULT, now and on retries; ran once', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const q = 'mutation($t: String!) { cyclic(tag: $t) }';
    const first = await app.post({ query: q, variables: { t: tag } }, key);
    expect(first.errors?.[0]?.extensions?.code).toBe(CODES.unsupportedResult);
    const again = await app.post({ query: q, variables: { t: tag } }, key);
    expect(again.errors?.[0]?.extensions?.code).toBe(CODES.unsupportedResult);
    expect(ledger.count(`cyclic:${tag}`)).toBe(1);
  });

  // Each operation of a batch gets its own GraphQL context object (Mercurius Object.create()s one
  // per operation; Apollo builds one per operation too): the keys used are kept per HTTP request.
  it('a second mutation field of the same batch with the same key: IDEMPOTENCY_KEY_REUSED on that field', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const op = { query: SLOW, variables: { t: tag, ms: 100 } };
    const results = await app.post([op, op], key);
    expect(Array.isArray(results)).toBe(true);
    const codes = (results as { errors?: { extensions?: { code?: string } }[] }[]).map(
      (r) => r.errors?.[0]?.extensions?.code ?? 'ok',
    );
    expect(codes.sort()).toEqual([CODES.keyReused, 'ok'].sort());
    expect(ledger.count(`slow:${tag}`)).toBe(1);
  });
});

@Injectable()
class SkippingInterceptor extends IdempotencyInterceptor {
  static seen: string[] = [];
  protected override shouldSkip(context: ExecutionContext): boolean {
    SkippingInterceptor.seen.push(context.getType());
    return false;
  }
}

describe.each<Server>(['apollo-express', 'mercurius-fastify'])(
  'messages-and-graphql.md: an IdempotencyInterceptor subclass as APP_INTERCEPTOR handles resolvers (%s)',
  (server) => {
    it('claims a mutation once (not once per layer), replays it, and asks shouldSkip', async () => {
      const store = new MemoryStore();
      const graphql =
        server === 'apollo-express'
          ? GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, playground: false })
          : GraphQLModule.forRoot<MercuriusDriverConfig>({
              driver: MercuriusDriver,
              autoSchemaFile: true,
              cache: false,
            });
      @Module({
        imports: [IdempotencyModule.forRoot(store), graphql],
        providers: [ProbeResolver, { provide: APP_INTERCEPTOR, useClass: SkippingInterceptor }],
      })
      class AppModule {}
      const app: INestApplication =
        server === 'apollo-express'
          ? await NestFactory.create(AppModule, { logger: false })
          : await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false });
      await app.listen(0, '127.0.0.1');
      try {
        const url = `${await app.getUrl()}/graphql`.replace('[::1]', '127.0.0.1');
        const key = randomUUID();
        const tag = randomUUID();
        const post = async () =>
          (
            await fetch(url, {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'Idempotency-Key': key },
              body: JSON.stringify({ query: 'mutation($t: String!) { slow(tag: $t, ms: 0) }', variables: { t: tag } }),
            })
          ).json();
        expect(await post()).toEqual({ data: { slow: 1 } });
        expect(await post()).toEqual({ data: { slow: 1 } });
        expect(ledger.count(`slow:${tag}`)).toBe(1);
        expect(SkippingInterceptor.seen).toContain('graphql');
      } finally {
        await app.close();
        await store.close();
      }
    });
  },
);
