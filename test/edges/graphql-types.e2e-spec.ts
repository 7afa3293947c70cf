/**
 * Issue 17, defect 11 (DESIGN 7.1): a replayed GraphQL value still resolves its union or interface
 * type. Nest resolves a union or interface member by `instanceof`, and a replay is parsed JSON:
 * before the fix every retry answered `Return type for "ChargeResult" cannot be resolved` and
 * `data: null`. Over real HTTP: Apollo on Express and Mercurius on Fastify, with a second app on the
 * same store replaying what the first stored (as another instance, or the same one after a
 * restart, would).
 */
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  Args,
  createUnionType,
  Field,
  GraphQLModule,
  Int,
  InterfaceType,
  Mutation,
  ObjectType,
  Query,
  Resolver,
} from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { randomUUID } from 'node:crypto';
import { IdempotencyModule, type IdempotencyStore, Idempotent, MemoryStore } from '../../lib';

const runs = new Map<string, number>();
const ran = (tag: string) => {
  const n = (runs.get(tag) ?? 0) + 1;
  runs.set(tag, n);
  return n;
};

@InterfaceType()
abstract class Receipt {
  @Field() number!: string;
}

@ObjectType({ implements: () => [Receipt] })
class CardReceipt implements Receipt {
  @Field() number!: string;
  @Field() last4!: string;
}

@ObjectType('Ok')
class Approved {
  @Field(() => Int) amount!: number;
  @Field(() => Int) run!: number;
  @Field(() => Receipt) receipt!: Receipt;
  @Field() at!: Date;
}

@ObjectType()
class Declined {
  @Field() reason!: string;
}

const ChargeResult = createUnionType({ name: 'ChargeResult', types: () => [Approved, Declined] as const });

/** The app's own resolveType, by instanceof, as many apps write it. */
const StrictResult = createUnionType({
  name: 'StrictResult',
  types: () => [Approved, Declined] as const,
  resolveType: (value) => (value instanceof Approved ? Approved : value instanceof Declined ? Declined : undefined),
});

function approved(amount: number, tag: string): Approved {
  const receipt = Object.assign(new CardReceipt(), { number: `r-${tag}`, last4: '4242' });
  return Object.assign(new Approved(), { amount, run: ran(tag), receipt, at: new Date(0) });
}

@Resolver()
class ChargesResolver {
  @Query(() => String)
  ping(): string {
    return 'pong';
  }

  @Mutation(() => ChargeResult)
  @Idempotent()
  charge(@Args('amount', { type: () => Int }) amount: number, @Args('tag') tag: string): typeof ChargeResult {
    if (amount <= 0) return Object.assign(new Declined(), { reason: `declined ${ran(tag)}` });
    return approved(amount, tag);
  }

  @Mutation(() => StrictResult)
  @Idempotent()
  strict(@Args('amount', { type: () => Int }) amount: number, @Args('tag') tag: string): typeof StrictResult {
    return approved(amount, tag);
  }

  @Mutation(() => Receipt)
  @Idempotent()
  receipt(@Args('tag') tag: string): Receipt {
    ran(tag);
    return Object.assign(new CardReceipt(), { number: `r-${tag}`, last4: '1881' });
  }
}

type Server = 'apollo-express' | 'mercurius-fastify';

async function startApp(server: Server, store: IdempotencyStore) {
  const graphql =
    server === 'apollo-express'
      ? GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, playground: false })
      : GraphQLModule.forRoot<MercuriusDriverConfig>({ driver: MercuriusDriver, autoSchemaFile: true, cache: false });

  @Module({
    imports: [IdempotencyModule.forRoot({ store, closeStoreOnShutdown: false }), graphql],
    providers: [ChargesResolver],
  })
  class AppModule {}

  const app: INestApplication =
    server === 'apollo-express'
      ? await NestFactory.create(AppModule, { logger: false })
      : await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = `${await app.getUrl()}/graphql`.replace('[::1]', '127.0.0.1');
  return {
    post: async (query: string, key: string) => {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ query }),
      });
      return (await response.json()) as { data?: unknown; errors?: unknown[] };
    },
    close: () => app.close(),
  };
}

const CHARGE = (amount: number, tag: string) => `mutation {
  charge(amount: ${amount}, tag: "${tag}") {
    __typename
    ... on Ok { amount run at receipt { __typename number ... on CardReceipt { last4 } } }
    ... on Declined { reason }
  }
}`;

describe.each<Server>(['apollo-express', 'mercurius-fastify'])('replayed unions and interfaces (%s)', (server) => {
  const store = new MemoryStore();
  let first: Awaited<ReturnType<typeof startApp>>;
  let second: Awaited<ReturnType<typeof startApp>>;

  beforeAll(async () => {
    first = await startApp(server, store);
    second = await startApp(server, store);
  }, 30_000);

  afterAll(async () => {
    await first?.close();
    await second?.close();
    await store.close();
  });

  it('a union member (a class instance) resolves on every replay, with its nested interface field', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const original = await first.post(CHARGE(42, tag), key);
    expect(original.errors).toBeUndefined();
    expect(original.data).toEqual({
      charge: {
        __typename: 'Ok',
        amount: 42,
        run: 1,
        at: '1970-01-01T00:00:00.000Z',
        receipt: { __typename: 'CardReceipt', number: `r-${tag}`, last4: '4242' },
      },
    });
    for (const app of [first, second, first]) expect(await app.post(CHARGE(42, tag), key)).toEqual(original);
    expect(runs.get(tag)).toBe(1);
  });

  it('the other member of the union resolves too', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const original = await first.post(CHARGE(0, tag), key);
    expect(original).toEqual({ data: { charge: { __typename: 'Declined', reason: 'declined 1' } } });
    expect(await second.post(CHARGE(0, tag), key)).toEqual(original);
    expect(runs.get(tag)).toBe(1);
  });

  it("an interface-typed result resolves on replay, and an app's own resolveType by instanceof too", async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const query = `mutation { receipt(tag: "${tag}") { __typename number ... on CardReceipt { last4 } } }`;
    const original = await first.post(query, key);
    expect(original).toEqual({ data: { receipt: { __typename: 'CardReceipt', number: `r-${tag}`, last4: '1881' } } });
    expect(await first.post(query, key)).toEqual(original);
    expect(await second.post(query, key)).toEqual(original);

    const strictKey = randomUUID();
    const strictTag = randomUUID();
    const strict = `mutation { strict(amount: 7, tag: "${strictTag}") { __typename ... on Ok { amount run } } }`;
    const once = await first.post(strict, strictKey);
    expect(once).toEqual({ data: { strict: { __typename: 'Ok', amount: 7, run: 1 } } });
    expect(await first.post(strict, strictKey)).toEqual(once);
    expect(await second.post(strict, strictKey)).toEqual(once);
    expect(runs.get(tag)).toBe(1);
    expect(runs.get(strictTag)).toBe(1);
  });
});
