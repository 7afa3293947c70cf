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

/** A stored response: status code, body bytes and string metadata. Immutable once built. */
export class CachedResponse {
  readonly statusCode: number;
  readonly body: Uint8Array;
  readonly metadata: Readonly<Record<string, string>>;

  constructor(init: CachedResponseInit) {
    const { statusCode, body, metadata } = init ?? ({} as CachedResponseInit);
    if (!Number.isInteger(statusCode) || statusCode < 100 || statusCode > 999) {
      throw new RangeError(`statusCode must be a whole number from 100 to 999, got ${String(statusCode)}`);
    }
    if (typeof body === 'string') this.body = body.length === 0 ? EMPTY : Buffer.from(body, 'utf8');
    else if (body instanceof Uint8Array) this.body = body;
    else throw new TypeError('body must be a Uint8Array or a string');
    const meta: Record<string, string> = {};
    if (metadata !== undefined) {
      if (typeof metadata !== 'object' || metadata === null)
        throw new TypeError('metadata must be an object of strings');
      for (const [name, value] of Object.entries(metadata)) {
        if (typeof value !== 'string') throw new TypeError(`metadata "${name}" must be a string`);
        meta[name] = value;
      }
    }
    this.statusCode = statusCode;
    this.metadata = Object.freeze(meta);
    Object.freeze(this);
  }

  /** The body decoded as UTF-8. */
  text(): string {
    return Buffer.from(this.body.buffer, this.body.byteOffset, this.body.byteLength).toString('utf8');
  }

  equals(other: CachedResponse): boolean {
    if (!(other instanceof CachedResponse) || other.statusCode !== this.statusCode) return false;
    if (Buffer.compare(this.body, other.body) !== 0) return false;
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
    return {
      statusCode: this.statusCode,
      body: Buffer.from(this.body.buffer, this.body.byteOffset, this.body.byteLength).toString('base64'),
      metadata: { ...this.metadata },
    };
  }
}
