import { CachedResponse } from './cached-response';
import { IdempotencyDecodeError } from './errors';

/**
 * Values (of services, message handlers and resolvers) as stored responses: JSON text in the
 * body, and what kind of value it is in the metadata.
 */
const VALUE_KIND = ':value';
/** Where the value held `Date`s (JSON text of a list of key paths), when they are kept. */
const DATES = ':dates';
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
  try {
    text = JSON.stringify(value, dates === undefined ? undefined : dateRecorder(dates));
  } catch (error) {
    throw new TypeError(`the value cannot be stored as JSON: ${(error as Error).message}`, { cause: error });
  }
  if (text === undefined) throw new TypeError(`the value cannot be stored as JSON (${typeof value})`);
  const metadata: Record<string, string> = { [VALUE_KIND]: 'json' };
  if (dates !== undefined && dates.length > 0) metadata[DATES] = JSON.stringify(dates);
  return new CachedResponse({ statusCode: 200, body: text, metadata });
}

/**
 * A `JSON.stringify` replacer that notes the key path of every `Date` (written as its ISO
 * string). It runs depth first, as `JSON.stringify` does, so each object's path is known when its
 * members are visited.
 */
function dateRecorder(dates: string[][]): (this: unknown, key: string, value: unknown) => unknown {
  const paths = new WeakMap<object, string[]>();
  return function (this: unknown, key, value) {
    // The path is made only for a Date or an object, not for every member.
    const isDate = (this as Record<string, unknown>)[key] instanceof Date;
    if (isDate ? typeof value !== 'string' : typeof value !== 'object' || value === null) return value;
    const parent = paths.get(this as object);
    const path = parent === undefined ? [] : [...parent, key];
    if (isDate) dates.push(path);
    else paths.set(value as object, path);
    return value;
  };
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
 * The value a stored response holds, parsed from its JSON.
 * @throws TypeError for the stand-in of a value that could not be stored;
 *   IdempotencyDecodeError for a response that holds no value (stored by another kind of caller).
 * @internal
 */
export function jsonValueOf(response: CachedResponse): unknown {
  switch (response.metadata[VALUE_KIND]) {
    case 'undefined':
      return undefined;
    case 'json': {
      const value: unknown = JSON.parse(response.text());
      const dates = response.metadata[DATES];
      return dates === undefined ? value : reviveDates(value, JSON.parse(dates) as string[][]);
    }
    case 'unstorable':
      throw new TypeError(
        `the first run's value could not be stored as JSON, so it cannot be replayed: ${response.text()}`,
      );
    default:
      throw new IdempotencyDecodeError('the stored response holds no value (was the key used by an HTTP route?)');
  }
}
