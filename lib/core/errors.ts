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
