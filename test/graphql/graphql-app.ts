/**
 * A real Nest GraphQL server for the resolver suites: Apollo on Express, or Mercurius on Fastify,
 * with mutations under `@Idempotent()`, listening on a random port.
 */
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { type CanActivate, type ExecutionContext, Injectable, type INestApplication, Module } from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import {
  Args,
  Field,
  GqlExecutionContext,
  GraphQLModule,
  Int,
  Mutation,
  ObjectType,
  Query,
  Resolver,
} from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import {
  type IdempotencyClaim as Claim,
  IdempotencyClaim,
  IdempotencyModule,
  type IdempotencyStore,
  Idempotent,
} from '../../lib';
import { AtMostOnceLedger } from '../../lib/testing';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export type GraphqlServer = 'apollo-express' | 'mercurius-fastify';

export const ledger = new AtMostOnceLedger();
let runs = 0;

@ObjectType()
class Payment {
  @Field() id!: string;
  @Field(() => Int) amount!: number;
  @Field(() => Int) run!: number;
  @Field() createdAt!: Date;
}

@Resolver(() => Payment)
class PaymentsResolver {
  @Query(() => String)
  hello(): string {
    ledger.record('hello');
    return 'hi';
  }

  @Mutation(() => Payment)
  @Idempotent()
  async charge(
    @Args('amount', { type: () => Int }) amount: number,
    @Args('tag') tag: string,
    @Args('delayMs', { type: () => Int, nullable: true }) delayMs?: number,
  ): Promise<Payment> {
    const run = ledger.record(`charge:${tag}`);
    await sleep(delayMs ?? 0);
    return { id: `ch_${++runs}`, amount, run, createdAt: new Date(0) };
  }

  @Idempotent({ key: (args: { orderId: string }) => args.orderId })
  @Mutation(() => Int)
  placeOrder(@Args('orderId') orderId: string, @Args('qty', { type: () => Int }) qty: number): number {
    return ledger.record(`order:${orderId}`) * 100 + qty;
  }

  @Mutation(() => String)
  @Idempotent()
  claimed(@Args('tag') tag: string, @IdempotencyClaim() claim?: Claim): string {
    ledger.record(`claimed:${tag}`);
    return JSON.stringify({ key: claim?.key.toString() ?? null, token: claim?.fencingToken.toString() ?? null });
  }

  // No parameter decorators: gets (root, args, context, info) as without @Idempotent().
  @Mutation(() => Int)
  @Idempotent()
  bare(...raw: unknown[]): number {
    const info = raw[3] as { fieldName?: string } | undefined;
    return raw.length === 4 && info?.fieldName === 'bare' ? ledger.record('bare') : -1;
  }
}

/** `@Idempotent()` on the resolver class: its mutations are guarded, its queries are not. */
@Resolver()
@Idempotent()
class CountersResolver {
  @Query(() => Int)
  peek(): number {
    return ledger.record('peek');
  }

  @Mutation(() => Int)
  bump(@Args('by', { type: () => Int }) by: number): number {
    return ledger.record('bump') * 1000 + by;
  }
}

/** Sets `request.user` from an `x-user` header, as an authentication guard would. */
@Injectable()
class UserFromHeader implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = GqlExecutionContext.create(context).getContext<{
      req: { headers: Record<string, string>; user?: object };
    }>().req;
    const user = req.headers['x-user'];
    // `bigint:<n>`: a bigint id (Prisma, TypeORM); `no-id`: a user the default scope cannot name.
    if (user === 'no-id') req.user = { email: 'x@example.com' };
    else if (user?.startsWith('bigint:')) req.user = { id: BigInt(user.slice(7)) };
    else if (user !== undefined) req.user = { id: user };
    return true;
  }
}

export interface GraphqlFixture {
  /** Posts one operation with the given headers; answers the parsed body. */
  post(
    query: string,
    headers?: Record<string, string>,
    variables?: Record<string, unknown>,
  ): Promise<{ data?: Record<string, unknown> | null; errors?: GraphqlError[] }>;
  close(): Promise<void>;
}

export interface GraphqlError {
  message: string;
  path?: string[];
  extensions?: Record<string, unknown>;
}

/** Starts the GraphQL server with `store`. */
export async function startGraphqlApp(server: GraphqlServer, store: IdempotencyStore): Promise<GraphqlFixture> {
  const graphql =
    server === 'apollo-express'
      ? GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, playground: false })
      : // cache: false: Mercurius loads its query cache with import(), which Jest's CommonJS runtime cannot run.
        GraphQLModule.forRoot<MercuriusDriverConfig>({ driver: MercuriusDriver, autoSchemaFile: true, cache: false });

  @Module({
    imports: [IdempotencyModule.forRoot({ store, leaseMs: 2_000 }), graphql],
    providers: [PaymentsResolver, CountersResolver, { provide: APP_GUARD, useClass: UserFromHeader }],
  })
  class AppModule {}

  const app: INestApplication =
    server === 'apollo-express'
      ? await NestFactory.create(AppModule, { logger: false })
      : await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = `${await app.getUrl()}/graphql`.replace('[::1]', '127.0.0.1');
  return {
    post: async (query, headers = {}, variables) => {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ query, variables }),
      });
      return (await response.json()) as { data?: Record<string, unknown> | null; errors?: GraphqlError[] };
    },
    close: () => app.close(),
  };
}
