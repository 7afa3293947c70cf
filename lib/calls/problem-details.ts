import { IDEMPOTENCY_PROBLEM_TYPES, PROBLEM_CONTENT_TYPE } from '../idempotency.constants';

/** An RFC 9457 problem details object, as this library sends it. */
export interface ProblemDetails {
  /** A URI naming the kind of problem; see `IDEMPOTENCY_PROBLEM_TYPES`. */
  type: string;
  /** A short summary of the kind of problem; the same for every occurrence. */
  title: string;
  /** The HTTP status code. */
  status: number;
  /** What went wrong this time, for a human. */
  detail?: string;
}

/** Renders the body of a problem answer in the app's own error shape (the `problemBody` option). */
export type ProblemBodyRenderer = (problem: ProblemDetails) => unknown;

/** A problem ready to send: its status, body text, media type and extra headers. @internal */
export interface PreparedProblem {
  readonly problem: ProblemDetails;
  readonly status: number;
  readonly body: string;
  readonly contentType: string;
  /** `Retry-After`, in seconds, when the client should come back. */
  readonly retryAfter: number | undefined;
}

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/**
 * The answer for `problem`: RFC 9457 `application/problem+json`, or, with a `problemBody`
 * renderer, the JSON of what it returns (`application/json`).
 * @internal
 */
export function prepareProblem(
  problem: ProblemDetails,
  retryAfter?: number,
  render?: ProblemBodyRenderer,
): PreparedProblem {
  if (render === undefined) {
    return Object.freeze({
      problem,
      status: problem.status,
      body: JSON.stringify(problem),
      contentType: PROBLEM_CONTENT_TYPE,
      retryAfter,
    });
  }
  const body = JSON.stringify(render(Object.freeze({ ...problem })));
  if (typeof body !== 'string') throw new TypeError('problemBody must return a value JSON can hold');
  return Object.freeze({ problem, status: problem.status, body, contentType: JSON_CONTENT_TYPE, retryAfter });
}

/** @internal The problems this library answers with. */
export const Problems = {
  keyMissing(headerName: string): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.keyMissing,
      title: 'Idempotency key required',
      status: 400,
      detail: `This route requires an ${headerName} header.`,
    };
  },
  keyInvalid(headerName: string, reason: string): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.keyInvalid,
      title: 'Invalid idempotency key',
      status: 400,
      detail: `The ${headerName} header is not a valid key: ${reason}.`,
    };
  },
  inFlight(): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.inFlight,
      title: 'Request in progress',
      status: 409,
      detail: 'A request with this idempotency key is still being processed; retry later.',
    };
  },
  keyReused(): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.keyReused,
      title: 'Idempotency key reused',
      status: 422,
      detail: 'This idempotency key was already used for a different request (method, path, query or body).',
    };
  },
  responseTooLarge(): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.responseTooLarge,
      title: 'Response too large to replay',
      status: 413,
      detail:
        'The request with this idempotency key was processed, but its response was too large to be stored for replay.',
    };
  },
  storeUnavailable(): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable,
      title: 'Idempotency store unavailable',
      status: 503,
      detail: 'The idempotency store could not be reached, so the request was not processed; retry later.',
    };
  },
  completionFailed(): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable,
      title: 'Idempotency store unavailable',
      status: 503,
      detail: 'The request was processed, but its result could not be recorded; retry with the same key later.',
    };
  },
  scopeInvalid(): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.scopeInvalid,
      title: 'Idempotency scope unknown',
      status: 500,
      detail:
        'The server could not tell which principal this request belongs to, so it did not process it under its idempotency key.',
    };
  },
  recordUnreadable(): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.recordUnreadable,
      title: 'Stored response unreadable',
      status: 500,
      detail:
        'A response is stored for this idempotency key, but the server cannot open it, so the request was not processed again.',
    };
  },
  unsupportedResult(what: string): ProblemDetails {
    return {
      type: IDEMPOTENCY_PROBLEM_TYPES.unsupportedResult,
      title: 'Result cannot be stored',
      status: 500,
      detail: `${what} The handler ran, so this answer is kept for the key: a retry gets it and does not run the handler again.`,
    };
  },
};

export { PROBLEM_CONTENT_TYPE };
