import { HttpException } from '@nestjs/common';
import { IDEMPOTENCY_PROBLEM_TYPES } from '../core/problem-types';
import type { ProblemDetails } from '../calls/problem-details';

/**
 * The HTTP exceptions `@Idempotent()` throws instead of answering itself when `throwProblems` is
 * on, so the app's own exception filters shape the answer. Each carries the RFC 9457 `problem`
 * (also its `getResponse()`), with its status; `Retry-After` is already set on the response for
 * 409 and 503.
 */
export class IdempotencyProblemException extends HttpException {
  constructor(readonly problem: ProblemDetails) {
    super({ ...problem }, problem.status);
  }

  /** The exception class for a problem. @internal */
  static of(problem: ProblemDetails): IdempotencyProblemException {
    const Exception = BY_TYPE[problem.type] ?? IdempotencyProblemException;
    return new Exception(problem);
  }
}

/** 400: the route requires a key and none was sent. */
export class IdempotencyKeyMissingException extends IdempotencyProblemException {}
/** 400: the key header is malformed (empty, too long, bad characters, sent twice). */
export class IdempotencyKeyInvalidException extends IdempotencyProblemException {}
/** 409: a request with this key is still being processed. */
export class IdempotencyInFlightException extends IdempotencyProblemException {}
/** 422: the key was already used for a different request. */
export class IdempotencyKeyReusedException extends IdempotencyProblemException {}
/** 503: the store could not be reached, or the result could not be recorded yet. */
export class IdempotencyStoreUnavailableException extends IdempotencyProblemException {}

const BY_TYPE: Record<string, new (problem: ProblemDetails) => IdempotencyProblemException> = {
  [IDEMPOTENCY_PROBLEM_TYPES.keyMissing]: IdempotencyKeyMissingException,
  [IDEMPOTENCY_PROBLEM_TYPES.keyInvalid]: IdempotencyKeyInvalidException,
  [IDEMPOTENCY_PROBLEM_TYPES.inFlight]: IdempotencyInFlightException,
  [IDEMPOTENCY_PROBLEM_TYPES.keyReused]: IdempotencyKeyReusedException,
  [IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable]: IdempotencyStoreUnavailableException,
};
