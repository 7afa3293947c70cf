import { CachedResponse, IdempotencyDecodeError } from '../index';

describe('CachedResponse', () => {
  it('stores strings as UTF-8 and keeps bytes as given', () => {
    const text = new CachedResponse({ statusCode: 201, body: 'ü' });
    expect(Array.from(text.body)).toEqual([0xc3, 0xbc]);
    expect(text.text()).toBe('ü');
    expect(text.metadata).toEqual({});
    const bytes = new Uint8Array([0, 255, 10]);
    expect(new CachedResponse({ statusCode: 200, body: bytes }).body).toBe(bytes);
  });

  it('refuses bad status codes, bodies and metadata', () => {
    for (const statusCode of [99, 1000, 200.5, NaN]) {
      expect(() => new CachedResponse({ statusCode, body: '' })).toThrow(RangeError);
    }
    expect(() => new CachedResponse({ statusCode: 200, body: 5 as unknown as string })).toThrow(TypeError);
    expect(() => new CachedResponse({ statusCode: 200, body: '', metadata: { a: 1 as unknown as string } })).toThrow(
      /metadata "a"/,
    );
  });

  it('is immutable and copies metadata', () => {
    const metadata = { etag: '"1"' };
    const response = new CachedResponse({ statusCode: 200, body: 'x', metadata });
    metadata.etag = 'changed';
    expect(response.metadata.etag).toBe('"1"');
    expect(Object.isFrozen(response)).toBe(true);
    expect(Object.isFrozen(response.metadata)).toBe(true);
  });

  it('round-trips through JSON with binary bodies', () => {
    const body = Uint8Array.from({ length: 256 }, (_, i) => i);
    const response = new CachedResponse({ statusCode: 202, body, metadata: { 'content-type': 'x/y' } });
    const back = CachedResponse.fromJSON(JSON.parse(JSON.stringify(response)));
    expect(back.equals(response)).toBe(true);
    expect(() => CachedResponse.fromJSON({ statusCode: 200 })).toThrow(IdempotencyDecodeError);
    expect(() => CachedResponse.fromJSON({ statusCode: 5, body: '' })).toThrow(IdempotencyDecodeError);
  });
});
