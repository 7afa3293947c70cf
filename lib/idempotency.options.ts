import { assertDuration } from './core/duration';
import { MAX_KEY_BYTES } from './core/idempotency-key';
import type { ResponseSealer } from './core/response-sealer';
import { MAX_KEY_LENGTH_LIMIT } from './core/store-key';
import type { IdempotencyEventHandler } from './observability/idempotency-event';
import { DefaultFingerprintStrategy, type FingerprintStrategy } from './core/fingerprint-strategy';
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
  IdempotencyOptions,
  IdempotencyRequest,
  ScopeFunction,
} from './interfaces/idempotency-options.interface';

/*
 * The options of `@Idempotent()` and their module-wide defaults, declared once: each has its
 * default and its check here, and everything else (the resolved type, validation, merging, the
 * list of known names) is derived from this table. Adding an option is one entry here plus its
 * documented field in `IdempotencyOptions`; the compiler refuses one without the other.
 */

/**
 * The default scope: the authenticated principal's `id`, else its `sub`, else its `userId` (the
 * shape Nest's JWT guide gives `request.user`), when there is one: a non-empty string, a finite
 * number or a bigint (Prisma and TypeORM `bigint` keys). A `request.user` with none of these is
 * refused by the guarded entry points (500), never run unscoped.
 */
