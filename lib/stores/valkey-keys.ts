import { hash } from 'node:crypto';
import { bucketOf } from '../core/key-bucket';

/** The Valkey keys one idempotency key maps to. @internal */
export interface ValkeyKeys {
  /** The entry: `<prefix>{<bucket>}:e:<digest>`. */
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

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
// The 6-bit value of each base64url character, by character code.
const SEXTET = new Uint8Array(128);
for (let i = 0; i < 64; i++) SEXTET[BASE64URL.charCodeAt(i)] = i;

/**
 * base64url of the first 128 bits of SHA-256(`key`), 22 characters. Clients choose keys, so the
 * digest must stay collision-resistant. Taken from the string form of the whole digest: a
 * one-shot `hash()` answering a string costs a quarter of one answering a Buffer (or of a Hash
 * object). The 22nd character of a 16-byte encoding holds the digest's bits 126-127 and four zero
 * bits, so it is rebuilt from the 22nd character of the 32-byte one.
 * @internal
 */
export function keyDigest(key: string): string {
  const full = hash('sha256', key, 'base64url');
  return full.slice(0, 21) + BASE64URL[SEXTET[full.charCodeAt(21)] & 0x30];
}

/**
 * The keys of `key` under `prefix`. The key text is hashed ({@link keyDigest}) before it becomes
 * part of a Valkey key, so clients can neither pick cluster slots nor smuggle braces; the bucket
 * in the hash tag puts the entry and its bucket's counter in one slot. Format 1 entries live
 * under the same keys, so a store of this version finds what the previous version left.
 * @internal
 */
export function valkeyKeys(prefix: string, key: string): ValkeyKeys {
  const base = `${prefix}{${bucketOf(key)}}:`;
  return { entry: `${base}e:${keyDigest(key)}`, fence: `${base}fence` };
}
