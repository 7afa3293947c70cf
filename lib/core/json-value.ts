import { bodySize, CachedResponse } from './cached-response';
import { IdempotencyDecodeError, IdempotencyValueTooLargeError } from './errors';

/**
 * Values (of services, message handlers and resolvers) as stored responses: JSON text in the
 * body, and what kind of value it is in the metadata.
 */
const VALUE_KIND = ':value';
/** Where the value held `Date`s (JSON text of a list of key paths), when they are kept. */
const DATES = ':dates';
/** The type tags of objects in the value (JSON text of a list of `[key path, tag]`), when kept. */
const TYPES = ':types';
const EMPTY = new Uint8Array(0);

/** How a value is stored. */
export interface JsonValueOptions {
  /**
   * Whether `Date`s in the value come back as `Date`s (their paths are stored beside the JSON),
   * rather than as the ISO strings JSON makes of them. For values others read by type (GraphQL
   * scalars), not for values handed back as JSON.
   * @default false
   */
  readonly keepDates?: boolean;
  /**
   * A tag for an object of the value that must come back as what it was (e.g. the GraphQL type of
   * a class instance, which a union or interface resolves by), or `undefined` for none. The tags
   * and their paths are stored beside the JSON; `jsonValueOf`'s `revive` gets them back.
   */
  readonly typeOf?: (object: object) => string | undefined;
}

/** How a stored value comes back (see {@link JsonValueOptions.typeOf}). */
export interface JsonReviveOptions {
  /** Called for each tagged object of the parsed value, with its tag; answers what stands in its place. */
  readonly revive?: (object: object, tag: string) => object;
}

/**
 * The stored form of `value`: its JSON text (`undefined` is kept as such).
 * @throws TypeError for a value JSON cannot hold (a BigInt, a cycle, a function).
 * @internal
 */
export function jsonValueResponse(value: unknown, options?: JsonValueOptions): CachedResponse {
  if (value === undefined)
    return new CachedResponse({ statusCode: 200, body: EMPTY, metadata: { [VALUE_KIND]: 'undefined' } });
  let text: string | undefined;
  const dates: string[][] | undefined = options?.keepDates ? [] : undefined;
  const typeOf = options?.typeOf;
  const types: [string[], string][] | undefined = typeOf === undefined ? undefined : [];
  try {
    text = JSON.stringify(
      value,
      dates === undefined && types === undefined ? undefined : recorder(dates, types, typeOf),
    );
  } catch (error) {
    throw new TypeError(`the value cannot be stored as JSON: ${(error as Error).message}`, { cause: error });
  }
  if (text === undefined) throw new TypeError(`the value cannot be stored as JSON (${typeof value})`);
  const metadata: Record<string, string> = { [VALUE_KIND]: 'json' };
  if (dates !== undefined && dates.length > 0) metadata[DATES] = JSON.stringify(dates);
  if (types !== undefined && types.length > 0) metadata[TYPES] = JSON.stringify(types);
  return new CachedResponse({ statusCode: 200, body: text, metadata });
}

/**
 * A `JSON.stringify` replacer that notes the key path of every `Date` (written as its ISO
 * string), and of every object `typeOf` tags. It runs depth first, as `JSON.stringify` does, so
 * each object's path is known when its members are visited.
 */
function recorder(
  dates: string[][] | undefined,
  types: [string[], string][] | undefined,
  typeOf: ((object: object) => string | undefined) | undefined,
): (this: unknown, key: string, value: unknown) => unknown {
  const paths = new WeakMap<object, string[]>();
  return function (this: unknown, key, value) {
    // The path is made only for a Date or an object, not for every member.
    const original = (this as Record<string, unknown>)[key];
    const isDate = original instanceof Date;
    if (isDate ? typeof value !== 'string' : typeof value !== 'object' || value === null) return value;
    const parent = paths.get(this as object);
    const path = parent === undefined ? [] : [...parent, key];
    if (isDate) {
      dates?.push(path);
      return value;
    }
    paths.set(value as object, path);
    if (typeOf !== undefined && typeof original === 'object' && original !== null && !Array.isArray(original)) {
      const tag = typeOf(original);
      if (tag !== undefined) types!.push([path, tag]);
    }
    return value;
  };
}

