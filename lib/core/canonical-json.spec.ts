import { canonicalJson } from './canonical-json';

describe('canonicalJson', () => {
  it('ignores key order at every depth', () => {
    const a = { b: 1, a: { d: [1, { y: 2, x: 1 }], c: 'x' } };
    const b = { a: { c: 'x', d: [1, { x: 1, y: 2 }] }, b: 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe('{"a":{"c":"x","d":[1,{"x":1,"y":2}]},"b":1}');
  });

  it('orders keys as Array.prototype.sort does, for small and large objects', () => {
    const names = ['b', 'a', '10', '2', '1', 'B', 'é', 'e', '\ud83d\ude00', '', 'aa', 'a\u0000', '_', '-1', 'Z'];
    for (let size = 0; size <= 40; size++) {
      const keys = Array.from(
        { length: size },
        (_, i) => `${names[(i * 7) % names.length]}${Math.floor(i / names.length) || ''}`,
      );
      const object = Object.fromEntries(keys.map((k, i) => [k, i]));
      const expected = `{${Object.keys(object)
        .sort()
        .map((k) => `${JSON.stringify(k)}:${object[k]}`)
        .join(',')}}`;
      expect(canonicalJson(object)).toBe(expected);
    }
  });

  it('matches JSON.stringify on values without objects to sort', () => {
    for (const v of [
      null,
      true,
      false,
      0,
      -0,
      1.5,
      1e21,
      'é"\\\n\u2028',
      '\ud800x',
      { '\udfff"': '\t' },
      [],
      {},
      [null, 'a', [1, [2]]],
      NaN,
      Infinity,
    ]) {
      expect(canonicalJson(v)).toBe(JSON.stringify(v));
    }
  });

  it('leaves out what JSON leaves out, and calls toJSON', () => {
    expect(canonicalJson({ u: undefined, f: () => 1, s: Symbol('x'), a: 1 })).toBe('{"a":1}');
    expect(canonicalJson([undefined, () => 1])).toBe('[null,null]');
    expect(canonicalJson({ d: new Date(0) })).toBe('{"d":"1970-01-01T00:00:00.000Z"}');
    expect(canonicalJson(undefined)).toBeUndefined();
    expect(canonicalJson(Object.assign(Object.create(null), { z: 1, a: [] }))).toBe('{"a":[],"z":1}');
  });

  it('sorts keys by UTF-16 code units, as RFC 8785 does', () => {
    expect(canonicalJson({ '\u00e9': 1, z: 2, '\ud83d\ude00': 3, '\uffff': 4, A: 5 })).toBe(
      '{"A":5,"z":2,"\u00e9":1,"\ud83d\ude00":3,"\uffff":4}',
    );
  });

  it('does not depend on stack depth', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 50_000; i++) deep = { a: deep };
    const text = canonicalJson(deep)!;
    expect(text.length).toBe(50_000 * 6 + 1);
    let parsed: unknown = JSON.parse(JSON.stringify([1]));
    for (let i = 0; i < 50_000; i++) parsed = [parsed];
    expect(canonicalJson(parsed)!.startsWith('[[[[')).toBe(true);
  });

  it('gives the same text on either side of the recursion limit', () => {
    for (let depth = 28; depth < 38; depth++) {
      let value: unknown = { b: 1, a: [2] };
      for (let i = 0; i < depth; i++) value = i % 2 ? [value, { y: 1, x: 2 }] : { z: value, a: null };
      const text = canonicalJson(value)!;
      expect(JSON.parse(text)).toEqual(value);
      expect(text).not.toContain('"b":1,"a"');
    }
  });

  it('refuses cycles and BigInts like JSON.stringify', () => {
    const a: Record<string, unknown> = {};
    a.self = a;
    expect(() => canonicalJson(a)).toThrow(TypeError);
    expect(() => canonicalJson({ n: 1n })).toThrow(TypeError);
    // A shared (non-cyclic) object is fine.
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: [shared] })).toBe('{"a":{"x":1},"b":[{"x":1}]}');
  });
});