export function defaultScope(request: IdempotencyRequest): string | number | bigint | undefined {
  const user = request?.user;
  if (user === null || typeof user !== 'object') return undefined;
  for (const id of [user.id, user.sub, user.userId]) {
    if (
      (typeof id === 'string' && id.length > 0) ||
      (typeof id === 'number' && Number.isFinite(id)) ||
      typeof id === 'bigint'
    ) {
      return id;
    }
  }
  return undefined;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function fail(where: string, message: string): never {
  throw new TypeError(`${where}: ${message}`);
}

function wholeFromZero(name: string) {
  return (value: unknown, where: string) => {
    if (!Number.isSafeInteger(value) || (value as number) < 0) {
      throw new RangeError(`${where}: ${name} must be a whole number from 0, got ${String(value)}`);
    }
  };
}

function bool(name: string) {
  return (value: unknown, where: string) => {
    if (typeof value !== 'boolean') fail(where, `${name} must be a boolean`);
  };
}

interface OptionSpec<T> {
  readonly default: T;
  /** Throws a TypeError/RangeError naming `where` for a value that is not allowed. */
  check(value: unknown, where: string): void;
}

function spec<T>(defaultValue: T, check: (value: unknown, where: string) => void): OptionSpec<T> {
  return { default: defaultValue, check };
}

/** Every route option, with its default and its check. */
const ROUTE_OPTIONS = {
  headerName: spec<string>(IDEMPOTENCY_KEY_HEADER, (v, where) => {
    if (typeof v !== 'string' || !TOKEN.test(v)) fail(where, 'headerName must be an HTTP header name');
  }),
  required: spec<boolean>(false, bool('required')),
  leaseMs: spec<number>(DEFAULT_LEASE_MS, (v, where) => assertDuration(`${where}: leaseMs`, v as number)),
  ttlMs: spec<number>(DEFAULT_TTL_MS, (v, where) => assertDuration(`${where}: ttlMs`, v as number)),
  waitMs: spec<number>(0, wholeFromZero('waitMs')),
  fingerprint: spec<FingerprintStrategy | FingerprintFunction>(new DefaultFingerprintStrategy(), (v, where) => {
    if (
      typeof v !== 'function' &&
      (typeof v !== 'object' || v === null || typeof (v as FingerprintStrategy).compute !== 'function')
    ) {
      fail(where, 'fingerprint must be a FingerprintStrategy or a function of the request');
    }
  }),
  scope: spec<ScopeFunction | false>(defaultScope, (v, where) => {
    if (v !== false && typeof v !== 'function') fail(where, 'scope must be a function of the request, or false');
  }),
  replayHeaders: spec<readonly string[] | false>(Object.freeze([]) as readonly string[], (v, where) => {
    if (v === false) return;
    if (!Array.isArray(v) || v.some((h) => typeof h !== 'string' || !TOKEN.test(h))) {
      fail(where, 'replayHeaders must be a list of HTTP header names, or false (replay no stored headers)');
    }
  }),
  maxKeyLength: spec<number>(MAX_KEY_BYTES, (v, where) => {
    if (!Number.isSafeInteger(v) || (v as number) < 1 || (v as number) > MAX_KEY_LENGTH_LIMIT) {
      throw new RangeError(
        `${where}: maxKeyLength must be a whole number of bytes from 1 to ${MAX_KEY_LENGTH_LIMIT}, got ${String(v)}`,
      );
    }
  }),
  cacheErrors: spec<CacheErrorsOption>(false, (v, where) => {
    if (
      typeof v !== 'boolean' &&
      typeof v !== 'function' &&
      !(Array.isArray(v) && v.every((s) => Number.isInteger(s) && s >= 100 && s <= 999))
    ) {
      fail(where, 'cacheErrors must be a boolean, a list of HTTP status codes, or a predicate');
    }
  }),
  failOpen: spec<boolean>(false, bool('failOpen')),
  maxResponseBytes: spec<number>(DEFAULT_MAX_RESPONSE_BYTES, wholeFromZero('maxResponseBytes')),
  retryAfterSeconds: spec<number>(DEFAULT_RETRY_AFTER_SECONDS, wholeFromZero('retryAfterSeconds')),
  problemBody: spec<IdempotencyOptions['problemBody']>(undefined, (v, where) => {
    if (typeof v !== 'function') fail(where, 'problemBody must be a function of the problem');
  }),
  throwProblems: spec<boolean>(false, bool('throwProblems')),
  key: spec<IdempotencyOptions['key']>(undefined, (v, where) => {
    if (typeof v !== 'function') fail(where, 'key must be a function of the message or arguments');
  }),
} satisfies { readonly [K in keyof Required<IdempotencyOptions>]: OptionSpec<IdempotencyOptions[K]> };

type RouteOptionName = keyof typeof ROUTE_OPTIONS;

/** The names of the route options. @internal */
export const ROUTE_OPTION_NAMES: readonly RouteOptionName[] = Object.freeze(
  Object.keys(ROUTE_OPTIONS) as RouteOptionName[],
);

/** Route options with every default applied, plus what is derived from them. */
export type ResolvedRouteOptions = {
  readonly [K in RouteOptionName]: (typeof ROUTE_OPTIONS)[K]['default'];
} & {
  /** `headerName` in lower case, as Node keys request headers. */
  readonly headerKey: string;
};

/** The route defaults. @internal */
export const DEFAULT_ROUTE_OPTIONS: ResolvedRouteOptions = Object.freeze({
  ...(Object.fromEntries(ROUTE_OPTION_NAMES.map((name) => [name, ROUTE_OPTIONS[name].default])) as {
    [K in RouteOptionName]: (typeof ROUTE_OPTIONS)[K]['default'];
  }),
  headerKey: IDEMPOTENCY_KEY_HEADER.toLowerCase(),
});

/**
 * Checks idempotency options (route or module-wide) and throws a `TypeError`/`RangeError` naming
 * the bad one, so mistakes show at start-up rather than on the first request. `extra` names
 * further options the caller handles itself.
 * @internal
 */
export function validateOptions(options: IdempotencyOptions, where: string, extra: readonly string[] = []): void {
  if (options === null || typeof options !== 'object') fail(where, 'options must be an object');
  for (const [name, value] of Object.entries(options)) {
    if (!(name in ROUTE_OPTIONS)) {
      if (extra.includes(name)) continue;
      fail(where, `unknown option "${name}"`);
    }
    if (value !== undefined) ROUTE_OPTIONS[name as RouteOptionName].check(value, where);
  }
}

/**
 * `base` with the options `override` sets (those not `undefined`) put on top.
 * @internal
 */
export function mergeOptions<B extends ResolvedRouteOptions>(base: B, override: IdempotencyOptions | undefined): B {
  if (override === undefined) return base;
  const merged: Record<string, unknown> = { ...base };
  for (const name of ROUTE_OPTION_NAMES) {
    const value = override[name];
    if (value !== undefined) merged[name] = value;
  }
  merged.headerKey = (merged.headerName as string).toLowerCase();
  return Object.freeze(merged) as B;
}

/** Options with every default applied, as the engine uses them: the route options and the module-wide ones. */
export type ResolvedIdempotencyOptions = ResolvedRouteOptions & {
  /** Module-wide only: the event hook. */
  readonly onEvent: IdempotencyEventHandler | undefined;
  /** Module-wide only: whether OpenTelemetry spans and metrics are recorded. */
  readonly telemetry: boolean;
  /** Module-wide only: the sealer of stored responses (`encryption`), if any. */
  readonly sealer: ResponseSealer | undefined;
};

/** The module-wide defaults. @internal */
export const DEFAULT_IDEMPOTENCY_OPTIONS: ResolvedIdempotencyOptions = Object.freeze({
  ...DEFAULT_ROUTE_OPTIONS,
  onEvent: undefined,
  telemetry: true,
  sealer: undefined,
});
