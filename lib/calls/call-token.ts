import type { ExecutionContext } from '@nestjs/common';

/**
 * An object that stands for one call of a handler, the same for everything that sees the call's
 * ExecutionContext (the route wrapper, `@IdempotencyClaim()`, an interceptor): the request for
 * HTTP; the transport context (`@Ctx()`, one per message) for a message handler, else its data;
 * the `info` of a resolver (one per field resolution). `undefined` when the call has none.
 * @internal
 */
export function callToken(context: ExecutionContext): object | undefined {
  switch (context.getType<string>()) {
    case 'rpc':
      return objectOrUndefined(context.getArgByIndex(1)) ?? objectOrUndefined(context.getArgByIndex(0));
    case 'graphql':
      return objectOrUndefined(context.getArgByIndex(3));
    default:
      return objectOrUndefined(context.getArgByIndex(0));
  }
}

function objectOrUndefined(value: unknown): object | undefined {
  return (typeof value === 'object' && value !== null) || typeof value === 'function' ? value : undefined;
}
