import type { ModuleMetadata, Type } from '@nestjs/common';
import type { Fingerprint } from '../core/fingerprint';
import type { FingerprintStrategy } from '../core/fingerprint-strategy';
import type { ProblemBodyRenderer } from '../calls/problem-details';
import type { IdempotencyEventHandler } from '../observability/idempotency-event';
import type { IdempotencyStore } from '../core/idempotency-store';
import type { IdempotencyEncryptionOptions } from '../core/response-sealer';

/**
 * The request object of the platform in use (Express `Request` or `FastifyRequest`). Typed
 * loosely so that neither platform package is needed to compile against this library.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type IdempotencyRequest = any;

/** Computes the fingerprint of a request; see {@link IdempotencyOptions.fingerprint}. */
export type FingerprintFunction = (request: IdempotencyRequest) => Fingerprint;

/** Names the principal a key belongs to; see {@link IdempotencyOptions.scope}. */
export type ScopeFunction = (request: IdempotencyRequest) => string | number | bigint | null | undefined;

/** Picks the thrown errors whose responses are stored; see {@link IdempotencyOptions.cacheErrors}. */
export type CacheErrorsOption = boolean | readonly number[] | ((error: unknown) => boolean);

/** Options of `@Idempotent()`, and the module-wide defaults they override. */
export interface IdempotencyOptions {
  /**
   * The request header carrying the client's key. Read as an RFC 8941 sf-string (`"abc"`) or as
   * the bare value (`abc`).
   * @default 'Idempotency-Key'
   */
  headerName?: string;
  /**
   * Whether a request without a key is refused with 400. When false, such a request runs the
   * handler normally and nothing is stored.
   * @default false
   */
  required?: boolean;
  /**
   * The processing lease, in ms: how long a claim blocks the key if its process dies. While the
   * handler runs, the lease is renewed every third of this.
   * @default 10_000
   */
  leaseMs?: number;
  /**
   * The replay window, in ms: how long a completed response is kept and replayed.
   * @default 86_400_000 (24 h)
   */
  ttlMs?: number;
  /**
   * How long, in ms, a request whose key is in flight (same fingerprint) waits for the first
   * request to end instead of answering 409 at once: the first completes -> the waiter gets the
   * replay; it is released (its handler threw) -> the waiter claims the key and runs; still in
   * flight at the bound -> 409. A waiter whose client goes away stops waiting and runs nothing.
   * @default 0 (answer 409 at once)
   */
  waitMs?: number;
  /**
   * How a request is fingerprinted: a {@link FingerprintStrategy} fed with `"<METHOD> <path?query>"`
   * and the body (raw bytes when Nest keeps `rawBody`, else canonical JSON of the parsed body), or a
   * function of the request that returns the {@link Fingerprint} itself. A retry whose
   * fingerprint differs from the original's is answered with 422.
   * @default new DefaultFingerprintStrategy() (XXH3-128)
   */
  fingerprint?: FingerprintStrategy | FingerprintFunction;
  /**
   * The principal a key belongs to: keys of different principals never meet. Return a non-empty
   * string, a finite number or a bigint; `undefined` (or `null`) for "no principal". Anything else
   * (an object such as a Mongo `ObjectId`, an array, `''`) refuses the request with a 500 problem
   * and one log line, never runs it unscoped. `false` turns scoping off for the route.
   * @default request.user.id, else .sub, else .userId (a request.user without any of them is refused)
   */
  scope?: ScopeFunction | false;
  /**
   * Response headers stored and replayed on top of the default allowlist (Content-Type,
   * Location, Content-Location, ETag, Last-Modified, Link, Cache-Control). `Set-Cookie` is never
   * stored, even if listed. `false` stores and replays no headers at all: a replay carries the
   * status code, the body and `Idempotent-Replayed: true`, nothing else.
   * @default []
   */
  replayHeaders?: readonly string[] | false;
  /**
   * Longest client key accepted, in UTF-8 bytes (from 1 to 8192); a longer one is answered with
   * 400 (`key-invalid`). Keys over 255 bytes (when this is raised) are stored under a SHA-256
   * digest of the key, so the store's key stays short.
   * @default 255
   */
  maxKeyLength?: number;
  /**
   * Which errors thrown by the handler are stored (and replayed) instead of releasing the key:
   * `true` for all, a list of HTTP status codes, or a predicate. The stored response is the one
   * Nest's built-in exception filter renders.
   * @default false (every thrown error releases the key, so a retry runs the handler again)
   */
  cacheErrors?: CacheErrorsOption;
  /**
   * When the store cannot be reached for the claim: `false` answers 503 and does not run the
   * handler; `true` runs the handler without idempotency and logs a warning.
   * @default false
   */
  failOpen?: boolean;
  /**
   * Largest response body stored, in bytes. A larger response still reaches the first caller in
   * full, but only a 413 marker is stored: retries get 413 and the handler does not run again.
   * @default 1_048_576 (1 MiB)
   */
  maxResponseBytes?: number;
  /**
   * The `Retry-After` of 409 (in flight) and 503 (store unavailable) answers, in seconds.
   * @default 1
   */
  retryAfterSeconds?: number;
  /**
   * Renders the body of the problem answers (400, 409, 413, 422, 503) in the app's own error shape:
   * it receives the RFC 9457 problem (`type`, `title`, `status`, `detail`) and its return value is
   * sent as JSON (`application/json`). Status codes and `Retry-After` stay as they are.
   * @default none: RFC 9457 `application/problem+json`
   */
  problemBody?: ProblemBodyRenderer;
  /**
   * Throw `IdempotencyProblemException`s (`IdempotencyInFlightException`,
   * `IdempotencyKeyReusedException`, ...: HttpExceptions carrying the problem) instead of answering,
   * so the app's exception filters shape the answer. `Retry-After` is set on the response first.
   * @default false
   */
  throwProblems?: boolean;
  /**
   * Microservice message handlers and GraphQL resolvers only: the client's key, from the message
   * data (or the resolver's arguments) and the context; `undefined` for none.
   * @default `data.idempotencyKey` for messages; the HTTP request's key header for resolvers
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  key?: (input: any, context: any) => string | undefined;
}

/** `IdempotencyModule.forRoot({ store, ...options })`. */
export interface IdempotencyModuleOptions extends IdempotencyOptions {
  /** The store that holds keys and responses. */
  store: IdempotencyStore;
  /**
   * Whether `store.close()` is called when the application shuts down (after the HTTP server has
   * stopped). A store handed to `forRoot` belongs to the caller, except a `MemoryStore`, whose
   * entries live and die with the application; one returned by a `forRootAsync` factory was
   * created for the module, so the module closes it. `false` keeps a `MemoryStore` that several
   * apps share (or an app restarted on it in a test).
   * @default false for `forRoot` (true for a `MemoryStore`), true for `forRootAsync`
   */
  closeStoreOnShutdown?: boolean;
  /**
   * Receives a typed event for every outcome (claimed, replayed, in flight, fingerprint mismatch,
   * stale completion, store error, ...), e.g. to feed Prometheus or alerts without OpenTelemetry.
   * Keys appear only as a hash; an exception thrown here is logged and never breaks the request.
   * Module-wide only.
   */
  onEvent?: IdempotencyEventHandler;
  /**
   * OpenTelemetry spans (per request and per store operation) and metrics, through
   * `@opentelemetry/api` when it is installed; without it this does nothing. Module-wide only.
   * @default true
   */
  telemetry?: boolean;
  /**
   * The secret of the keyed hash (HMAC-SHA-256) that stands in for keys in logs, spans and events.
   * Set the same value on every instance to correlate a key across them; it applies process-wide.
   * @default a random secret per process
   */
  keyHashSecret?: string;
  /**
   * Seals every stored response (status code, headers and body; values of `IdempotencyService.run`,
   * message handlers and resolvers too) with AES-256-GCM before the store sees it, bound to its
   * store key: `{ keys: [{ id, key }] }` with 32-byte keys. The first key seals; every listed key
   * opens, so keys rotate by putting a new one first. A record that cannot be opened answers 500
   * (`record-unreadable`) and is never run again. Module-wide only; see docs/security.md.
   * @default none: responses are stored as they are
   */
  encryption?: IdempotencyEncryptionOptions;
}

/** What an async configuration resolves to: the store, or the store with options. */
export type IdempotencyModuleConfig = IdempotencyModuleOptions | IdempotencyStore;

/** A provider class that makes the module's configuration (`forRootAsync({ useClass })` / `useExisting`). */
export interface IdempotencyOptionsFactory {
  createIdempotencyOptions(): IdempotencyModuleConfig | Promise<IdempotencyModuleConfig>;
}

/**
 * `IdempotencyModule.forRootAsync(...)`: exactly one of `useFactory` (with `inject`), `useClass`
 * or `useExisting`.
 */
export interface IdempotencyModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Returns the store, or the store with options. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  useFactory?: (...args: any[]) => IdempotencyModuleConfig | Promise<IdempotencyModuleConfig>;
  /** Providers handed to `useFactory`, in order. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  inject?: any[];
  /** A class the module instantiates (with injection) to make the configuration. */
  useClass?: Type<IdempotencyOptionsFactory>;
  /** A provider, available in the module's imports, that makes the configuration. */
  useExisting?: Type<IdempotencyOptionsFactory>;
  /**
   * Whether the module is global, so `@Idempotent()` and `IdempotencyStore` work everywhere
   * without importing it again.
   * @default true
   */
  isGlobal?: boolean;
}

/** `forRoot` also takes `isGlobal`. */
export interface IdempotencyModuleRootOptions extends IdempotencyModuleOptions {
  /**
   * Whether the module is global.
   * @default true
   */
  isGlobal?: boolean;
}
