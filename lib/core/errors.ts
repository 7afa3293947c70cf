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
        : 'this idempotency key was already used for a different request: the request given now differs from ' +
            'the one stored with the key (for a queue job, pass its data, not the job: its attempt count changes)',
    );
    this.type = reason === 'in-flight' ? IDEMPOTENCY_PROBLEM_TYPES.inFlight : IDEMPOTENCY_PROBLEM_TYPES.keyReused;
  }
}

/**
 * The value of the first run was larger than `maxResponseBytes`, so only a marker was stored: the
 * work ran once and does not run again within the replay window, and its value cannot be
 * replayed. `IdempotencyService.run` throws it for later calls with the key (the first call got
 * its value); `type` is `IDEMPOTENCY_PROBLEM_TYPES.responseTooLarge`.
 */
export class IdempotencyValueTooLargeError extends IdempotencyError {
  readonly type = IDEMPOTENCY_PROBLEM_TYPES.responseTooLarge;

  constructor(
    /** The size of the value's JSON, in bytes (UTF-8). */
    readonly bytes: number,
    /** `maxResponseBytes` when it was stored. */
    readonly limit: number,
  ) {
    super(
      `the first run's value was too large to store for replay (${bytes} bytes, over maxResponseBytes ${limit}); ` +
        'it ran, and does not run again for this key',
    );
  }
}

/** A store could not perform an operation (unreachable, timed out, refused). */
export class IdempotencyStoreError extends IdempotencyError {}

/**
 * The store was closed (the application shut down, or `close()` was called): it refuses every
 * operation from then on, so nothing claims a key whose earlier claim it can no longer see.
 */
export class StoreClosedError extends IdempotencyStoreError {
  constructor(
    /** Which store, e.g. `memory` or `valkey`. */
    readonly store: string,
    /** The operation refused. */
    readonly operation: string,
  ) {
    super(`the ${store} store is closed (${operation})`);
  }
}

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

/**
 * A write was not acknowledged by as many replicas as the store's durability setting asks, within
 * its time (Valkey `WAIT`), or, with `aof`, not written to the append-only file on the primary
 * and that many replicas (`WAITAOF`). The write happened on the primary, but a failover or
 * restart in the next moments may lose it. A claim that fails this way is removed (best effort)
 * and its work does not run; a completion is retried like any failed completion.
 */
export class StoreDurabilityError extends IdempotencyStoreError {
  /** Replicas that had to acknowledge the write (`durability.replicas`). */
  readonly asked: number;
  /** Replicas that acknowledged it in time (0 when the server refused to wait, see `cause`). */
  readonly acked: number;
  /** Whether acknowledgements meant AOF fsyncs (`durability.aof`, `WAITAOF`) rather than replication (`WAIT`). */
  readonly aof: boolean;
  /** With `aof`: whether the primary itself wrote the write to its AOF in time. */
  readonly localAcked: boolean | undefined;

  constructor(
    /** The operation whose write fell short: `claim` or `complete`. */
    readonly operation: string,
    acks: { readonly asked: number; readonly acked: number; readonly aof?: boolean; readonly localAcked?: boolean },
    options?: { readonly timeoutMs?: number; readonly cause?: unknown },
  ) {
    super(
      durabilityMessage(operation, acks, options),
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.asked = acks.asked;
    this.acked = acks.acked;
    this.aof = acks.aof ?? false;
    this.localAcked = this.aof ? (acks.localAcked ?? false) : undefined;
  }
}

function durabilityMessage(
  operation: string,
  acks: { readonly asked: number; readonly acked: number; readonly aof?: boolean; readonly localAcked?: boolean },
  options: { readonly timeoutMs?: number; readonly cause?: unknown } | undefined,
): string {
  const aof = acks.aof ?? false;
  if (options?.cause !== undefined) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);
    return `${operation}: the server refused to wait for ${aof ? 'AOF writes' : 'replicas'} (${reason})`;
  }
  const within = options?.timeoutMs === undefined ? '' : ` within ${options.timeoutMs} ms`;
  const local = aof && acks.localAcked === false ? ', and the primary did not write it to its own AOF in time' : '';
  return `${operation}: ${acks.acked} of ${acks.asked} replicas ${aof ? 'wrote the write to their AOF' : 'acknowledged the write'}${within}${local}`;
}

/** Data found under a store key that this library cannot decode (corrupt or foreign). */
export class StoreDecodeError extends IdempotencyStoreError {}

/** Serialised data handed to a `fromJSON` that does not describe the expected value. */
export class IdempotencyDecodeError extends IdempotencyError {}

/** The message of a thrown value, whatever was thrown. @internal */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A stored response could not be opened (`encryption`): sealed under a key id not among the
 * configured keys, tampered with, copied from another key, or not sealed at all. The call is
 * refused (HTTP 500, problem `record-unreadable`) and never run again under the key; `type` is
 * `IDEMPOTENCY_PROBLEM_TYPES.recordUnreadable`. Its message says why, never what the record holds.
 */
export class SealedRecordError extends IdempotencyError {
  readonly type = IDEMPOTENCY_PROBLEM_TYPES.recordUnreadable;
}
