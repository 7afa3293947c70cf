/**
 * Promises of docs/messages-and-graphql.md about GraphQL resolvers that no other test covered:
 * `@Idempotent()` on a query or field resolver *method* is an error when the field is resolved
 * (naming the resolver), and the `fingerprint` option of mutations (a function is ignored, a
 * strategy applies). Real Nest apps on real ports, Apollo (Express) and Mercurius (Fastify).
 */
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Args, Field, GraphQLModule, Int, Mutation, ObjectType, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { randomUUID } from 'node:crypto';
import {
  DefaultFingerprintStrategy,
  Fingerprint,
  type FingerprintStrategy,
  IDEMPOTENCY_GRAPHQL_ERROR_CODES as CODES,
  IdempotencyModule,
  Idempotent,
  MemoryStore,
} from '../../lib';
import { AtMostOnceLedger } from '../../lib/testing';

const ledger = new AtMostOnceLedger();

/** A fingerprint function: if it were used, every call would share one fingerprint. */
const fingerprintFunction = jest.fn(() => Fingerprint.fromBigInt(7n));

/** A strategy that ignores the arguments: every call of a field gets one fingerprint. */
class FieldOnlyStrategy implements FingerprintStrategy {
  calls = 0;
  readonly #inner = new DefaultFingerprintStrategy();
  compute(operation: string): Fingerprint {
    this.calls++;
    return this.#inner.compute(operation, '');
  }
}
const fieldOnly = new FieldOnlyStrategy();

@ObjectType()
class Receipt {
  @Field() id!: string;
}

@Resolver(() => Receipt)
class ReceiptResolver {
  @Query(() => String)
  @Idempotent()
  guardedQuery(@Args('tag') tag: string): string {
    ledger.record(`query:${tag}`);
    return tag;
  }

  @Query(() => Receipt)
  receipt(@Args('id') id: string): Receipt {
    return { id };
  }

  @Mutation(() => Receipt)
  @Idempotent()
  issue(@Args('id') id: string): Receipt {
    ledger.record(`issue:${id}`);
    return { id };
  }

  @ResolveField(() => String)
  @Idempotent()
  note(): string {
    ledger.record('note');
    return 'note';
  }

  @Mutation(() => Int)
  @Idempotent({ fingerprint: fingerprintFunction })
  withFunction(@Args('tag') tag: string, @Args('amount', { type: () => Int }) amount: number): number {
    ledger.record(`fn:${tag}`);
    return amount;
  }

  @Mutation(() => Int)
  @Idempotent({ fingerprint: fieldOnly })
  withStrategy(@Args('tag') tag: string, @Args('amount', { type: () => Int }) amount: number): number {
    ledger.record(`strategy:${tag}`);
    return amount;
  }
}

type Server = 'apollo-express' | 'mercurius-fastify';

async function start(server: Server, store: MemoryStore) {
  const graphql =
    server === 'apollo-express'
      ? GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, playground: false })
      : GraphQLModule.forRoot<MercuriusDriverConfig>({ driver: MercuriusDriver, autoSchemaFile: true, cache: false });
  @Module({ imports: [IdempotencyModule.forRoot({ store }), graphql], providers: [ReceiptResolver] })
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

describe.each<Server>(['apollo-express', 'mercurius-fastify'])('GraphQL resolvers on %s (docs promises)', (server) => {
  const store = new MemoryStore();
  let app: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    app = await start(server, store);
  }, 30_000);
  afterAll(async () => {
    await app.close();
    await store.close();
  });

  it('@Idempotent() on a query method: an error when the field is resolved, naming the resolver; the query does not run', async () => {
    const tag = randomUUID();
    const r = await app.post({ query: 'query($t: String!) { guardedQuery(tag: $t) }', variables: { t: tag } }, tag);
    expect(r.data ?? null).toBeNull();
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0].path).toEqual(['guardedQuery']);
    expect(r.errors[0].message).toContain('ReceiptResolver.guardedQuery()');
    expect(r.errors[0].message).toMatch(/@Idempotent\(\) guards GraphQL mutations only/);
    expect(r.errors[0].message).toContain('Query.guardedQuery of a query operation');
    expect(ledger.count(`query:${tag}`)).toBe(0);
  });

  it('@Idempotent() on a field resolver method: an error when the field is resolved (under a query and under a mutation), naming the resolver', async () => {
    const id = randomUUID();
    const viaQuery = await app.post({
      query: 'query($id: String!) { receipt(id: $id) { id note } }',
      variables: { id },
    });
    expect(viaQuery.errors).toHaveLength(1);
    expect(viaQuery.errors[0].path).toEqual(['receipt', 'note']);
    expect(viaQuery.errors[0].message).toContain('ReceiptResolver.note()');
    expect(viaQuery.errors[0].message).toContain('Receipt.note of a query operation');

    // Under a guarded mutation: the mutation itself runs (once), the nested field is refused.
    const key = randomUUID();
    const viaMutation = await app.post(
      { query: 'mutation($id: String!) { issue(id: $id) { id note } }', variables: { id } },
      key,
    );
    expect(viaMutation.errors).toHaveLength(1);
    expect(viaMutation.errors[0].path).toEqual(['issue', 'note']);
    expect(viaMutation.errors[0].message).toContain('ReceiptResolver.note()');
    expect(viaMutation.errors[0].message).toContain('Receipt.note of a mutation operation');
    expect(ledger.count(`issue:${id}`)).toBe(1);
    expect(ledger.count('note')).toBe(0);
  });

  it('fingerprint: a function is ignored for mutations (never called; other arguments: IDEMPOTENCY_KEY_REUSED)', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const q = 'mutation($t: String!, $a: Int!) { withFunction(tag: $t, amount: $a) }';
    expect(await app.post({ query: q, variables: { t: tag, a: 1 } }, key)).toEqual({ data: { withFunction: 1 } });
    expect(await app.post({ query: q, variables: { t: tag, a: 1 } }, key)).toEqual({ data: { withFunction: 1 } });
    // Were the function used, this would share its constant fingerprint and replay.
    const other = await app.post({ query: q, variables: { t: tag, a: 2 } }, key);
    expect(other.errors?.[0]?.extensions).toMatchObject({ code: CODES.keyReused, status: 422 });
    expect(fingerprintFunction).not.toHaveBeenCalled();
    expect(ledger.count(`fn:${tag}`)).toBe(1);
  });

  it('fingerprint: a strategy is used for mutations', async () => {
    const key = randomUUID();
    const tag = randomUUID();
    const calls = fieldOnly.calls;
    const q = 'mutation($t: String!, $a: Int!) { withStrategy(tag: $t, amount: $a) }';
    expect(await app.post({ query: q, variables: { t: tag, a: 1 } }, key)).toEqual({ data: { withStrategy: 1 } });
    // The strategy ignores the arguments: other arguments under the key replay, not a refusal.
    expect(await app.post({ query: q, variables: { t: tag, a: 2 } }, key)).toEqual({ data: { withStrategy: 1 } });
    expect(fieldOnly.calls).toBe(calls + 2);
    expect(ledger.count(`strategy:${tag}`)).toBe(1);
  });
});
