import { xxh3 } from '@node-rs/xxhash';
import { Fingerprint, trustedFingerprint } from './fingerprint';

/** Turns an operation name and a request body into a {@link Fingerprint}. */
export interface FingerprintStrategy {
  compute(operation: string, body: Uint8Array | string): Fingerprint;
}

/**
 * `LE64(n)` as text, for every operation length `n` below 128: one character per byte, each below
 * 0x80, so its UTF-8 form is those same eight bytes.
 */
const SHORT_PREFIXES = Array.from({ length: 128 }, (_, n) => String.fromCharCode(n, 0, 0, 0, 0, 0, 0, 0));

/**
 * XXH3-128 (seed 0) over `LE64(byteLength(operation)) ‖ operation ‖ body`, all UTF-8.
 * The length prefix keeps `("GET/ab", "")` and `("GET", "/ab")` apart.
 */
export class DefaultFingerprintStrategy implements FingerprintStrategy {
  compute(operation: string, body: Uint8Array | string): Fingerprint {
    const opLength = Buffer.byteLength(operation, 'utf8');
    // A text body and a short operation are hashed as one string: the hash function encodes it as
    // UTF-8 itself, which costs about half of building the bytes here. Not when the operation ends
    // in a lone high surrogate, which the joined text could pair with the body's first character.
    if (typeof body === 'string' && opLength < SHORT_PREFIXES.length && !endsInHighSurrogate(operation)) {
      return trustedFingerprint(xxh3.xxh128(SHORT_PREFIXES[opLength] + operation + body));
    }
    const bodyLength = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.byteLength;
    const input = Buffer.allocUnsafe(8 + opLength + bodyLength);
    input.writeUInt32LE(opLength, 0);
    input.writeUInt32LE(0, 4);
    input.write(operation, 8, 'utf8');
    if (typeof body === 'string') input.write(body, 8 + opLength, 'utf8');
    else input.set(body, 8 + opLength);
    return trustedFingerprint(xxh3.xxh128(input));
  }
}

function endsInHighSurrogate(text: string): boolean {
  return text.length > 0 && (text.charCodeAt(text.length - 1) & 0xfc00) === 0xd800;
}
