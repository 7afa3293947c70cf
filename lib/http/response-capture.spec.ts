import { bodyText, CachedResponse } from '../core/cached-response';
import type { HttpPlatform } from './http-platform';
import { captureResponse, payloadOf, ReplayHeaders } from './response-capture';

/** Only what capturing reads: headers and the status code. */
function platformWith(headers: Record<string, string>): HttpPlatform {
  return {
    getHeader: (_res: unknown, name: string) => headers[name],
    statusCode: () => 201,
  } as unknown as HttpPlatform;
}

describe('captureResponse', () => {
  it('keeps a text payload as text, with the allowlisted headers and the payload kind', () => {
    const headers = new ReplayHeaders(['x-extra', 'Set-Cookie']);
    const platform = platformWith({ 'content-type': 'application/json', 'set-cookie': 'a=1', 'x-extra': 'y' });
    const response = captureResponse(platform, {}, '{"a":1}', headers);
    expect(response.statusCode).toBe(201);
    expect(bodyText(response)).toBe('{"a":1}');
    expect(response.metadata).toEqual({ 'content-type': 'application/json', 'x-extra': 'y', ':payload': 'text' });
    expect(Object.isFrozen(response.metadata)).toBe(true);
  });

  it('shares one metadata object between consecutive responses with the same headers', () => {
    const headers = new ReplayHeaders([]);
    const current: Record<string, string> = { 'content-type': 'application/json' };
    const platform = platformWith(current);
    const first = captureResponse(platform, {}, 'a', headers);
    const second = captureResponse(platform, {}, 'b', headers);
    expect(second.metadata).toBe(first.metadata);

    current.etag = '"2"';
    const third = captureResponse(platform, {}, 'c', headers);
    expect(third.metadata).not.toBe(first.metadata);
    expect(third.metadata).toEqual({ 'content-type': 'application/json', etag: '"2"', ':payload': 'text' });
    expect(first.metadata).toEqual({ 'content-type': 'application/json', ':payload': 'text' });

    const binary = captureResponse(platform, {}, new Uint8Array([1]), headers);
    expect(binary.metadata).toEqual({ 'content-type': 'application/json', etag: '"2"', ':payload': 'binary' });
    expect(captureResponse(platform, {}, undefined, headers).metadata[':payload']).toBe('none');
  });

  it('stores what the platform sends: text as its UTF-8 bytes, bytes as given, no payload as nothing', () => {
    const headers = new ReplayHeaders([]);
    const platform = platformWith({});
    const text = captureResponse(platform, {}, 'ü\ud800', headers);
    expect(Buffer.compare(text.body, Buffer.from('ü\ud800', 'utf8'))).toBe(0);
    expect(payloadOf(text)).toBe('ü\ud800');
    const bytes = new Uint8Array([0, 255]);
    const binary = captureResponse(platform, {}, bytes, headers);
    expect(binary.body).toBe(bytes);
    expect(Buffer.compare(payloadOf(binary) as Buffer, Buffer.from([0, 255]))).toBe(0);
    const none = captureResponse(platform, {}, undefined, headers);
    expect(none.body.byteLength).toBe(0);
    expect(payloadOf(none)).toBeUndefined();
    // A response built from JSON (no text kept) replays the same text.
    expect(payloadOf(CachedResponse.fromJSON(JSON.parse(JSON.stringify(text))))).toBe('ü\ufffd');
  });

  it('refuses a status code no response can have, as building any response does', () => {
    const platform = { ...platformWith({}), statusCode: () => 1000 } as HttpPlatform;
    expect(() => captureResponse(platform, {}, 'x', new ReplayHeaders([]))).toThrow(RangeError);
  });
});
