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
