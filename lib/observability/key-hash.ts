import { createHash } from 'node:crypto';

/**
 * A short, stable stand-in for a key in logs, spans and events: the first 12 hex digits of its
 * SHA-256. Keys themselves never leave the library.
 */
export function keyHash(key: { toString(): string }): string {
  return createHash('sha256').update(key.toString()).digest('hex').slice(0, 12);
}
