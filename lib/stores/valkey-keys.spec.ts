import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { keyDigest, valkeyKeys } from './valkey-keys';

// The digest as format 1 stores made it: entries of the previous version live under these keys.
const formatOneDigest = (key: string): string =>
  createHash('sha256').update(key, 'utf8').digest().toString('base64url', 0, 16);

describe('Valkey key layout', () => {
  it('digests keys exactly as the previous version did (SHA-256, first 128 bits, base64url)', () => {
    const keys = ['a', '{b}', 'order-9/alice', 'ünïcödé/🔑', 'x'.repeat(255)];
    for (let i = 0; i < 2000; i++) keys.push(randomUUID(), randomBytes(1 + (i % 40)).toString('latin1'));
    for (const key of keys) expect([key, keyDigest(key)]).toEqual([key, formatOneDigest(key)]);
  });

  it('puts the entry and its bucket counter under one hash tag', () => {
    expect(valkeyKeys('idem:', 'order-1')).toEqual({
      entry: `idem:{${/\{(\d+)\}/.exec(valkeyKeys('idem:', 'order-1').fence)?.[1]}}:e:${formatOneDigest('order-1')}`,
      fence: expect.stringMatching(/^idem:\{\d{1,5}\}:fence$/),
    });
  });
});