/** `value` with the objects at the tagged paths handed to `revive`, deepest first. */
function reviveTypes(
  value: unknown,
  tags: readonly (readonly [readonly string[], string])[],
  revive: JsonReviveOptions['revive'],
): unknown {
  let root = value;
  // Deepest first, so a revived object's members are already what they should be.
  for (const [path, tag] of [...tags].sort((a, b) => b[0].length - a[0].length)) {
    if (path.length === 0) {
      root = revive!(root as object, tag);
      continue;
    }
    let holder = root as Record<string, unknown>;
    for (let i = 0; i < path.length - 1; i++) holder = holder[path[i]] as Record<string, unknown>;
    const last = path[path.length - 1];
    holder[last] = revive!(holder[last] as object, tag);
  }
  return root;
}

/** `value` with the ISO strings at `paths` turned back into `Date`s. */
function reviveDates(value: unknown, paths: readonly (readonly string[])[]): unknown {
  let root = value;
  for (const path of paths) {
    if (path.length === 0) {
      root = new Date(root as string);
      continue;
    }
    let holder = root as Record<string, unknown>;
    for (let i = 0; i < path.length - 1; i++) holder = holder[path[i]] as Record<string, unknown>;
    const last = path[path.length - 1];
    holder[last] = new Date(holder[last] as string);
  }
  return root;
}

/**
 * The stand-in stored when the value could not be (the work ran, so the key is kept): replaying
 * it throws `reason` again.
 * @internal
 */
export function unstorableValueResponse(reason: unknown): CachedResponse {
  const message = reason instanceof Error ? reason.message : String(reason);
  return new CachedResponse({ statusCode: 500, body: message, metadata: { [VALUE_KIND]: 'unstorable' } });
}

/**
 * `response` (a value's stored form) when its body fits in `maxBytes`; else the marker stored in
 * its place, whose replay throws {@link IdempotencyValueTooLargeError}.
 * @internal
 */
export function boundedValueResponse(response: CachedResponse, maxBytes: number): CachedResponse {
  const bytes = bodySize(response);
  if (bytes <= maxBytes) return response;
  return new CachedResponse({
    statusCode: 413,
    body: EMPTY,
    metadata: { [VALUE_KIND]: 'too-large', [TOO_LARGE]: `${bytes}/${maxBytes}` },
  });
}

/** The size and the bound of a value too large to store (`<bytes>/<limit>`). */
const TOO_LARGE = ':too-large';

/**
 * The value a stored response holds, parsed from its JSON.
 * @throws TypeError for the stand-in of a value that could not be stored;
 *   IdempotencyValueTooLargeError for the marker of a value over `maxResponseBytes`;
 *   IdempotencyDecodeError for a response that holds no value (stored by another kind of caller).
 * @internal
 */
export function jsonValueOf(response: CachedResponse, options?: JsonReviveOptions): unknown {
  switch (response.metadata[VALUE_KIND]) {
    case 'undefined':
      return undefined;
    case 'json': {
      let value: unknown = JSON.parse(response.text());
      const dates = response.metadata[DATES];
      if (dates !== undefined) value = reviveDates(value, JSON.parse(dates) as string[][]);
      const types = response.metadata[TYPES];
      if (types !== undefined && options?.revive !== undefined) {
        value = reviveTypes(value, JSON.parse(types) as [string[], string][], options.revive);
      }
      return value;
    }
    case 'too-large': {
      const [bytes, limit] = (response.metadata[TOO_LARGE] ?? '').split('/').map(Number);
      throw new IdempotencyValueTooLargeError(bytes, limit);
    }
    case 'unstorable':
      throw new TypeError(
        `the first run's value could not be stored as JSON, so it cannot be replayed: ${response.text()}`,
      );
    default:
      throw new IdempotencyDecodeError('the stored response holds no value (was the key used by an HTTP route?)');
  }
}
