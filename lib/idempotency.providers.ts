import { Logger, type Provider } from '@nestjs/common';
import { assertDuration } from './core/duration';
import { DefaultFingerprintStrategy } from './core/fingerprint-strategy';
import type { FingerprintStrategy } from './core/fingerprint-strategy';
import {
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_RETRY_AFTER_SECONDS,
  DEFAULT_TTL_MS,
  IDEMPOTENCY_KEY_HEADER,
} from './idempotency.constants';
import type {
  CacheErrorsOption,
  FingerprintFunction,
  IdempotencyModuleAsyncOptions,
  IdempotencyModuleOptions,
  IdempotencyOptions,
  IdempotencyRequest,
  ScopeFunction,
} from './interfaces/idempotency-options.interface';
import { InstrumentedStore } from './observability/instrumented.store';
import type { IdempotencyEventHandler } from './observability/idempotency-event';
import { useKeyHashSecret } from './observability/key-hash';
import { otel } from './observability/telemetry';
import { IdempotencyStore } from './core/idempotency-store';

/** Options with every default applied, as the interceptor uses them. */
export interface ResolvedIdempotencyOptions {
  readonly headerName: string;
  /** `headerName` in lower case, as Node keys request headers. */
  readonly headerKey: string;
  readonly required: boolean;
  readonly leaseMs: number;
  readonly ttlMs: number;
  readonly fingerprint: FingerprintStrategy | FingerprintFunction;
  readonly scope: ScopeFunction | false;
  readonly replayHeaders: readonly string[];
  readonly cacheErrors: CacheErrorsOption;
  readonly failOpen: boolean;
  readonly maxResponseBytes: number;
  readonly retryAfterSeconds: number;
  /** Module-wide only: the event hook. */
  readonly onEvent: IdempotencyEventHandler | undefined;
  /** Module-wide only: whether OpenTelemetry spans and metrics are recorded. */
  readonly telemetry: boolean;
}

/**
 * The default scope: the authenticated principal's `id`, else its `sub`, else its `userId` (the
 * shape Nest's JWT guide gives `request.user`), when there is one.
 */
export function defaultScope(request: IdempotencyRequest): string | number | undefined {
  const user = request?.user;
  if (user === null || typeof user !== 'object') return undefined;
  for (const id of [user.id, user.sub, user.userId]) {
    if ((typeof id === 'string' && id.length > 0) || typeof id === 'number') return id;
  }
  return undefined;
}

/** The module-wide defaults. */
export const DEFAULT_IDEMPOTENCY_OPTIONS: ResolvedIdempotencyOptions = Object.freeze({
  headerName: IDEMPOTENCY_KEY_HEADER,
  headerKey: IDEMPOTENCY_KEY_HEADER.toLowerCase(),
  required: false,
  leaseMs: DEFAULT_LEASE_MS,
  ttlMs: DEFAULT_TTL_MS,
  fingerprint: new DefaultFingerprintStrategy(),
  scope: defaultScope,
  replayHeaders: Object.freeze([]) as readonly string[],
  cacheErrors: false,
  failOpen: false,
  maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
  retryAfterSeconds: DEFAULT_RETRY_AFTER_SECONDS,
  onEvent: undefined,
  telemetry: true,
});

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const OPTION_NAMES = new Set<string>([
  'headerName',
  'required',
  'leaseMs',
  'ttlMs',
  'fingerprint',
  'scope',
  'replayHeaders',
  'cacheErrors',
  'failOpen',
  'maxResponseBytes',
  'retryAfterSeconds',
]);

function fail(where: string, message: string): never {
  throw new TypeError(`${where}: ${message}`);
}

/**
 * Checks idempotency options (route or module-wide) and throws a `TypeError`/`RangeError` naming
 * the bad one, so mistakes show at start-up rather than on the first request.
 * @internal
 */
export function validateOptions(options: IdempotencyOptions, where: string, extra: readonly string[] = []): void {
  if (options === null || typeof options !== 'object') fail(where, 'options must be an object');
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name) && !extra.includes(name)) fail(where, `unknown option "${name}"`);
  }
  const o = options;
  if (o.headerName !== undefined && (typeof o.headerName !== 'string' || !TOKEN.test(o.headerName))) {
    fail(where, 'headerName must be an HTTP header name');
  }
  for (const name of ['required', 'failOpen'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'boolean') fail(where, `${name} must be a boolean`);
  }
  if (o.leaseMs !== undefined) assertDuration(`${where}: leaseMs`, o.leaseMs);
  if (o.ttlMs !== undefined) assertDuration(`${where}: ttlMs`, o.ttlMs);
  for (const name of ['maxResponseBytes', 'retryAfterSeconds'] as const) {
    const value = o[name];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
      throw new RangeError(`${where}: ${name} must be a whole number from 0, got ${String(value)}`);
    }
  }
  if (
    o.fingerprint !== undefined &&
    typeof o.fingerprint !== 'function' &&
    (typeof o.fingerprint !== 'object' || typeof (o.fingerprint as FingerprintStrategy)?.compute !== 'function')
  ) {
    fail(where, 'fingerprint must be a FingerprintStrategy or a function of the request');
  }
  if (o.scope !== undefined && o.scope !== false && typeof o.scope !== 'function') {
    fail(where, 'scope must be a function of the request, or false');
  }
  if (o.replayHeaders !== undefined) {
    if (!Array.isArray(o.replayHeaders) || o.replayHeaders.some((h) => typeof h !== 'string' || !TOKEN.test(h))) {
      fail(where, 'replayHeaders must be a list of HTTP header names');
    }
  }
  const c = o.cacheErrors;
  if (
    c !== undefined &&
    typeof c !== 'boolean' &&
    typeof c !== 'function' &&
    !(Array.isArray(c) && c.every((s) => Number.isInteger(s) && s >= 100 && s <= 999))
  ) {
    fail(where, 'cacheErrors must be a boolean, a list of HTTP status codes, or a predicate');
  }
}

