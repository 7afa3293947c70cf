// The public API of nestjs-idempotent: named exports only.
export { CachedResponse } from './core/cached-response';
export type { CachedResponseInit, CachedResponseJSON } from './core/cached-response';
export { ClaimBuilder, FingerprintedClaim } from './core/claim';
export type { ExecuteResult, SideEffect } from './core/claim';
export {
  IdempotencyConflictError,
  IdempotencyDecodeError,
  IdempotencyError,
  IdempotencyKeyError,
  IdempotencyStoreError,
  StoreDecodeError,
  StoreFullError,
  StoreTimeoutError,
} from './core/errors';
export type { IdempotencyConflictReason, IdempotencyKeyErrorCode } from './core/errors';
export { FencedOutcome } from './core/fenced-outcome';
export { FencingToken } from './core/fencing-token';
export type { FencingTokenJSON } from './core/fencing-token';
export { Fingerprint } from './core/fingerprint';
export { DefaultFingerprintStrategy } from './core/fingerprint-strategy';
export type { FingerprintStrategy } from './core/fingerprint-strategy';
export { IdempotencyEntry } from './core/idempotency-entry';
export type {
  AnyEntry,
  CompletedEntry,
  EntryState,
  IdempotencyEntryJSON,
  ProcessingEntry,
} from './core/idempotency-entry';
export { IdempotencyKey, MAX_KEY_BYTES } from './core/idempotency-key';
export type { ClaimedResult, ExistsResult, InsertResult } from './core/insert-result';
export { CompletionFailedError, LeaseLostError } from './core/lease';
export { IdempotencyStore } from './core/idempotency-store';
export { MemoryStore } from './stores/memory.store';
export type { MemoryStoreOptions } from './stores/memory.store';
export { ValkeyStore } from './stores/valkey.store';
export type { ServerCheck, ServerNodeCheck, ValkeyClient, ValkeyNode, ValkeyStoreOptions } from './stores/valkey.store';
export { canonicalJson } from './core/canonical-json';
export {
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_REPLAY_HEADERS,
  DEFAULT_RETRY_AFTER_SECONDS,
  DEFAULT_TTL_MS,
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_OPTIONS,
  IDEMPOTENCY_PROBLEM_TYPES,
  IDEMPOTENT_METADATA,
  IDEMPOTENT_REPLAYED_HEADER,
  PROBLEM_CONTENT_TYPE,
} from './idempotency.constants';
export { IdempotencyModule } from './idempotency.module';
export { DEFAULT_IDEMPOTENCY_OPTIONS, defaultScope } from './idempotency.providers';
export type { ResolvedIdempotencyOptions } from './idempotency.providers';
export type {
  CacheErrorsOption,
  FingerprintFunction,
  IdempotencyModuleAsyncOptions,
  IdempotencyModuleOptions,
  IdempotencyModuleRootOptions,
  IdempotencyOptions,
  IdempotencyRequest,
  ScopeFunction,
} from './interfaces/idempotency-options.interface';
export { IdempotencyInterceptor } from './http/idempotency.interceptor';
export { Idempotent } from './http/idempotent.decorator';
export { IdempotencyClaim } from './http/idempotency-claim.decorator';
export { parseKeyValue, readKeyHeader } from './http/key-header';
export type { ProblemDetails } from './http/problem-details';
export { storeKeyFor } from './core/store-key';
export { IDEMPOTENCY_GRAPHQL_ERROR_CODES } from './graphql/graphql-error';
export { IdempotencyService } from './service/idempotency.service';
export type { IdempotencyRunOptions, IdempotencyRunResult } from './service/idempotency.service';
export { IdempotencyHealthIndicator } from './health/idempotency-health.indicator';
export type { IdempotencyHealthOptions, IdempotencyHealthResult } from './health/idempotency-health.indicator';
export type { IdempotencyEvent, IdempotencyEventHandler, IdempotencyOutcome } from './observability/idempotency-event';
export { InstrumentedStore } from './observability/instrumented.store';
export { keyHash } from './observability/key-hash';
export { TELEMETRY_ATTRIBUTES, TELEMETRY_NAMES } from './observability/telemetry';
