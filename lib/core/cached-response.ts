import { IdempotencyDecodeError } from './errors';

export interface CachedResponseInit {
  /** HTTP-style status code, 100 to 999. */
  statusCode: number;
  /** Response body; strings are stored as UTF-8. */
  body: Uint8Array | string;
  /** Headers and the like, replayed with the body. */
  metadata?: Record<string, string>;
}

/** The JSON form of a {@link CachedResponse}: the body as base64. */
export interface CachedResponseJSON {
  statusCode: number;
  body: string;
  metadata: Record<string, string>;
}

const EMPTY = new Uint8Array(0);

/** `String.prototype.toWellFormed` (Node 20), which the ES2022 typings do not know. */
type WellFormed = string & { toWellFormed(): string };

// Set only while `trustedResponse` builds a response from parts it vouches for.
let trusted = false;
let textOf: (response: CachedResponse) => string | undefined;

/**
 * A stored response: status code, body bytes and string metadata. Immutable once built.
 *
 * A body given as a string is kept as that string, and its UTF-8 bytes are made the first time
 * `body` is read: a response that is stored in memory and replayed as text never needs them.
 */
export class CachedResponse {
  readonly statusCode: number;
  #body: Uint8Array | undefined;
  readonly #text: string | undefined;

  /** The body bytes (for a body given as a string: its UTF-8 encoding). */
  get body(): Uint8Array {
    // Its own memory, not a slice of Node's shared pool: a stored response would keep the whole
    // pool slab alive.
    return (this.#body ??= utf8Bytes(this.#text!));
  }

  readonly metadata: Readonly<Record<string, string>>;

  constructor(init: CachedResponseInit) {
    const { statusCode, body, metadata } = init ?? ({} as CachedResponseInit);
    // Checked also for trusted parts: a status code comes from the response a handler set up.
    if (!Number.isInteger(statusCode) || statusCode < 100 || statusCode > 999) {
      throw new RangeError(`statusCode must be a whole number from 100 to 999, got ${String(statusCode)}`);
    }
    if (typeof body === 'string') {
      if (body.length === 0) this.#body = EMPTY;
      else this.#text = body;
    } else if (trusted || body instanceof Uint8Array) this.#body = body;
    else throw new TypeError('body must be a Uint8Array or a string');
    this.statusCode = statusCode;
    if (trusted) {
      this.metadata = metadata!;
      Object.freeze(this);
      return;
    }
    const meta: Record<string, string> = {};
    if (metadata !== undefined) {
      if (typeof metadata !== 'object' || metadata === null)
        throw new TypeError('metadata must be an object of strings');
      for (const [name, value] of Object.entries(metadata)) {
        if (typeof value !== 'string') throw new TypeError(`metadata "${name}" must be a string`);
        meta[name] = value;
      }
    }
    this.metadata = Object.freeze(meta);
    Object.freeze(this);
  }

  /** The body decoded as UTF-8. */
  text(): string {
    // As decoding its bytes would give: a lone surrogate is encoded, and so decoded, as U+FFFD.
    if (this.#text !== undefined) return (this.#text as WellFormed).toWellFormed();
    const body = this.#body!;
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  }

  equals(other: CachedResponse): boolean {
    if (!(other instanceof CachedResponse) || other.statusCode !== this.statusCode) return false;
    // Equal texts have equal bytes; different texts can still encode alike (lone surrogates).
    if (this.#text === undefined || this.#text !== other.#text) {
      if (Buffer.compare(this.body, other.body) !== 0) return false;
    }
    const a = Object.keys(this.metadata);
    const b = Object.keys(other.metadata);
    return a.length === b.length && a.every((k) => other.metadata[k] === this.metadata[k]);
  }

  static fromJSON(json: unknown): CachedResponse {
    const j = json as Partial<CachedResponseJSON> | null;
    if (typeof j !== 'object' || j === null || typeof j.body !== 'string') {
      throw new IdempotencyDecodeError('not a serialised cached response');
    }
    try {
      return new CachedResponse({
        statusCode: j.statusCode as number,
        body: Buffer.from(j.body, 'base64'),
        metadata: j.metadata ?? {},
      });
    } catch (error) {
      throw new IdempotencyDecodeError(`not a serialised cached response: ${(error as Error).message}`);
    }
  }

  toJSON(): CachedResponseJSON {
    const body = this.body;
    return {
      statusCode: this.statusCode,
      body: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64'),
      metadata: { ...this.metadata },
    };
  }

  static {
    textOf = (response) => response.#text;
  }
}

function utf8Bytes(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text, 'utf8'));
  bytes.write(text, 0, 'utf8');
  return bytes;
}

/**
 * A response built from parts the caller vouches for: a valid status code, a body, and metadata
 * that is already a frozen record of strings (the metadata of another response, or one built and
 * frozen by the caller). Only the status code is checked; nothing is copied, so responses can
 * share one metadata object.
 * @internal
 */
export function trustedResponse(
  statusCode: number,
  body: Uint8Array | string,
  metadata: Readonly<Record<string, string>>,
): CachedResponse {
  trusted = true;
  try {
    return new CachedResponse({ statusCode, body, metadata });
  } finally {
    trusted = false;
  }
}

/**
 * The body of `response` as the text it was given as, or `undefined` when it was given as bytes.
 * @internal
 */
export function bodyText(response: CachedResponse): string | undefined {
  return textOf(response);
}

/**
 * At least the size of the body in memory: the length of its bytes, or of its text's UTF-8
 * encoding (never less than V8 keeps: one byte per character for Latin-1 text, two otherwise, four
 * for a surrogate pair). Makes no bytes.
 * @internal
 */
export function bodySize(response: CachedResponse): number {
  const text = textOf(response);
  return text === undefined ? response.body.byteLength : Buffer.byteLength(text, 'utf8');
}
