import { createHash, createHmac } from 'node:crypto';
import { keyHash, useKeyHashSecret } from './key-hash';

describe('keyHash', () => {
  it('is 12 hex digits, stable within the process, and not the plain SHA-256 of the key', () => {
    const hash = keyHash('order-1234');
    expect(hash).toMatch(/^[0-9a-f]{12}$/);
    expect(keyHash('order-1234')).toBe(hash);
    expect(keyHash('order-1235')).not.toBe(hash);
    // A guessable key cannot be found by hashing guesses without the secret.
    expect(hash).not.toBe(createHash('sha256').update('order-1234').digest('hex').slice(0, 12));
  });

  it('is an HMAC-SHA-256 under a configured secret, so instances sharing it agree', () => {
    const secret = 'a-secret-of-sixteen-or-more';
    useKeyHashSecret(secret);
    expect(keyHash('order-1234')).toBe(createHmac('sha256', secret).update('order-1234').digest('hex').slice(0, 12));
  });
});
