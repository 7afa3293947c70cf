import fc from 'fast-check';
import { IdempotencyKey, MAX_KEY_BYTES } from './idempotency-key';
import { principalDigest, storeKeyFor } from './store-key';

const bytes = (key: IdempotencyKey) => Buffer.byteLength(key.toString(), 'utf8');
// Valid client key text: no control characters, ':' or '/'.
const keyText = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 120 })
  .map((s) => s.replace(/[\x00-\x1f\x7f:/]/g, 'x'))
  .filter((s) => s.length > 0 && Buffer.byteLength(s) <= MAX_KEY_BYTES);

describe('storeKeyFor', () => {
  it('is the client key itself without a principal', () => {
    const key = new IdempotencyKey('abc');
    expect(storeKeyFor(key, undefined)).toBe(key);
  });

  it('scopes short keys as "<key>/<digest>", long ones as "<digest>/~/<digest>"', () => {
    const short = storeKeyFor(new IdempotencyKey('abc'), 'user:1/2');
    expect(short.toString()).toBe(`abc/${principalDigest('user:1/2')}`);
    const long = storeKeyFor(new IdempotencyKey('k'.repeat(255)), 'user-1');
    expect(long.toString()).toMatch(/^[A-Za-z0-9_-]{43}\/~\/[A-Za-z0-9_-]{43}$/);
    expect(long.toString().endsWith(principalDigest('user-1'))).toBe(true);
  });

  it('keeps principals apart that differ only in unpaired surrogates (the same UTF-8)', () => {
    const key = new IdempotencyKey('k');
    const scoped = ['u\uD800', 'u\uDC00', 'u\uFFFD', 'u\uDC00\uD800'].map((p) => storeKeyFor(key, p).toString());
    expect(new Set(scoped).size).toBe(4);
    // Well-formed principals keep the digest they always had.
    expect(principalDigest('u\uFFFD')).toBe(principalDigest('u\uFFFD'));
  });

  it('always fits in 255 bytes and keeps principals and keys apart', () => {
    fc.assert(
      fc.property(keyText, fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (text, p1, p2) => {
        const key = new IdempotencyKey(text);
        const a = storeKeyFor(key, p1);
        expect(bytes(a)).toBeLessThanOrEqual(MAX_KEY_BYTES);
        expect(IdempotencyKey.fromJSON(a.toJSON()).equals(a)).toBe(true);
        if (p1 !== p2) expect(storeKeyFor(key, p2).equals(a)).toBe(false);
        expect(a.equals(key)).toBe(false);
      }),
    );
  });

  it('takes every key of 255 bytes, in every form', () => {
    for (const text of ['k'.repeat(255), '€'.repeat(85), 'k'.repeat(211), 'k'.repeat(212)]) {
      const key = storeKeyFor(new IdempotencyKey(text), 'principal');
      expect(bytes(key)).toBeLessThanOrEqual(MAX_KEY_BYTES);
    }
    // The boundary: 211 bytes + "/" + 43 = 255 is the short form; one more byte is the long one.
    expect(
      storeKeyFor(new IdempotencyKey('k'.repeat(211)), 'p')
        .toString()
        .startsWith('k'.repeat(211) + '/'),
    ).toBe(true);
    expect(storeKeyFor(new IdempotencyKey('k'.repeat(212)), 'p').toString()).toContain('/~/');
  });

  it('never lets a short form equal a long form', () => {
    const long = storeKeyFor(new IdempotencyKey('k'.repeat(255)), 'p');
    const [digest] = long.toString().split('/');
    // A client cannot send the long form's first part as a key and land on the same entry.
    expect(storeKeyFor(new IdempotencyKey(digest), 'p').equals(long)).toBe(false);
  });
});