/**
 * `base` with the options `override` sets (those not `undefined`) put on top.
 * @internal
 */
export function mergeOptions(
  base: ResolvedIdempotencyOptions,
  override: IdempotencyOptions | undefined,
): ResolvedIdempotencyOptions {
  if (override === undefined) return base;
  const merged: Record<string, unknown> = { ...base };
  for (const [name, value] of Object.entries(override)) {
    if (value !== undefined && OPTION_NAMES.has(name)) merged[name] = value;
  }
  merged.headerKey = (merged.headerName as string).toLowerCase();
  return Object.freeze(merged) as unknown as ResolvedIdempotencyOptions;
}

/** What the module was configured with. @internal */
export interface IdempotencyModuleState {
  readonly store: IdempotencyStore;
  readonly options: ResolvedIdempotencyOptions;
  readonly closeStoreOnShutdown: boolean;
}

const logger = new Logger('Idempotency');

function moduleState(
  store: IdempotencyStore,
  options: ResolvedIdempotencyOptions,
  closeStoreOnShutdown: boolean,
): IdempotencyModuleState {
  // Start-up warnings of a store (ValkeyStore's server check) go to the Nest logger. Nest runs the
  // store's onModuleInit itself, as the IdempotencyStore provider's instance.
  (store as { useWarningFallback?: (warn: (message: string) => void) => void }).useWarningFallback?.((message) =>
    logger.warn(message),
  );
  return Object.freeze({ store, options, closeStoreOnShutdown });
}

/**
 * The store the interceptor works through: wrapped for OpenTelemetry store spans when telemetry
 * is on and `@opentelemetry/api` is installed (the injected `IdempotencyStore` stays the store
 * the app configured).
 * @internal
 */
export function operationalStore(store: IdempotencyStore, options: ResolvedIdempotencyOptions): IdempotencyStore {
  const traced = options.telemetry && otel() !== null && !(store instanceof InstrumentedStore);
  return traced ? new InstrumentedStore(store) : store;
}

/** @internal */
export const IDEMPOTENCY_MODULE_STATE = Symbol.for('nestjs-idempotent:module-state');
const IDEMPOTENCY_ASYNC_INPUT = Symbol.for('nestjs-idempotent:async-input');

function isStore(value: unknown): value is IdempotencyStore {
  return (
    value instanceof IdempotencyStore ||
    (typeof value === 'object' && value !== null && typeof (value as IdempotencyStore).tryInsert === 'function')
  );
}

/**
 * Turns what `forRoot`/`forRootAsync` received into the module state.
 * @internal
 */
export function createModuleState(
  input: IdempotencyStore | IdempotencyModuleOptions,
  closeByDefault: boolean,
  where: string,
): IdempotencyModuleState {
  if (isStore(input)) return moduleState(input, DEFAULT_IDEMPOTENCY_OPTIONS, closeByDefault);
  if (input === null || typeof input !== 'object') fail(where, 'expected a store or { store, ...options }');
  const { store, closeStoreOnShutdown, onEvent, telemetry, keyHashSecret, ...options } = input;
  delete (options as { isGlobal?: unknown }).isGlobal;
  if (!isStore(store)) fail(where, 'store must be an IdempotencyStore');
  if (closeStoreOnShutdown !== undefined && typeof closeStoreOnShutdown !== 'boolean') {
    fail(where, 'closeStoreOnShutdown must be a boolean');
  }
  if (onEvent !== undefined && typeof onEvent !== 'function') fail(where, 'onEvent must be a function');
  if (telemetry !== undefined && typeof telemetry !== 'boolean') fail(where, 'telemetry must be a boolean');
  if (keyHashSecret !== undefined) {
    if (typeof keyHashSecret !== 'string' || keyHashSecret.length < 16) {
      fail(where, 'keyHashSecret must be a string of at least 16 characters');
    }
    useKeyHashSecret(keyHashSecret);
  }
  validateOptions(options, where);
  const resolved = Object.freeze({
    ...mergeOptions(DEFAULT_IDEMPOTENCY_OPTIONS, options),
    onEvent,
    telemetry: telemetry ?? true,
  });
  return moduleState(store, resolved, closeStoreOnShutdown ?? closeByDefault);
}

/** @internal */
export function createAsyncStateProviders(options: IdempotencyModuleAsyncOptions): Provider[] {
  return [
    { provide: IDEMPOTENCY_ASYNC_INPUT, useFactory: options.useFactory, inject: options.inject ?? [] },
    {
      provide: IDEMPOTENCY_MODULE_STATE,
      useFactory: (input: IdempotencyStore | IdempotencyModuleOptions) =>
        createModuleState(input, true, 'IdempotencyModule.forRootAsync'),
      inject: [IDEMPOTENCY_ASYNC_INPUT],
    },
  ];
}
