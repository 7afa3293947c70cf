import { DefaultFingerprintStrategy, Fingerprint, IdempotencyDecodeError } from '../index';

describe('DefaultFingerprintStrategy', () => {
  const strategy = new DefaultFingerprintStrategy();

  it.each([
    ['POST /charges', '{}', 'e17e59a831e50beb12b12692e750e188'],
    ['GET/ab', '', '2a6755bb672bca55bf70b8f2a469d2d0'],
    ['GET', '/ab', '9e1b7d02bf37880a2bb52fbffd0891c3'],
    ['', '', '2c0a8a99dc147d5445c3b49d035665b2'],
  ])('matches the test vector for (%j, %j)', (operation, body, hex) => {
    expect(strategy.compute(operation, body).toString()).toBe(hex);
    expect(strategy.compute(operation, Buffer.from(body)).toString()).toBe(hex);
  });

  it('hashes strings as UTF-8 and accepts Uint8Array views', () => {
    const text = 'ünïcødé ✓';
    const bytes = Buffer.from(`xx${text}`, 'utf8').subarray(2);
    expect(strategy.compute('op', text).equals(strategy.compute('op', new Uint8Array(bytes)))).toBe(true);
    expect(strategy.compute('op', 'a').equals(strategy.compute('op', 'b'))).toBe(false);
  });

  // Text bodies with short operations are hashed as one joined string; everything else as bytes.
  // Both must give the bytes' hash, also where the joined text could differ from the parts.
  it.each([
    ['a short operation', 'POST /x\njson application/json', '{"a":"ünï ✓ 😀","b":"\u0000"}'],
    ['an operation of 127 bytes', 'x'.repeat(127), 'body'],
    ['an operation of 128 bytes', 'x'.repeat(128), 'body'],
    ['a multi-byte operation near the bound', 'é'.repeat(63), 'body'],
    ['an operation ending in a lone high surrogate', 'op\ud83d', '\ude00 and more'],
    ['lone surrogates inside', 'o\udc00p', 'b\ud800dy'],
  ])('gives the same fingerprint for a text body as for its UTF-8 bytes: %s', (_case, operation, body) => {
    expect(strategy.compute(operation, body).toString()).toBe(
      strategy.compute(operation, new Uint8Array(Buffer.from(body, 'utf8'))).toString(),
    );
  });
});

describe('Fingerprint', () => {
  const hex = 'e17e59a831e50beb12b12692e750e188';

  it('converts between hex, bigint and bytes', () => {
    const fp = Fingerprint.fromHex(hex.toUpperCase());
    expect(fp.toString()).toBe(hex);
    expect(Fingerprint.fromBigInt(fp.toBigInt()).equals(fp)).toBe(true);
    expect(Fingerprint.fromBytes(fp.toBytes()).equals(fp)).toBe(true);
    expect(Fingerprint.fromBigInt(1n).toString()).toBe('0'.repeat(31) + '1');
    expect(JSON.stringify(fp)).toBe(`"${hex}"`);
    expect(Fingerprint.fromJSON(JSON.parse(JSON.stringify(fp))).equals(fp)).toBe(true);
  });

  it('refuses malformed input', () => {
    expect(() => Fingerprint.fromHex('abc')).toThrow(IdempotencyDecodeError);
    expect(() => Fingerprint.fromHex('g'.repeat(32))).toThrow(IdempotencyDecodeError);
    expect(() => Fingerprint.fromBigInt(-1n)).toThrow(RangeError);
    expect(() => Fingerprint.fromBigInt(1n << 128n)).toThrow(RangeError);
    expect(() => Fingerprint.fromBytes(new Uint8Array(15))).toThrow(RangeError);
    expect(() => Fingerprint.fromJSON(null)).toThrow(IdempotencyDecodeError);
  });
});
