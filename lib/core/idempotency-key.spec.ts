import { IdempotencyKey, IdempotencyKeyError } from '../index';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(IdempotencyKeyError);
    return (error as IdempotencyKeyError).code;
  }
  return undefined;
}

describe('IdempotencyKey', () => {
  it('accepts ordinary keys and keeps them as given', () => {
    for (const value of ['a', 'order-42', 'with space', 'ü✓', '"quoted",comma', 'x'.repeat(255)]) {
      expect(new IdempotencyKey(value).toString()).toBe(value);
    }
  });

  it('validates in order: empty, too long (UTF-8 bytes), invalid characters', () => {
    expect(codeOf(() => new IdempotencyKey(''))).toBe('EMPTY_KEY');
    expect(codeOf(() => new IdempotencyKey('x'.repeat(256)))).toBe('KEY_TOO_LONG');
    // 128 two-byte characters: 128 code units but 256 bytes.
    expect(codeOf(() => new IdempotencyKey('é'.repeat(128)))).toBe('KEY_TOO_LONG');
    expect(codeOf(() => new IdempotencyKey('é'.repeat(127) + 'x'))).toBeUndefined();
    // Too long wins over invalid characters.
    expect(codeOf(() => new IdempotencyKey(':'.repeat(300)))).toBe('KEY_TOO_LONG');
    for (const bad of ['a:b', 'a/b', 'a\nb', 'a\x00', '\x1f', 'a\x7f', '\tb']) {
      expect(codeOf(() => new IdempotencyKey(bad))).toBe('INVALID_KEY');
    }
    // Unpaired surrogates have no UTF-8: stores would see U+FFFD, two keys as one. Pairs are fine.
    for (const bad of ['a\uD800', '\uDC00b', 'a\uDC00\uD800']) {
      expect(codeOf(() => new IdempotencyKey(bad))).toBe('INVALID_KEY');
      expect(codeOf(() => new IdempotencyKey('k').scoped(bad))).toBe('INVALID_SCOPE');
    }
    expect(codeOf(() => new IdempotencyKey('a\uD83D\uDE00'))).toBeUndefined();
  });

  it('treats a non-string as empty', () => {
    expect(codeOf(() => new IdempotencyKey(undefined as unknown as string))).toBe('EMPTY_KEY');
  });

  it('default() is a random lowercase hyphenated UUID v4', () => {
    const a = IdempotencyKey.default().toString();
    const b = IdempotencyKey.default().toString();
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a).not.toBe(b);
  });

  it('scoped() joins with "/" and can be repeated', () => {
    const key = new IdempotencyKey('k');
    const scoped = key.scoped('alice').scoped('charges');
    expect(scoped.toString()).toBe('k/alice/charges');
    expect(key.toString()).toBe('k');
    expect(scoped.equals(IdempotencyKey.fromJSON('k/alice/charges'))).toBe(true);
  });

  it('scoped() validates the scope and the total length', () => {
    const key = new IdempotencyKey('k');
    expect(codeOf(() => key.scoped(''))).toBe('EMPTY_SCOPE');
    for (const bad of ['a:b', 'a/b', 'a\r']) expect(codeOf(() => key.scoped(bad))).toBe('INVALID_SCOPE');
    expect(codeOf(() => key.scoped('x'.repeat(253)))).toBeUndefined();
    expect(codeOf(() => key.scoped('x'.repeat(254)))).toBe('KEY_TOO_LONG');
    expect(codeOf(() => new IdempotencyKey('é'.repeat(120)).scoped('é'.repeat(8)))).toBe('KEY_TOO_LONG');
  });

  it('round-trips through JSON and refuses malformed JSON', () => {
    const key = new IdempotencyKey('abc').scoped('u1');
    expect(JSON.stringify({ key })).toBe('{"key":"abc/u1"}');
    expect(IdempotencyKey.fromJSON(JSON.parse(JSON.stringify(key))).toString()).toBe('abc/u1');
    expect(() => IdempotencyKey.fromJSON(42)).toThrow('serialised as a string');
    expect(codeOf(() => IdempotencyKey.fromJSON('a//b'))).toBe('EMPTY_SCOPE');
    expect(codeOf(() => IdempotencyKey.fromJSON(''))).toBe('EMPTY_KEY');
  });
});
