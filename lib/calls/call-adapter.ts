import type { CallHandler, ExecutionContext } from '@nestjs/common';

/** The call should just run: nothing guards it (no `@Idempotent()`, no key, skipped). @internal */
export const PASS: unique symbol = Symbol('pass');
/** The call was answered (a replay, a problem) and must not run. @internal */
export const SENT: unique symbol = Symbol('sent');

/**
 * One kind of call (HTTP requests, microservice messages, GraphQL resolvers) adapted to the claim
 * engine: how its key, principal and fingerprint are read, and how each outcome is answered. The
 * dispatcher (`IdempotencyInterceptor`) picks the adapter by `context.getType()`; adapters know
 * nothing of each other.
 * @internal
 */
export interface CallAdapter {
  /**
   * Guards the call. `invoke` calls the handler and returns what it returns; `next` is the handler
   * as an interceptor gets it. Answers `PASS` when the handler should just run, `SENT` when the
   * call was answered, or a promise of the handler's answer (`undefined` once a response was sent).
   */
  process(
    context: ExecutionContext,
    next: CallHandler,
    invoke: () => unknown,
  ): Promise<unknown> | typeof PASS | typeof SENT;
}
