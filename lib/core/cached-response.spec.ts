import { CachedResponse, IdempotencyDecodeError } from '../index';
import { bodySize, bodyText, trustedResponse } from './cached-response';

describe('CachedResponse', () => {
  it('stores strings as UTF-8 and keeps bytes as given', () => {
    const text = new CachedResponse({ statusCode: 201, body: 'ü' });
    expect(Array.from(text.body)).toEqual([0xc3, 0xbc]);
    expect(text.text()).toBe('ü');
    expect(text.metadata).toEqual({});
    const bytes = new Uint8Array([0, 255, 10]);
    expect(new CachedResponse({ statusCode: 200, body: bytes }).body).toBe(bytes);
  });

  it('keeps a text body as text, and makes its bytes once, in memory of their own', () => {
    const text = 'ünïcødé ✓ 😀';
    const response = new CachedResponse({ statusCode: 200, body: text });
    expect(response.text()).toBe(text);
    const body = response.body;
    expect(Buffer.from(body).toString('utf8')).toBe(text);
    // Not a slice of Node's shared pool, which a stored response would keep alive.
    expect(body.buffer.byteLength).toBe(body.byteLength);
    expect(response.body).toBe(body);
    expect(new CachedResponse({ statusCode: 200, body: '' }).body.byteLength).toBe(0);
  });

  it('compares text and byte bodies by their bytes', () => {
    const text = new CachedResponse({ statusCode: 200, body: 'ü' });
    expect(text.equals(new CachedResponse({ statusCode: 200, body: Buffer.from('ü') }))).toBe(true);
    expect(text.equals(new CachedResponse({ statusCode: 200, body: 'ü' }))).toBe(true);
    expect(text.equals(new CachedResponse({ statusCode: 200, body: 'u' }))).toBe(false);
    // Different text, same bytes: both lone surrogates are sent as U+FFFD.
    const a = new CachedResponse({ statusCode: 200, body: '\ud800' });
    expect(a.equals(new CachedResponse({ statusCode: 200, body: '\udbff' }))).toBe(true);
    expect(JSON.parse(JSON.stringify(text))).toEqual({ statusCode: 200, body: 'w7w=', metadata: {} });
  });

  it('gives a text body the bytes Buffer.from(text) gives, for every kind of text', () => {
    const texts = ['a', 'ü', '€', '😀', 'x\u0000y', '\ud800', 'a\udc00b', '\ud83d', '\ude00\ud83d', 'ä'.repeat(5000)];
    for (const text of texts) {
      const response = new CachedResponse({ statusCode: 200, body: text });
      expect(Buffer.compare(response.body, Buffer.from(text, 'utf8'))).toBe(0);
      // As its bytes decode: a lone surrogate reads back as U+FFFD, like the bytes on the wire.
      expect(response.text()).toBe(Buffer.from(text, 'utf8').toString('utf8'));
      expect(response.equals(new CachedResponse({ statusCode: 200, body: Buffer.from(text, 'utf8') }))).toBe(true);
      expect(JSON.stringify(response)).toBe(
        JSON.stringify(new CachedResponse({ statusCode: 200, body: Buffer.from(text, 'utf8') })),
      );
    }
    expect(new CachedResponse({ statusCode: 200, body: '\ud800' }).text()).toBe('\ufffd');
  });

  it('tells text bodies apart by status code, bytes and metadata', () => {
    const base = new CachedResponse({ statusCode: 200, body: 'same', metadata: { etag: '"1"' } });
    expect(base.equals(new CachedResponse({ statusCode: 200, body: 'same', metadata: { etag: '"1"' } }))).toBe(true);
    expect(base.equals(new CachedResponse({ statusCode: 201, body: 'same', metadata: { etag: '"1"' } }))).toBe(false);
    expect(base.equals(new CachedResponse({ statusCode: 200, body: 'same', metadata: { etag: '"2"' } }))).toBe(false);
    expect(base.equals(new CachedResponse({ statusCode: 200, body: 'same' }))).toBe(false);
    expect(base.equals(new CachedResponse({ statusCode: 200, body: 'samE', metadata: { etag: '"1"' } }))).toBe(false);
    expect(base.equals(new CachedResponse({ statusCode: 200, body: 'same ', metadata: { etag: '"1"' } }))).toBe(false);
    // A lone surrogate and U+FFFD are sent as the same bytes.
    expect(
      new CachedResponse({ statusCode: 200, body: 'a\ud800' }).equals(
        new CachedResponse({ statusCode: 200, body: 'a\ufffd' }),
      ),
    ).toBe(true);
    expect(base.equals({ ...base } as CachedResponse)).toBe(false);
  });

  it('round-trips a text body through JSON, as bytes', () => {
    const response = new CachedResponse({ statusCode: 200, body: '{"a":"ü😀"}', metadata: { 'content-type': 'x/y' } });
    const json = JSON.parse(JSON.stringify(response)) as { body: string };
    expect(Buffer.from(json.body, 'base64').toString('utf8')).toBe('{"a":"ü😀"}');
    const back = CachedResponse.fromJSON(json);
    expect(back.equals(response)).toBe(true);
    expect(back.text()).toBe(response.text());
    // The text survives reading its bytes, which never change afterwards.
    expect(response.text()).toBe('{"a":"ü😀"}');
  });

  it('counts a text body at no less than V8 keeps it (bounds of MemoryStore rely on it)', () => {
    expect(bodySize(new CachedResponse({ statusCode: 200, body: 'abc' }))).toBe(3);
    // Two bytes a character in V8 for text outside Latin-1; UTF-8 needs three here.
    expect(bodySize(new CachedResponse({ statusCode: 200, body: '€€€€' }))).toBeGreaterThanOrEqual(8);
    expect(bodySize(new CachedResponse({ statusCode: 200, body: '😀' }))).toBe(4);
    expect(bodySize(new CachedResponse({ statusCode: 200, body: new Uint8Array(5) }))).toBe(5);
  });

  it('checks the status code of a trusted response too', () => {
    expect(() => trustedResponse(1000, 'x', Object.freeze({}))).toThrow(RangeError);
    // And the next response is checked as usual (the trust does not linger after a refusal).
    expect(() => new CachedResponse({ statusCode: 200, body: '', metadata: { a: 1 as unknown as string } })).toThrow(
      TypeError,
    );
    const trusted = trustedResponse(200, 'x', Object.freeze({ 'content-type': 'text/plain' }));
    expect(bodyText(trusted)).toBe('x');
    expect(bodyText(new CachedResponse({ statusCode: 200, body: Buffer.from('x') }))).toBeUndefined();
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
