import { IdempotencyDecodeError } from './errors';

const HEX128 = /^[0-9a-f]{32}$/;
const U128_MAX = (1n << 128n) - 1n;

/** A 128-bit request fingerprint. Two requests with equal fingerprints are the same request. */
export class Fingerprint {
  // 32 lowercase hex digits: cheap to compare, to store and to serialise.
  readonly #hex: string;

  private constructor(hex: string) {
    this.#hex = hex;
  }

  /** From 32 hex digits (either case). */
  static fromHex(hex: string): Fingerprint {
    const lower = typeof hex === 'string' ? hex.toLowerCase() : '';
    if (!HEX128.test(lower)) {
      throw new IdempotencyDecodeError('a fingerprint is 32 hexadecimal digits');
    }
    return new Fingerprint(lower);
  }

  /** From an unsigned 128-bit integer. */
  static fromBigInt(value: bigint): Fingerprint {
    if (typeof value !== 'bigint' || value < 0n || value > U128_MAX) {
      throw new RangeError('a fingerprint is an unsigned 128-bit integer');
    }
    return new Fingerprint(value.toString(16).padStart(32, '0'));
  }

  /** From 16 bytes, most significant first. */
  static fromBytes(bytes: Uint8Array): Fingerprint {
    if (!(bytes instanceof Uint8Array) || bytes.byteLength !== 16) {
      throw new RangeError('a fingerprint is 16 bytes');
    }
    return new Fingerprint(Buffer.from(bytes.buffer, bytes.byteOffset, 16).toString('hex'));
  }

  static fromJSON(json: unknown): Fingerprint {
    return Fingerprint.fromHex(json as string);
  }

  equals(other: Fingerprint): boolean {
    return other instanceof Fingerprint && other.#hex === this.#hex;
  }

  toBigInt(): bigint {
    return BigInt(`0x${this.#hex}`);
  }

  /** 16 bytes, most significant first. */
  toBytes(): Uint8Array {
    return Buffer.from(this.#hex, 'hex');
  }

  /** 32 lowercase hex digits. */
  toString(): string {
    return this.#hex;
  }

  toJSON(): string {
    return this.#hex;
  }
}
