import { createHmac, randomBytes } from 'node:crypto';

let secret: Buffer = randomBytes(32);

/**
 * A short, stable stand-in for a key in logs, spans and events: the first 12 hex digits of an
 * HMAC-SHA-256 of the key under a secret. The secret is random per process unless
 * {@link useKeyHashSecret} sets one (to correlate keys across instances), so a guessable key
 * cannot be found from its hash. Keys themselves never leave the library.
 * @internal
 */
export function keyHash(key: { toString(): string }): string {
  return createHmac('sha256', secret).update(key.toString()).digest('hex').slice(0, 12);
}

/** Sets the secret of {@link keyHash} (the module's `keyHashSecret` option). @internal */
export function useKeyHashSecret(value: string | Uint8Array): void {
  secret = Buffer.from(value);
}
