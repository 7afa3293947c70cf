import { xxh3 } from '@node-rs/xxhash';
import { Fingerprint } from './fingerprint';

/** Turns an operation name and a request body into a {@link Fingerprint}. */
export interface FingerprintStrategy {
  compute(operation: string, body: Uint8Array | string): Fingerprint;
}

/**
 * XXH3-128 (seed 0) over `LE64(byteLength(operation)) ‖ operation ‖ body`, all UTF-8.
 * The length prefix keeps `("GET/ab", "")` and `("GET", "/ab")` apart.
 */
export class DefaultFingerprintStrategy implements FingerprintStrategy {
  compute(operation: string, body: Uint8Array | string): Fingerprint {
    const opLength = Buffer.byteLength(operation, 'utf8');
    const bodyLength = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.byteLength;
    const input = Buffer.allocUnsafe(8 + opLength + bodyLength);
    input.writeUInt32LE(opLength, 0);
    input.writeUInt32LE(0, 4);
    input.write(operation, 8, 'utf8');
    if (typeof body === 'string') input.write(body, 8 + opLength, 'utf8');
    else input.set(body, 8 + opLength);
    return Fingerprint.fromBigInt(xxh3.xxh128(input));
  }
}
