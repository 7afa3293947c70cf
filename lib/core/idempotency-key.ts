import { randomUUID } from 'node:crypto';
import { IdempotencyDecodeError, IdempotencyKeyError } from './errors';

/** Longest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 255;

/**
 * What a key may not hold: ASCII control characters (C0 and DEL), the store separator ':' and
 * the scope separator '/'.
 * @internal
 */
export const FORBIDDEN = /[\x00-\x1f\x7f:/]/;
/**
 * An unpaired surrogate: not a character, and no UTF-8 encodes it (every store, and every digest,
 * would see U+FFFD instead, so two different keys would meet as one).
 * @internal
 */
export const UNPAIRED_SURROGATE = /\p{Cs}/u;

// Set only while `scoped()` builds a key from parts it has already validated.
let trusted = false;

function byteLength(value: string): number {
  // Every UTF-16 code unit takes at most 3 UTF-8 bytes, so short strings need no count.
  return value.length * 3 <= MAX_KEY_BYTES ? value.length : Buffer.byteLength(value, 'utf8');
}

/**
 * A client-chosen idempotency key: 1 to 255 UTF-8 bytes (no unpaired surrogate), no ASCII
 * control characters, no ':' and no '/'. Scoped keys (`key.scoped(scope)`) join parts with '/'.
 */
export class IdempotencyKey {
  readonly #value: string;

  /**
   * @throws IdempotencyKeyError `EMPTY_KEY`, `KEY_TOO_LONG` or `INVALID_KEY`, checked in that order.
   */
  constructor(value: string) {
    if (trusted) {
      this.#value = value;
      return;
    }
    if (typeof value !== 'string' || value.length === 0) {
      throw new IdempotencyKeyError('EMPTY_KEY', 'idempotency key is empty');
    }
    if (byteLength(value) > MAX_KEY_BYTES) {
      throw new IdempotencyKeyError('KEY_TOO_LONG', `idempotency key is longer than ${MAX_KEY_BYTES} bytes`);
    }
    if (FORBIDDEN.test(value)) {
      throw new IdempotencyKeyError('INVALID_KEY', "idempotency key contains a control character, ':' or '/'");
    }
    if (UNPAIRED_SURROGATE.test(value)) {
      throw new IdempotencyKeyError('INVALID_KEY', 'idempotency key is not valid Unicode (an unpaired surrogate)');
    }
    this.#value = value;
  }

  /** A random UUID v4 key, lowercase and hyphenated. */
  static default(): IdempotencyKey {
    return new IdempotencyKey(randomUUID());
  }

  /**
   * A new key `"<this>/<scope>"`; the receiver is unchanged. Scoped keys can be scoped again.
   * @throws IdempotencyKeyError `EMPTY_SCOPE`, `INVALID_SCOPE` or `KEY_TOO_LONG`.
   */
  scoped(scope: string): IdempotencyKey {
    if (typeof scope !== 'string' || scope.length === 0) {
      throw new IdempotencyKeyError('EMPTY_SCOPE', 'idempotency key scope is empty');
    }
    if (FORBIDDEN.test(scope)) {
      throw new IdempotencyKeyError('INVALID_SCOPE', "idempotency key scope contains a control character, ':' or '/'");
    }
    if (UNPAIRED_SURROGATE.test(scope)) {
      throw new IdempotencyKeyError(
        'INVALID_SCOPE',
        'idempotency key scope is not valid Unicode (an unpaired surrogate)',
      );
    }
    const joined = `${this.#value}/${scope}`;
    if (byteLength(joined) > MAX_KEY_BYTES) {
      throw new IdempotencyKeyError('KEY_TOO_LONG', `scoped idempotency key is longer than ${MAX_KEY_BYTES} bytes`);
    }
    return IdempotencyKey.#trusted(joined);
  }

  /** Rebuilds a key (scoped or not) from `toJSON()` output, validating every part. */
  static fromJSON(json: unknown): IdempotencyKey {
    if (typeof json !== 'string') {
      throw new IdempotencyDecodeError('an idempotency key is serialised as a string');
    }
    const [first, ...scopes] = json.split('/');
    let key = new IdempotencyKey(first);
    for (const scope of scopes) key = key.scoped(scope);
    return key;
  }

  static #trusted(value: string): IdempotencyKey {
    trusted = true;
    try {
      return new IdempotencyKey(value);
    } finally {
      trusted = false;
    }
  }

  equals(other: IdempotencyKey): boolean {
    return other instanceof IdempotencyKey && other.#value === this.#value;
  }

  toString(): string {
    return this.#value;
  }

  toJSON(): string {
    return this.#value;
  }
}
