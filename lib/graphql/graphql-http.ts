import { isRawResponse, signalWhenClientGone } from '../calls/client-gone';
import type { IdempotencyRequest } from '../interfaces/idempotency-options.interface';

/*
 * The HTTP exchange behind a GraphQL operation, found in the GraphQL context value: Nest's Apollo
 * and Mercurius drivers put the request at `context.req` (Express request, or Fastify request);
 * Mercurius adds `context.reply`.
 */

/** The HTTP request of a GraphQL context, when it has one. @internal */
export function graphqlRequestOf(graphqlContext: unknown): IdempotencyRequest | undefined {
  if (typeof graphqlContext !== 'object' || graphqlContext === null) return undefined;
  const ctx = graphqlContext as { req?: unknown; request?: unknown };
  const req = ctx.req ?? ctx.request;
  return typeof req === 'object' && req !== null && typeof (req as { headers?: unknown }).headers === 'object'
    ? req
    : undefined;
}

/**
 * A signal that aborts when the client's connection closes before its response was sent (it
 * stopped waiting), or `undefined` when the response cannot be found.
 * @internal
 */
export function clientGoneSignal(
  graphqlContext: unknown,
  req: IdempotencyRequest | undefined,
): AbortSignal | undefined {
  const ctx = (graphqlContext ?? {}) as { reply?: { raw?: unknown }; res?: { raw?: unknown } };
  const raw = [ctx.reply?.raw, ctx.res?.raw, ctx.res, req?.res].find(isRawResponse);
  return raw === undefined ? undefined : signalWhenClientGone(raw);
}
