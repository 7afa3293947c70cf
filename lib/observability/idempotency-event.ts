/** Every outcome the library reports, as events, span attributes and metric attributes. */
export type IdempotencyOutcome =
  /** The key was claimed; the handler runs. */
  | 'claimed'
  /** The handler ran and its response was stored. */
  | 'completed'
  /** A stored response was replayed. */
  | 'replayed'
  /** Another request holds the key (409). */
  | 'in_flight'
  /** The key was used for a different request (422). */
  | 'fingerprint_mismatch'
  /** A completion was refused because the lease had been taken over (fencing). */
  | 'stale_completion'
  /** A completion, touch or removal found nothing stored (the lease ran out unclaimed). */
  | 'key_expired'
  /** The lease could not be kept while the handler ran. */
  | 'lease_lost'
  /** The handler failed and the key was released for a retry. */
  | 'released'
  /** The store failed or timed out. */
  | 'store_error'
  /** The store failed and `failOpen` let the handler run without idempotency. */
  | 'fail_open';

/** What `onEvent` receives. Keys appear only as `keyHash`; bodies never. */
export interface IdempotencyEvent {
  readonly type: IdempotencyOutcome;
  /** First 12 hex digits of the SHA-256 of the (scoped) key. */
  readonly keyHash: string;
  /** `kind` of the store, e.g. `memory` or `valkey`. */
  readonly store: string;
  /** `METHOD /route/:pattern` for HTTP requests, when known. */
  readonly route?: string;
  /** The fencing token number of the claim, when there is one. */
  readonly fencingToken?: string;
  /** Status code sent or replayed, when there is one. */
  readonly statusCode?: number;
  /** The error behind `store_error`, `lease_lost` or `released`. */
  readonly error?: unknown;
}

/** Receives every event; exceptions it throws are caught and logged. */
export type IdempotencyEventHandler = (event: IdempotencyEvent) => void;
