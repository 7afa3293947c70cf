/**
 * Every outcome the library reports, as events, span attributes and metric attributes. The names
 * are those of `executeOrReplay`'s results (`executed`, `replayed`, `in-flight`,
 * `fingerprint-mismatch`), plus what else can happen to a request.
 *
 * Each request ends with exactly one of the first eight (`terminal: true`); the others may
 * happen on the way, or after the answer was sent.
 */
export type IdempotencyOutcome =
  /** The handler ran and its response (or a cached error) was stored, then sent. */
  | 'executed'
  /** A stored response was replayed. */
  | 'replayed'
  /** Another request holds the key (409). */
  | 'in-flight'
  /** The key was used for a different request (422). */
  | 'fingerprint-mismatch'
  /** The handler threw and the key was released for a retry. */
  | 'released'
  /**
   * The handler ran but its result could not be stored in time (503): the key stays held and the
   * store is retried in the background (`completion-recovered` or `completion-abandoned` follow).
   */
  | 'deferred'
  /** The store failed when claiming (503); the handler did not run. */
  | 'store-error'
  /** The store failed and `failOpen` let the handler run without idempotency. */
  | 'fail-open'
  /** The lease could not be kept while the handler ran. */
  | 'lease-lost'
  /** The lease ran out before the result was stored, with nobody on the key: it is stored under a new claim. */
  | 'key-expired'
  /** A completion was refused because the lease had been taken over (fencing). */
  | 'stale-completion'
  /** A deferred result was stored after all: retries now replay it. */
  | 'completion-recovered'
  /** A deferred result was given up (another request holds the key, the replay window passed, or shutdown). */
  | 'completion-abandoned';

/** What `onEvent` receives. Keys appear only as `keyHash`; bodies never. */
export interface IdempotencyEvent {
  readonly type: IdempotencyOutcome;
  /** Whether this is the request's final outcome (one per request). */
  readonly terminal: boolean;
  /**
   * Whether a stored response was replayed (`type` is `replayed`): the handler did not run. Count
   * replays apart from first answers (a replayed 201 created nothing, a replayed 5xx is no new failure).
   */
  readonly replayed: boolean;
  /**
   * First 12 hex digits of a keyed hash (HMAC-SHA-256) of the (scoped) key: stable within the
   * process (or across processes given the same `keyHashSecret`), not reversible for guessable keys.
   */
  readonly keyHash: string;
  /** `kind` of the store, e.g. `memory` or `valkey`. */
  readonly store: string;
  /** `METHOD /route/:pattern` for HTTP requests, when known. */
  readonly route?: string;
  /** The fencing token number of the claim, when there is one. */
  readonly fencingToken?: string;
  /** Status code sent or replayed, when there is one. */
  readonly statusCode?: number;
  /** The error behind `store-error`, `deferred`, `lease-lost`, `released` or `completion-abandoned`. */
  readonly error?: unknown;
}

/** Receives every event; exceptions it throws are caught and logged. */
export type IdempotencyEventHandler = (event: IdempotencyEvent) => void;
