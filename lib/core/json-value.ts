import { CachedResponse } from './cached-response';
import { IdempotencyDecodeError } from './errors';

/**
 * Values (of services, message handlers and resolvers) as stored responses: JSON text in the
 * body, and what kind of value it is in the metadata.
 */
const VALUE_KIND = ':value';
const EMPTY = new Uint8Array(0);

/**
 * The stored form of `value`: its JSON text (`undefined` is kept as such).
 * @throws TypeError for a value JSON cannot hold (a BigInt, a cycle, a function).
 * @internal
 */
export function jsonValueResponse(value: unknown): CachedResponse {
  if (value === undefined)
    return new CachedResponse({ statusCode: 200, body: EMPTY, metadata: { [VALUE_KIND]: 'undefined' } });
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new TypeError(`the value cannot be stored as JSON: ${(error as Error).message}`, { cause: error });
  }
  if (text === undefined) throw new TypeError(`the value cannot be stored as JSON (${typeof value})`);
  return new CachedResponse({ statusCode: 200, body: text, metadata: { [VALUE_KIND]: 'json' } });
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
    case 'json':
      return JSON.parse(response.text());
    case 'unstorable':
      throw new TypeError(
        `the first run's value could not be stored as JSON, so it cannot be replayed: ${response.text()}`,
      );
    default:
      throw new IdempotencyDecodeError('the stored response holds no value (was the key used by an HTTP route?)');
  }
}
