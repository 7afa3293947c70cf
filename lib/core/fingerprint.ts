import { IdempotencyDecodeError } from './errors';

const HEX128 = /^[0-9a-f]{32}$/;
const U128_MAX = (1n << 128n) - 1n;

let trusted: (value: bigint, hex?: string) => Fingerprint;

/** A 128-bit request fingerprint. Two requests with equal fingerprints are the same request. */
export class Fingerprint {
  // The number itself: made and compared without text (a request's fingerprint is usually only
  // compared); the hex digits are made when first asked for.
  readonly #value: bigint;
  #hex: string | undefined;

  private constructor(value: bigint, hex?: string) {
    this.#value = value;
    this.#hex = hex;
  }

  /** From 32 hex digits (either case). */
  static fromHex(hex: string): Fingerprint {
    const lower = typeof hex === 'string' ? hex.toLowerCase() : '';
    if (!HEX128.test(lower)) {
      throw new IdempotencyDecodeError('a fingerprint is 32 hexadecimal digits');
    }
    return new Fingerprint(BigInt(`0x${lower}`), lower);
  }

  /** From an unsigned 128-bit integer. */
  static fromBigInt(value: bigint): Fingerprint {
    if (typeof value !== 'bigint' || value < 0n || value > U128_MAX) {
      throw new RangeError('a fingerprint is an unsigned 128-bit integer');
    }
    return new Fingerprint(value);
  }

  /** From 16 bytes, most significant first. */
  static fromBytes(bytes: Uint8Array): Fingerprint {
    if (!(bytes instanceof Uint8Array) || bytes.byteLength !== 16) {
      throw new RangeError('a fingerprint is 16 bytes');
    }
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, 16);
    return new Fingerprint((view.readBigUInt64BE(0) << 64n) | view.readBigUInt64BE(8));
  }

  static fromJSON(json: unknown): Fingerprint {
    return Fingerprint.fromHex(json as string);
  }

  equals(other: Fingerprint): boolean {
    return other instanceof Fingerprint && other.#value === this.#value;
  }

  toBigInt(): bigint {
    return this.#value;
  }

  /** 16 bytes, most significant first. */
  toBytes(): Uint8Array {
    const bytes = Buffer.allocUnsafe(16);
    bytes.writeBigUInt64BE(this.#value >> 64n, 0);
    bytes.writeBigUInt64BE(this.#value & 0xffffffffffffffffn, 8);
    return bytes;
  }

  /** 32 lowercase hex digits. */
  toString(): string {
    return (this.#hex ??= this.#value.toString(16).padStart(32, '0'));
  }

  toJSON(): string {
    return this.toString();
  }

  static {
    trusted = (value, hex) => new Fingerprint(value, hex);
  }
}

/**
 * A fingerprint of a value known to be an unsigned 128-bit integer (a hash function's output),
 * without the checks `fromBigInt` makes.
 * @internal
 */
export function trustedFingerprint(value: bigint): Fingerprint {
  return trusted(value);
}

/**
 * The fingerprint of 32 digits known to be lowercase hex (checked by the caller), without the
 * checks `fromHex` makes.
 * @internal
 */
export function trustedFingerprintHex(hex: string): Fingerprint {
  return trusted(BigInt(`0x${hex}`), hex);
}
