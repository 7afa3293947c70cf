import { randomBytes } from 'node:crypto';

/** Random bytes drawn at once: their base64url text holds this many nonces. */
const POOL_BYTES = 16 * 256;
/** Characters of a nonce: 22 base64url characters, 132 random bits. */
const NONCE_CHARS = 22;
/** Whole characters of the pool's text (the last one of the encoding is partly padding). */
const POOL_CHARS = Math.floor((POOL_BYTES * 8) / 6);
let pool = '';
let offset = POOL_CHARS;

/**
 * A random per-claim nonce: 22 base64url characters (132 random bits). Cut from the base64url
 * text of a pooled draw of random bytes, so a claim neither pays for a system call nor encodes
 * bytes: each nonce is a slice of the text, never overlapping another.
 * @internal
 */
export function newNonce(): string {
  if (offset + NONCE_CHARS > POOL_CHARS) {
    pool = randomBytes(POOL_BYTES).toString('base64url');
    offset = 0;
  }
  const nonce = pool.slice(offset, offset + NONCE_CHARS);
  offset += NONCE_CHARS;
  return nonce;
}
