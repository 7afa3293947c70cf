/**
 * The `type` of each RFC 9457 problem this library answers with (HTTP problem bodies, RPC errors,
 * `IdempotencyConflictError`). Clients should branch on these, not on `title` or `detail`.
 */
export const IDEMPOTENCY_PROBLEM_TYPES = Object.freeze({
  /** 400: the route requires a key and none was sent. */
  keyMissing: 'urn:nestjs-idempotent:problem:key-missing',
  /** 400: empty, too long, bad characters, malformed sf-string, or the header sent twice. */
  keyInvalid: 'urn:nestjs-idempotent:problem:key-invalid',
  /** 409: a request with this key is still being processed. */
  inFlight: 'urn:nestjs-idempotent:problem:in-flight',
  /** 422: the key was used for a different request (method, path, query or body). */
  keyReused: 'urn:nestjs-idempotent:problem:key-reused',
  /** 413: the original response was too large to store; the request was processed. */
  responseTooLarge: 'urn:nestjs-idempotent:problem:response-too-large',
  /** 503: the idempotency store could not be reached, or the result could not be recorded. */
  storeUnavailable: 'urn:nestjs-idempotent:problem:store-unavailable',
  /** 500: the route's result cannot be stored for replay (a stream, a file, or unserialisable). */
  unsupportedResult: 'urn:nestjs-idempotent:problem:unsupported-result',
  /**
   * 500: the request's principal cannot be named (a `request.user` without a usable id, or a
   * `scope` function that answered something other than an id), so it was not run: run unscoped,
   * it could replay another principal's response. The server's configuration needs the fix.
   */
  scopeInvalid: 'urn:nestjs-idempotent:problem:scope-invalid',
  /**
   * 500: the response stored under the key cannot be opened (`encryption`: an unknown key id, or a
   * record that was tampered with or copied from another key). The request was not run again;
   * the server's keys (or its store) need the fix.
   */
  recordUnreadable: 'urn:nestjs-idempotent:problem:record-unreadable',
});
