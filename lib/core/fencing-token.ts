import { IdempotencyDecodeError } from './errors';

const U64_MAX = (1n << 64n) - 1n;
const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;
const NONCE = /^[0-9A-Za-z_-]{1,64}$/;

// Set only while `trustedFencingToken` builds a token from parts it vouches for.
let trusted = false;

/** The JSON form of a {@link FencingToken}. */
export interface FencingTokenJSON {
  /** The token number, in decimal. */
  value: string;
  /** The claim's random nonce, when the token came from a store. */
  nonce?: string;
}

/**
 * A claim's fencing token: an unsigned 64-bit number that strictly increases per key, and an
 * opaque random nonce of the claim. Stores accept a completion, removal or touch only from the
 * token (number and nonce) of the current claim.
 */
export class FencingToken {
  readonly #value: bigint;
  readonly #nonce: string | undefined;

  constructor(value: bigint | number, nonce?: string) {
    if (trusted) {
      this.#value = value as bigint;
      this.#nonce = nonce;
      return;
    }
    const v = typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value;
    if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) {
      throw new RangeError('a fencing token is an unsigned 64-bit integer');
    }
    if (nonce !== undefined && (typeof nonce !== 'string' || !NONCE.test(nonce))) {
      throw new RangeError('a fencing token nonce is 1 to 64 characters of [0-9A-Za-z_-]');
    }
    this.#value = v;
    this.#nonce = nonce;
  }

  static fromJSON(json: unknown): FencingToken {
    const { value, nonce } = (
      typeof json === 'string' ? { value: json } : typeof json === 'object' && json !== null ? json : {}
    ) as Partial<FencingTokenJSON>;
    if (typeof value === 'string' && DECIMAL.test(value) && (nonce === undefined || typeof nonce === 'string')) {
      try {
        return new FencingToken(BigInt(value), nonce);
      } catch (error) {
        throw new IdempotencyDecodeError(`not a fencing token: ${(error as Error).message}`);
      }
    }
    throw new IdempotencyDecodeError('not a serialised fencing token');
  }

  get value(): bigint {
    return this.#value;
  }

  get nonce(): string | undefined {
    return this.#nonce;
  }

  /** Negative, zero or positive as this token's number is below, equal to or above `other`'s. */
  compare(other: FencingToken): number {
    return this.#value < other.#value ? -1 : this.#value > other.#value ? 1 : 0;
  }

  isNewerThan(other: FencingToken): boolean {
    return this.#value > other.#value;
  }

  /** Same number and same nonce: the same claim. */
  equals(other: FencingToken): boolean {
    return other instanceof FencingToken && other.#value === this.#value && other.#nonce === this.#nonce;
  }

  /** The token number in decimal (the nonce is not shown). */
  toString(): string {
    return this.#value.toString();
  }

  toJSON(): FencingTokenJSON {
    return this.#nonce === undefined
      ? { value: this.#value.toString() }
      : { value: this.#value.toString(), nonce: this.#nonce };
  }
}

/**
 * A token from parts the caller vouches for (a store's own counter and nonce): `value` a bigint
 * in range, `nonce` one `newNonce()` made. Nothing is checked: a claim makes one per request.
 * @internal
 */
export function trustedFencingToken(value: bigint, nonce: string): FencingToken {
  trusted = true;
  try {
    return new FencingToken(value, nonce);
  } finally {
    trusted = false;
  }
}
