import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { IdempotencyClaim as Claim } from '../core/idempotency-claim';
import { IDEMPOTENT_METADATA } from '../idempotency.constants';
import { callToken } from './call-token';

/**
 * The claim a guarded request holds while its handler runs (`@IdempotencyClaim()`), or that
 * `IdempotencyService.run` hands its work.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface IdempotencyClaim extends Claim {}

/** The claim of each request whose handler is running under one. */
const claims = new WeakMap<object, IdempotencyClaim>();

/**
 * Records the claim of a call (its request, or the call token of a message or resolver call, see
 * `callToken`) for its `@IdempotencyClaim()` parameters. @internal
 */
export function setClaim(request: object, claim: IdempotencyClaim): void {
  claims.set(request, claim);
}

/** The claim of a call, when its handler runs under one. @internal */
export function claimOf(request: object): IdempotencyClaim | undefined {
  return claims.get(request);
}

const CLAIM_PARAMETERS = 'nestjs-idempotent:claim-parameters';

/** Stands in for the claim until the route's wrapper, which runs after Nest resolved the parameters, has one. */
const PENDING_CLAIM: unique symbol = Symbol('pending claim');

const claimParameter = createParamDecorator(
  (_data: unknown, context: ExecutionContext) => {
    const call = callToken(context);
    const claim = call === undefined ? undefined : claimOf(call);
    if (claim !== undefined) return claim;
    const guarded =
      Reflect.getMetadata(IDEMPOTENT_METADATA, context.getHandler()) !== undefined ||
      Reflect.getMetadata(IDEMPOTENT_METADATA, context.getClass()) !== undefined;
    return guarded ? PENDING_CLAIM : undefined;
  },
  [
    (target: object, key: string | symbol | undefined, index: number) => {
      const owner = (target as { constructor: object }).constructor;
      const indexes = (Reflect.getMetadata(CLAIM_PARAMETERS, owner, key as string) ?? []) as number[];
      Reflect.defineMetadata(CLAIM_PARAMETERS, [...indexes, index], owner, key as string);
    },
  ],
);

/**
 * Hands the handler the claim its request holds: the client's key, the scoped store key, the
 * fencing token and a signal that aborts when the lease is lost. `undefined` when the request runs
 * unguarded (no key on a route that does not require one, or `failOpen`). Works on HTTP routes,
 * message and event handlers, and mutation resolvers.
 *
 * ```ts
 * @Post()
 * @Idempotent()
 * create(@Body() dto: CreateDto, @IdempotencyClaim() claim?: IdempotencyClaim) { ... }
 * ```
 */
export function IdempotencyClaim(): ParameterDecorator {
  return claimParameter();
}

/** The parameter indexes of a method that take `@IdempotencyClaim()`. @internal */
export function claimParameterIndexes(controller: object, methodName: string | symbol): readonly number[] {
  return (Reflect.getMetadata(CLAIM_PARAMETERS, controller, methodName as string) ?? []) as number[];
}

/** Whether a method has an `@IdempotencyClaim()` parameter. @internal */
export function hasClaimParameter(controller: object, methodName: string | symbol): boolean {
  return claimParameterIndexes(controller, methodName).length > 0;
}

/** Puts the request's claim (or `undefined`) in place of the stand-ins in `args`. @internal */
export function fillClaimArguments(args: unknown[], indexes: readonly number[], request: object | undefined): void {
  const claim = request === undefined ? undefined : claimOf(request);
  for (let i = 0; i < indexes.length; i++) {
    const at = indexes[i];
    if (args[at] === PENDING_CLAIM) args[at] = claim;
    else if (args[at] === PENDING_TRANSACTION) args[at] = claim?.transaction;
  }
}

const TRANSACTION_PARAMETERS = 'nestjs-idempotent:transaction-parameters';

/** Stands in for the transaction until the handler's wrapper has claimed the key and opened it. */
const PENDING_TRANSACTION: unique symbol = Symbol('pending transaction');

const transactionParameter = createParamDecorator(
  (_data: unknown, context: ExecutionContext) => {
    const call = callToken(context);
    const claim = call === undefined ? undefined : claimOf(call);
    if (claim !== undefined) return claim.transaction;
    const guarded =
      Reflect.getMetadata(IDEMPOTENT_METADATA, context.getHandler()) !== undefined ||
      Reflect.getMetadata(IDEMPOTENT_METADATA, context.getClass()) !== undefined;
    return guarded ? PENDING_TRANSACTION : undefined;
  },
  [
    (target: object, key: string | symbol | undefined, index: number) => {
      const owner = (target as { constructor: object }).constructor;
      const indexes = (Reflect.getMetadata(TRANSACTION_PARAMETERS, owner, key as string) ?? []) as number[];
      Reflect.defineMetadata(TRANSACTION_PARAMETERS, [...indexes, index], owner, key as string);
      // Filled by the wrapper as the claim is: one list of the parameters it fills.
      const claims = (Reflect.getMetadata(CLAIM_PARAMETERS, owner, key as string) ?? []) as number[];
      Reflect.defineMetadata(CLAIM_PARAMETERS, [...claims, index], owner, key as string);
    },
  ],
);

/**
 * Hands the handler the client of the transaction its work runs in, with a `PostgresStore` (a
 * `pg.PoolClient` inside `BEGIN`): what the handler writes through it commits in the same
 * transaction as its stored response, after a token check, or not at all. The handler throws: it
 * is rolled back. `undefined` when the request runs unguarded. With any other store, a start-up
 * error says why. Works on HTTP routes, message and event handlers, and mutation resolvers.
 *
 * ```ts
 * @Post()
 * @Idempotent({ required: true })
 * async charge(@Body() dto: ChargeDto, @IdempotencyTransaction() tx: PoolClient) {
 *   await tx.query('INSERT INTO charges (id, amount) VALUES ($1, $2)', [dto.id, dto.amount]);
 *   return { charged: dto.amount };
 * }
 * ```
 */
export function IdempotencyTransaction(): ParameterDecorator {
  return transactionParameter();
}

/** Whether a method has an `@IdempotencyTransaction()` parameter. @internal */
export function hasTransactionParameter(controller: object, methodName: string | symbol): boolean {
  return ((Reflect.getMetadata(TRANSACTION_PARAMETERS, controller, methodName as string) ?? []) as number[]).length > 0;
}
