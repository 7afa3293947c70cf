import { IDEMPOTENCY_PROBLEM_TYPES } from './problem-types';

/** Codes carried by {@link IdempotencyKeyError}. */
export type IdempotencyKeyErrorCode = 'EMPTY_KEY' | 'KEY_TOO_LONG' | 'INVALID_KEY' | 'EMPTY_SCOPE' | 'INVALID_SCOPE';

/** Base class of every error this library throws on purpose. */
export class IdempotencyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An idempotency key or scope that fails validation. */
export class IdempotencyKeyError extends IdempotencyError {
  constructor(
    readonly code: IdempotencyKeyErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Why an idempotent call was refused: the key belongs to a different request, or is still in flight. */
export type IdempotencyConflictReason = 'key-reused' | 'in-flight';

/**
 * `IdempotencyService.run` was refused: the key was used for a different request (`key-reused`),
 * or is still in flight after `waitMs` (`in-flight`). `type` is the matching
 * `IDEMPOTENCY_PROBLEM_TYPES` URN. (Message handlers answer conflicts with an `RpcException`,
 * resolvers with a `GraphQLError`.)
 */
export class IdempotencyConflictError extends IdempotencyError {
  readonly type: string;

  constructor(readonly reason: IdempotencyConflictReason) {
    super(
      reason === 'in-flight'
        ? 'a call with this idempotency key is still in progress; retry later'
        : 'this idempotency key was already used for a different request',
    );
    this.type = reason === 'in-flight' ? IDEMPOTENCY_PROBLEM_TYPES.inFlight : IDEMPOTENCY_PROBLEM_TYPES.keyReused;
  }
}

/** A store could not perform an operation (unreachable, timed out, refused). */
export class IdempotencyStoreError extends IdempotencyError {}

/** A bounded store is full of live entries and refuses new claims. */
export class StoreFullError extends IdempotencyStoreError {
  constructor(
    message: string,
    /** The bound that was reached. */
    readonly limit: { readonly maxEntries?: number; readonly maxBytes?: number },
  ) {
    super(message);
  }
}

/** A store operation got no answer within its time limit (paused, overloaded or unreachable server). */
export class StoreTimeoutError extends IdempotencyStoreError {
  constructor(
    readonly operation: string,
    readonly timeoutMs: number,
  ) {
    super(`${operation} got no answer within ${timeoutMs} ms`);
  }
}

/** Data found under a store key that this library cannot decode (corrupt or foreign). */
export class StoreDecodeError extends IdempotencyStoreError {}

/** Serialised data handed to a `fromJSON` that does not describe the expected value. */
export class IdempotencyDecodeError extends IdempotencyError {}
