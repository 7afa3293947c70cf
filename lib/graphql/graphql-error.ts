import { IDEMPOTENCY_PROBLEM_TYPES } from '../core/problem-types';
import type { ProblemDetails } from '../calls/problem-details';

/**
 * The `extensions.code` of the GraphQL errors a guarded mutation answers with, by problem. Clients
 * should branch on these (or on `extensions.type`, the problem type URN).
 */
export const IDEMPOTENCY_GRAPHQL_ERROR_CODES = Object.freeze({
  /** The mutation requires a key and none was sent (400). */
  keyMissing: 'IDEMPOTENCY_KEY_MISSING',
  /** The key is malformed, or sent twice (400). */
  keyInvalid: 'IDEMPOTENCY_KEY_INVALID',
  /** A mutation with this key is still running (409). */
  inFlight: 'IDEMPOTENCY_IN_FLIGHT',
  /** The key was used for a different mutation or different arguments (422). */
  keyReused: 'IDEMPOTENCY_KEY_REUSED',
  /** The first run's result was too large to store for replay (413); it ran, and is not run again. */
  responseTooLarge: 'IDEMPOTENCY_RESPONSE_TOO_LARGE',
  /** The store could not be reached, or the result could not be recorded yet (503). */
  storeUnavailable: 'IDEMPOTENCY_STORE_UNAVAILABLE',
  /** The resolver's result cannot be stored as JSON (500); it ran, and is not run again. */
  unsupportedResult: 'IDEMPOTENCY_UNSUPPORTED_RESULT',
  /** The request's principal cannot be named (500): the resolver did not run (see the `scope` option). */
  scopeInvalid: 'IDEMPOTENCY_SCOPE_INVALID',
  /** The stored result cannot be opened (500, `encryption`): the resolver did not run again. */
  recordUnreadable: 'IDEMPOTENCY_RECORD_UNREADABLE',
});

const CODE_OF_TYPE: Readonly<Record<string, string>> = Object.freeze({
  [IDEMPOTENCY_PROBLEM_TYPES.keyMissing]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.keyMissing,
  [IDEMPOTENCY_PROBLEM_TYPES.keyInvalid]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.keyInvalid,
  [IDEMPOTENCY_PROBLEM_TYPES.inFlight]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.inFlight,
  [IDEMPOTENCY_PROBLEM_TYPES.keyReused]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.keyReused,
  [IDEMPOTENCY_PROBLEM_TYPES.responseTooLarge]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.responseTooLarge,
  [IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.storeUnavailable,
  [IDEMPOTENCY_PROBLEM_TYPES.unsupportedResult]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.unsupportedResult,
  [IDEMPOTENCY_PROBLEM_TYPES.scopeInvalid]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.scopeInvalid,
  [IDEMPOTENCY_PROBLEM_TYPES.recordUnreadable]: IDEMPOTENCY_GRAPHQL_ERROR_CODES.recordUnreadable,
});

/** The part of `graphql` this library uses. */
interface GraphQLModule {
  GraphQLError: new (message: string, options: { extensions: Record<string, unknown> }) => Error;
}

let graphql: GraphQLModule | undefined;

/** `graphql`, required only when a resolver needs an error from this library (an optional peer). */
function loadGraphQL(): GraphQLModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (graphql ??= require('graphql') as GraphQLModule);
}

/**
 * The `GraphQLError` a guarded mutation throws for `problem`: message `title`, and in
 * `extensions` the code (`IDEMPOTENCY_GRAPHQL_ERROR_CODES`) and the problem fields.
 * @internal
 */
export function graphqlProblem(problem: ProblemDetails): Error {
  const { type, title, status, detail } = problem;
  const code = CODE_OF_TYPE[type] ?? 'IDEMPOTENCY_ERROR';
  return new (loadGraphQL().GraphQLError)(detail ?? title, { extensions: { code, type, title, status, detail } });
}
