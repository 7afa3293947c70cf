import { createHash } from 'node:crypto';
import { IdempotencyKeyError } from './errors';
import { FORBIDDEN, IdempotencyKey, MAX_KEY_BYTES, UNPAIRED_SURROGATE } from './idempotency-key';

/** Length of a SHA-256 digest in base64url: 43 characters. */
const DIGEST_LENGTH = 43;
/** Marks the long form, so it can never equal the short form of another key. */
const LONG_FORM_MARK = '~';

const PRINCIPAL_DOMAIN = 'nestjs-idempotent/principal\n';
const KEY_DOMAIN = 'nestjs-idempotent/key\n';
const PRINCIPAL_UTF16_DOMAIN = 'nestjs-idempotent/principal-utf16\n';

/**
 * The store key of a client key, scoped to a principal when there is one.
 *
 * - No principal: the client key itself.
 * - Short form, when it fits in 255 bytes: `<client key>/<P>` with
 *   `P = base64url(SHA-256("nestjs-idempotent/principal\n" ‖ principal))`.
 * - Long form, otherwise: `<K>/~/<P>` with `K = base64url(SHA-256("nestjs-idempotent/key\n" ‖ client key))`
 *   (89 bytes).
 *
 * Client keys contain no `/`, so unscoped keys have none, short forms have one and long forms two:
 * the three never collide, and within a form distinct inputs give distinct keys (up to SHA-256
 * collisions). The principal is hashed so that any principal id (with `:`, `/`, any length) is a
 * valid scope, and so the store holds no user ids in clear.
 *
 * Scoping therefore never makes a valid client key too long.
 */
export function storeKeyFor(clientKey: IdempotencyKey, principal: string | undefined): IdempotencyKey {
  if (principal === undefined) return clientKey;
  const scope = principalDigest(principal);
  const text = clientKey.toString();
  // Every UTF-16 code unit takes at most 3 UTF-8 bytes, so short keys need no byte count.
  const bytes = text.length * 3 + 1 + DIGEST_LENGTH <= MAX_KEY_BYTES ? 0 : Buffer.byteLength(text, 'utf8');
  if (bytes + 1 + DIGEST_LENGTH <= MAX_KEY_BYTES) return clientKey.scoped(scope);
  return new IdempotencyKey(sha256(KEY_DOMAIN + text)).scoped(LONG_FORM_MARK).scoped(scope);
}

/** The largest `maxKeyLength` allowed: about what HTTP servers accept in one header line. */
export const MAX_KEY_LENGTH_LIMIT = 8192;

/**
 * The key of a client's key text, accepted up to `maxKeyLength` UTF-8 bytes (default 255, as
 * `IdempotencyKey` holds). A key of up to 255 bytes is the key itself; a longer one (allowed only
 * when `maxKeyLength` was raised) stands as `<K>/~` with `K = base64url(SHA-256("nestjs-idempotent/key\n" ‖ text))`,
 * the very form `storeKeyFor` gives long keys once scoped, so the store key stays short and no
 * client key can take that form (client keys hold no `/`).
 * @throws IdempotencyKeyError `EMPTY_KEY`, `KEY_TOO_LONG` (over `maxKeyLength`) or `INVALID_KEY`
 * @internal
 */
export function clientKeyFor(text: string, maxKeyLength: number = MAX_KEY_BYTES): IdempotencyKey {
  if (typeof text !== 'string' || text.length === 0) {
    throw new IdempotencyKeyError('EMPTY_KEY', 'idempotency key is empty');
  }
  // Every UTF-16 code unit takes at most 3 UTF-8 bytes, so short keys need no byte count.
  const bytes = text.length * 3 <= Math.min(maxKeyLength, MAX_KEY_BYTES) ? 0 : Buffer.byteLength(text, 'utf8');
  if (bytes > maxKeyLength) {
    throw new IdempotencyKeyError('KEY_TOO_LONG', `idempotency key is longer than ${maxKeyLength} bytes`);
  }
  if (bytes <= MAX_KEY_BYTES) return new IdempotencyKey(text);
  if (FORBIDDEN.test(text)) {
    throw new IdempotencyKeyError('INVALID_KEY', "idempotency key contains a control character, ':' or '/'");
  }
  if (UNPAIRED_SURROGATE.test(text)) {
    throw new IdempotencyKeyError('INVALID_KEY', 'idempotency key is not valid Unicode (an unpaired surrogate)');
  }
  return new IdempotencyKey(sha256(KEY_DOMAIN + text)).scoped(LONG_FORM_MARK);
}

// Principals repeat (a user retries, a service account calls often): remember recent digests.
const MAX_CACHED = 4096;
const digests = new Map<string, string>();

/** `base64url(SHA-256(domain ‖ principal))`, cached for recent principals. */
export function principalDigest(principal: string): string {
  let digest = digests.get(principal);
  if (digest === undefined) {
    // UTF-8 turns every unpaired surrogate into U+FFFD, so two such principals would share a
    // digest (and their keys): those are hashed as their UTF-16 code units, in a domain of their own.
    digest = UNPAIRED_SURROGATE.test(principal)
      ? createHash('sha256')
          .update(PRINCIPAL_UTF16_DOMAIN, 'utf8')
          .update(Buffer.from(principal, 'utf16le'))
          .digest('base64url')
      : sha256(PRINCIPAL_DOMAIN + principal);
    if (digests.size >= MAX_CACHED) digests.clear();
    digests.set(principal, digest);
  }
  return digest;
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64url');
}
