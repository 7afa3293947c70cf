// The public API of nestjs-idempotent: named exports only, each documented in README.md or docs/
// (test/package/public-api.spec.ts compares them). The test kit is the `nestjs-idempotent/testing`
// entry point (lib/testing/index.ts).

// Values of the core
export { CachedResponse } from './core/cached-response';
export type { CachedResponseInit, CachedResponseJSON } from './core/cached-response';
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
export { storeKeyFor } from './core/store-key';
export type { IdempotencyEncryptionKey, IdempotencyEncryptionOptions } from './core/response-sealer';

// Errors
export {
  IdempotencyConflictError,
  IdempotencyDecodeError,
  IdempotencyError,
  IdempotencyKeyError,
  IdempotencyStoreError,
  IdempotencyValueTooLargeError,
  SealedRecordError,
  StoreDecodeError,
  StoreDurabilityError,
  StoreClosedError,
  StoreFullError,
  StoreTimeoutError,
} from './core/errors';
export type { IdempotencyConflictReason, IdempotencyKeyErrorCode } from './core/errors';
export { CompletionFailedError, LeaseLostError } from './core/lease';

// Stores and the claim builder
export { IdempotencyStore } from './core/idempotency-store';
export type { StoreKeyInfo } from './core/idempotency-store';
export type { ClaimedResult, ExistsResult, InsertResult } from './core/insert-result';
export { ClaimBuilder, FingerprintedClaim } from './core/claim';
export type { ExecuteResult, SideEffect } from './core/claim';
export { MemoryStore } from './stores/memory.store';
export type { MemoryStoreOptions } from './stores/memory.store';
export { ValkeyStore } from './stores/valkey.store';
export type { ServerCheck, ServerNodeCheck, ValkeyClient, ValkeyNode, ValkeyStoreOptions } from './stores/valkey.store';
export type { ValkeyDurabilityOptions } from './stores/valkey-durability';
export { PostgresStore } from './stores/postgres.store';
export type {
  PostgresPool,
  PostgresPoolClient,
  PostgresQuery,
  PostgresQueryResult,
  PostgresStoreOptions,
} from './stores/postgres.store';
export { postgresMigrationSql } from './stores/postgres-sql';
export type { PostgresTableOptions } from './stores/postgres-sql';

// The Nest module, decorators and options
export { IdempotencyModule } from './idempotency.module';
export { Idempotent } from './binding/idempotent.decorator';
// The decorator and the claim's interface share the name (a value and a type).
export { IdempotencyClaim, IdempotencyTransaction } from './calls/idempotency-claim.decorator';
export type { IdempotencyTransactionClient } from './core/idempotency-claim';
export type { StoreTransaction, TransactionalStore } from './core/store-transaction';
export { IdempotencyInterceptor } from './binding/idempotency.interceptor';
export { defaultScope } from './idempotency.options';
export type { ResolvedIdempotencyOptions } from './idempotency.options';
export type {
  CacheErrorsOption,
  FingerprintFunction,
  IdempotencyModuleAsyncOptions,
  IdempotencyModuleConfig,
  IdempotencyModuleOptions,
  IdempotencyModuleRootOptions,
  IdempotencyOptions,
  IdempotencyOptionsFactory,
  IdempotencyRequest,
  ScopeFunction,
} from './interfaces/idempotency-options.interface';
export { IdempotencyService } from './service/idempotency.service';
export { IdempotencyAdmin } from './service/idempotency-admin';
export type {
  IdempotencyAdminKeyOptions,
  IdempotencyAdminReleaseOptions,
  IdempotencyKeyInspection,
} from './service/idempotency-admin';
export type { IdempotencyRunOptions, IdempotencyRunResult, Jsonified } from './service/idempotency.service';

// HTTP answers
export {
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_PROBLEM_TYPES,
  IDEMPOTENT_REPLAYED_HEADER,
  PROBLEM_CONTENT_TYPE,
} from './idempotency.constants';
export type { ProblemBodyRenderer, ProblemDetails } from './calls/problem-details';
export {
  IdempotencyInFlightException,
  IdempotencyKeyInvalidException,
  IdempotencyKeyMissingException,
  IdempotencyKeyReusedException,
  IdempotencyProblemException,
  IdempotencyStoreUnavailableException,
} from './http/idempotency-exceptions';

// GraphQL answers (message handlers answer with ProblemDetails in an RpcException)
export { IDEMPOTENCY_GRAPHQL_ERROR_CODES } from './graphql/graphql-error';

// Observability
export { IdempotencyHealthIndicator } from './health/idempotency-health.indicator';
export type { IdempotencyHealthOptions, IdempotencyHealthResult } from './health/idempotency-health.indicator';
export type { IdempotencyEvent, IdempotencyEventHandler, IdempotencyOutcome } from './observability/idempotency-event';
export { TELEMETRY_ATTRIBUTES, TELEMETRY_NAMES } from './observability/telemetry';
export { IDEMPOTENCY_DIAGNOSTICS_CHANNELS } from './observability/diagnostics-channels';
