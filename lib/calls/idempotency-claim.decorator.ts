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
    if (args[indexes[i]] === PENDING_CLAIM) args[indexes[i]] = claim;
  }
}
