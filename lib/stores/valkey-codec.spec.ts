import { CachedResponse } from '../core/cached-response';
import { StoreDecodeError } from '../core/errors';
import { claimId, completedValue, decodeEntry, HEADER_BYTES } from './valkey-codec';

const NONCE = 'AbCdEfGhIjKlMnOpQr_-09';
const FP = '0123456789abcdef0123456789abcdef';

function entry(metadata: Record<string, string>, body = '{"a":1}', statusCode = 201): Buffer {
  return completedValue(claimId(42, NONCE) + FP, 60_000, new CachedResponse({ statusCode, body, metadata }));
}

/** `value` with `text` written over it at `offset` (latin1). */
function patched(value: Buffer, offset: number, text: string): Buffer {
  const copy = Buffer.from(value);
  copy.write(text, offset, 'latin1');
  return copy;
}

describe('decodeEntry (format 2)', () => {
  it('decodes what completedValue writes: fingerprint, ttl, status, metadata, body', () => {
    const decoded = decodeEntry(entry({ 'content-type': 'application/json', ':payload': 'text' }), 'k');
    expect(decoded.isProcessing()).toBe(false);
    expect(decoded.fingerprint.toString()).toBe(FP);
    expect(decoded.ttl).toBe(60_000);
    const response = decoded.response!;
    expect(response.statusCode).toBe(201);
    expect(response.text()).toBe('{"a":1}');
    expect(response.metadata).toEqual({ 'content-type': 'application/json', ':payload': 'text' });
    expect(Object.isFrozen(response.metadata)).toBe(true);
  });

  it('shares one frozen metadata object between entries with the same metadata, not with others', () => {
    const a = decodeEntry(entry({ etag: '"1"' }), 'k').response!;
    const b = decodeEntry(entry({ etag: '"1"' }, 'other'), 'k').response!;
    const c = decodeEntry(entry({ etag: '"2"' }), 'k').response!;
    expect(b.metadata).toBe(a.metadata);
    expect(c.metadata).toEqual({ etag: '"2"' });
    expect(a.metadata).toEqual({ etag: '"1"' });
    expect(decodeEntry(entry({}), 'k').response!.metadata).toEqual({});
  });

  it('accepts an uppercase fingerprint, as fromHex does', () => {
    const decoded = decodeEntry(patched(entry({}), 40, FP.toUpperCase()), 'k');
    expect(decoded.fingerprint.toString()).toBe(FP);
  });

  it('refuses malformed fingerprints, tokens, nonces and metadata', () => {
    const good = entry({ etag: '"1"' });
    expect(() => decodeEntry(patched(good, 40, 'g'), 'k')).toThrow(/32 hexadecimal digits/);
    expect(() => decodeEntry(patched(good, 2, 'A'), 'k')).toThrow(/the fencing token is malformed/);
    expect(() => decodeEntry(patched(good, 2, ' '), 'k')).toThrow(/the fencing token is malformed/);
    expect(() => decodeEntry(patched(good, 18, '+'), 'k')).toThrow(/the nonce is malformed/);
    expect(() => decodeEntry(patched(good, 39, '='), 'k')).toThrow(/the nonce is malformed/);
    // Metadata of the same length as a cached one, with a value that is not a string.
    const meta = '{"etag":"\\"1\\""}';
    const bad = patched(good, HEADER_BYTES, '{"etag":1234567}'.padEnd(meta.length, ' '));
    expect(() => decodeEntry(bad, 'k')).toThrow(StoreDecodeError);
    expect(() => decodeEntry(bad, 'k')).toThrow(/metadata "etag" must be a string/);
    expect(() => decodeEntry(patched(good, HEADER_BYTES, '['), 'k')).toThrow(StoreDecodeError);
    // The good one still decodes after the bad ones.
    expect(decodeEntry(good, 'k').response!.metadata).toEqual({ etag: '"1"' });
  });

  it('checks the status code before the metadata, as new CachedResponse does', () => {
    const good = entry({ etag: '"x"' });
    const bad = Buffer.from(good);
    bad.writeUInt16BE(99, 78);
    expect(() => decodeEntry(bad, 'k')).toThrow(/statusCode must be a whole number/);
  });
});
