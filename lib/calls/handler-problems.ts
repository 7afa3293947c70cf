import { IdempotencyKeyError } from '../core/errors';
import type { IdempotencyKey } from '../core/idempotency-key';
import { clientKeyFor } from '../core/store-key';
import { Problems, type ProblemDetails } from './problem-details';
import type { ValueRefusal } from './value-runner';

/*
 * The problems of message handlers and resolvers: the same `type`, `title` and `status` as the
 * HTTP problem bodies, with a `detail` that speaks of messages or mutations instead of headers
 * and paths.
 */

/** The call requires a key and has none (400). `where` says where the key was looked for. */
export function keyMissingProblem(where: string): ProblemDetails {
  return { ...Problems.keyMissing(''), detail: `This handler requires an idempotency key (${where}).` };
}

/**
 * The key of a call, from `read` (which may throw `IdempotencyKeyError` for a malformed key): the
 * key, the 400 problem to answer with, or `undefined` when the call has no key and runs unguarded.
 * `missingWhere` says where the key was looked for.
 */
export function callKeyOf(
  read: () => unknown,
  required: boolean,
  missingWhere: string,
  maxKeyLength?: number,
): IdempotencyKey | ProblemDetails | undefined {
  try {
    const text = read();
    if (text === undefined || text === null) return required ? keyMissingProblem(missingWhere) : undefined;
    if (typeof text !== 'string') throw new IdempotencyKeyError('INVALID_KEY', 'the key must be a string');
    return clientKeyFor(text, maxKeyLength);
  } catch (error) {
    if (!(error instanceof IdempotencyKeyError)) throw error;
    return keyInvalidProblem(error.message);
  }
}

/** The key is malformed (400). */
export function keyInvalidProblem(reason: string): ProblemDetails {
  return { ...Problems.keyInvalid('', reason), detail: `The idempotency key is not valid: ${reason}.` };
}

/**
 * The problem of a refused call. `what` names what a reused key was used for, e.g.
 * `message (pattern or data)`.
 */
export function refusalProblem(reason: ValueRefusal, what: string, detail?: string): ProblemDetails {
  switch (reason) {
    case 'in-flight':
      return {
        ...Problems.inFlight(),
        detail: `A ${what.split(' ')[0]} with this idempotency key is still being processed; retry later.`,
      };
    case 'key-reused':
      return {
        ...Problems.keyReused(),
        detail: detail ?? `This idempotency key was already used for a different ${what}.`,
      };
    case 'store-unavailable':
      return Problems.storeUnavailable();
    case 'completion-failed':
      return Problems.completionFailed();
    case 'record-unreadable':
      return Problems.recordUnreadable();
    case 'unsupported-result':
      return Problems.unsupportedResult(detail ?? 'The result cannot be stored for replay as JSON.');
    case 'response-too-large':
      return {
        ...Problems.responseTooLarge(),
        detail: `The ${what.split(' ')[0]} with this idempotency key was processed, but its result was too large to be stored for replay.`,
      };
  }
}
