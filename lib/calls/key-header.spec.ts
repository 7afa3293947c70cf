import { IdempotencyKeyError } from '../core/errors';
import { parseKeyValue, readKeyHeader } from './key-header';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof IdempotencyKeyError) return error.code;
    throw error;
  }
  return undefined;
}

describe('parseKeyValue', () => {
  it.each([
    ['abc', 'abc'],
    ['  abc\t', 'abc'],
    ['"abc"', 'abc'],
    ['"a\\"b\\\\c"', 'a"b\\c'],
    ['"abc";foo', 'abc'],
    ['"abc"; a=1;b="x";c=?1;d=:aGk=:;e=tok/en;f=-1.5;*g', 'abc'],
    ['a,b', 'a,b'],
    ['a, "b"', 'a, "b"'],
    ['x"y"', 'x"y"'],
    ['\u00e2\u0082\u00ac', '\u20ac'], // UTF-8 of "€" as Node hands it over (latin1)
  ])('%j -> %j', (value, key) => {
    expect(parseKeyValue(value)).toBe(key);
  });

  it.each([
    ['', 'EMPTY_KEY'],
    ['   ', 'EMPTY_KEY'],
    ['"', 'INVALID_KEY'],
    ['"abc', 'INVALID_KEY'],
    ['"a\\b"', 'INVALID_KEY'],
    ['"abc\\', 'INVALID_KEY'],
    ['"ab\u00e9"', 'INVALID_KEY'],
    ['"abc" x', 'INVALID_KEY'],
    ['"abc";', 'INVALID_KEY'],
    ['"abc";A=1', 'INVALID_KEY'],
    ['"abc";a=', 'INVALID_KEY'],
    ['"abc";a="x', 'INVALID_KEY'],
    ['"abc";a=?2', 'INVALID_KEY'],
    ['"abc",', 'INVALID_KEY'],
    ['a\u00ffb', 'INVALID_KEY'], // not UTF-8
  ])('%j is refused with %s', (value, expected) => {
    expect(code(() => parseKeyValue(value))).toBe(expected);
  });

  it('an empty sf-string is an empty key (refused later by IdempotencyKey)', () => {
    expect(parseKeyValue('""')).toBe('');
  });
});

describe('readKeyHeader', () => {
  it('is undefined when the header is absent', () => {
    expect(readKeyHeader({}, [], 'idempotency-key')).toBeUndefined();
  });

  it('judges "sent twice" from the raw header lines, whatever their case', () => {
    const headers = { 'idempotency-key': 'a, b' };
    expect(readKeyHeader(headers, ['Idempotency-Key', 'a, b'], 'idempotency-key')).toBe('a, b');
    expect(
      code(() => readKeyHeader(headers, ['Idempotency-Key', 'a', 'IDEMPOTENCY-KEY', 'b'], 'idempotency-key')),
    ).toBe('INVALID_KEY');
    expect(code(() => readKeyHeader({ 'idempotency-key': ['a', 'b'] }, undefined, 'idempotency-key'))).toBe(
      'INVALID_KEY',
    );
  });

  it('does not scan raw headers for a value without a comma', () => {
    const raw = new Proxy([], {
      get() {
        throw new Error('scanned');
      },
    });
    expect(readKeyHeader({ 'idempotency-key': 'abc' }, raw, 'idempotency-key')).toBe('abc');
  });
});
