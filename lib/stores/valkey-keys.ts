import { createHash } from 'node:crypto';
import { bucketOf } from '../core/key-bucket';

/** The Valkey keys one idempotency key maps to. @internal */
export interface ValkeyKeys {
  /** The entry hash: `<prefix>{<bucket>}:e:<digest>`. */
  readonly entry: string;
  /** The fencing counter of the key's bucket: `<prefix>{<bucket>}:fence`. */
  readonly fence: string;
}

/**
 * Checks a key prefix: printable ASCII without braces (the store places its own hash tags, and a
 * brace in the prefix would move every key into one cluster slot), at most 64 characters.
 * @internal
 */
export function assertPrefix(prefix: string): string {
  if (typeof prefix !== 'string' || !/^[\x21-\x7a\x7c\x7e]{0,64}$/.test(prefix)) {
    throw new RangeError(
      `prefix must be at most 64 printable ASCII characters without spaces or braces, got ${JSON.stringify(prefix)}`,
    );
  }
  return prefix;
}

/**
 * The keys of `key` under `prefix`. The key text is hashed (SHA-256, first 128 bits, base64url)
 * before it becomes part of a Valkey key, so clients can neither pick cluster slots nor smuggle
 * braces; the bucket in the hash tag puts the entry and its bucket's counter in one slot.
 * @internal
 */
export function valkeyKeys(prefix: string, key: string): ValkeyKeys {
  const base = `${prefix}{${bucketOf(key)}}:`;
  const digest = createHash('sha256').update(key, 'utf8').digest().toString('base64url', 0, 16);
  return { entry: `${base}e:${digest}`, fence: `${base}fence` };
}
