/** Metadata key under which `@Idempotent()` stores its options (on a method or a class). */
export const IDEMPOTENT_METADATA = 'nestjs-idempotent:options';

/** Injection token of the module-wide options (resolved, defaults applied). */
export const IDEMPOTENCY_OPTIONS = Symbol.for('nestjs-idempotent:module-options');

/** The request header that carries the client's key, as the IETF draft names it. */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

/** Set to `true` on every replayed response. */
export const IDEMPOTENT_REPLAYED_HEADER = 'Idempotent-Replayed';

/** Processing lease: 10 s, renewed every third of it while the handler runs. */
export const DEFAULT_LEASE_MS = 10_000;

/** Replay window: 24 h. */
export const DEFAULT_TTL_MS = 86_400_000;

/** Largest response body stored for replay: 1 MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

/** `Retry-After` of 409 and 503 answers, in seconds. */
export const DEFAULT_RETRY_AFTER_SECONDS = 1;

/**
 * Response headers stored and replayed by default (extended by `replayHeaders`). `Set-Cookie` is
 * never stored, whatever the options say.
 */
export const DEFAULT_REPLAY_HEADERS: readonly string[] = Object.freeze([
  'Content-Type',
  'Location',
  'Content-Location',
  'ETag',
  'Last-Modified',
  'Link',
  'Cache-Control',
]);

/** Media type of the error bodies (RFC 9457). */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export { IDEMPOTENCY_PROBLEM_TYPES } from './core/problem-types';
