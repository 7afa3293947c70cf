import { randomBytes } from 'node:crypto';

const POOL_SIZE = 16 * 256;
let pool = Buffer.alloc(0);
let offset = POOL_SIZE;

/**
 * A random 128-bit per-claim nonce, 22 base64url characters. Draws from a pooled buffer so a
 * claim does not pay for a system call.
 * @internal
 */
export function newNonce(): string {
  if (offset >= POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    offset = 0;
  }
  const nonce = pool.toString('base64url', offset, offset + 16);
  offset += 16;
  return nonce;
}
