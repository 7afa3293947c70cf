import { FencingToken, IdempotencyDecodeError } from '../index';

describe('FencingToken', () => {
  it('orders by number and compares equal only with the same nonce', () => {
    const a = new FencingToken(1n, 'n1');
    const b = new FencingToken(2, 'n2');
    expect(a.compare(b)).toBeLessThan(0);
    expect(b.compare(a)).toBeGreaterThan(0);
    expect(a.compare(new FencingToken(1n, 'zz'))).toBe(0);
    expect(b.isNewerThan(a)).toBe(true);
    expect(a.isNewerThan(b)).toBe(false);
    expect(a.equals(new FencingToken(1n, 'n1'))).toBe(true);
    expect(a.equals(new FencingToken(1n, 'n2'))).toBe(false);
    expect(a.equals(new FencingToken(1n))).toBe(false);
  });

  it('holds the full unsigned 64-bit range', () => {
    const max = (1n << 64n) - 1n;
    expect(new FencingToken(max).toString()).toBe('18446744073709551615');
    expect(() => new FencingToken(max + 1n)).toThrow(RangeError);
    expect(() => new FencingToken(-1n)).toThrow(RangeError);
    expect(() => new FencingToken(1.5)).toThrow(RangeError);
    expect(() => new FencingToken(1n, 'bad nonce!')).toThrow(RangeError);
  });

  it('round-trips through JSON with its nonce', () => {
    const token = new FencingToken((1n << 63n) + 5n, 'AbC_-9');
    const json = JSON.parse(JSON.stringify(token));
    expect(json).toEqual({ value: '9223372036854775813', nonce: 'AbC_-9' });
    expect(FencingToken.fromJSON(json).equals(token)).toBe(true);
    expect(FencingToken.fromJSON('7').equals(new FencingToken(7n))).toBe(true);
    for (const bad of [null, 7, '-1', '01', { value: 1 }, { value: '1', nonce: 5 }, { value: '1', nonce: '!' }]) {
      expect(() => FencingToken.fromJSON(bad)).toThrow(IdempotencyDecodeError);
    }
  });
});
