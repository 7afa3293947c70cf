import { CachedResponse } from '../core/cached-response';
import { assertDuration } from '../core/duration';
import { StoreDecodeError } from '../core/errors';
import { Fingerprint } from '../core/fingerprint';
import { AnyEntry, completedEntry, IdempotencyEntry } from '../core/idempotency-entry';

/**
 * Reads entries of format version 1, which the previous version of the store wrote: one hash per
 * entry. This version writes format 2 (`valkey-codec.ts`) but still reads these, so that a retry
 * during a rolling upgrade sees the entry an instance of the previous version left.
 *
 * | field   | value                                                   |
 * |---------|---------------------------------------------------------|
 * | `v`     | `1`, the format version                                 |
 * | `state` | `processing` or `completed`                             |
 * | `fp`    | the fingerprint, 32 lowercase hex digits                |
 * | `token` | the fencing token number, decimal                       |
 * | `nonce` | the claim's random nonce                                |
 * | `ttl`   | the ttl the entry is stored with, in ms (lease or replay window) |
 * | `status`| completed only: the status code, decimal                |
 * | `body`  | completed only: the response body, raw bytes            |
 * | `meta`  | completed only: the metadata, a JSON object of strings  |
 * @internal
 */
export const FORMAT_V1 = '1';

/** A decoded format 1 entry with the claim that holds it. @internal */
export interface StoredEntryV1 {
  readonly entry: AnyEntry;
  readonly token: bigint;
  readonly nonce: string;
}

type Fields = Partial<Record<string, Buffer>>;

const DECIMAL = /^[1-9][0-9]{0,19}$/;
const NONCE = /^[0-9A-Za-z_-]{1,64}$/;

/** Pairs as HGETALL answers them (`[field, value, field, value, ...]`) to a record. @internal */
export function pairsToFields(pairs: readonly Buffer[]): Fields {
  const fields: Fields = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) fields[pairs[i].toString('latin1')] = pairs[i + 1];
  return fields;
}

/**
 * Decodes a format 1 entry hash (as HGETALL pairs or `hgetallBuffer` answer it).
 * @throws StoreDecodeError when the data is not a format 1 entry.
 * @internal
 */
export function decodeEntryV1(data: Fields | readonly Buffer[], where: string): StoredEntryV1 {
  const fields = Array.isArray(data) ? pairsToFields(data as readonly Buffer[]) : (data as Fields);
  const text = (name: string): string => {
    const value = fields[name];
    if (value === undefined) throw new StoreDecodeError(`${where}: not an idempotency entry (no "${name}" field)`);
    return value.toString('utf8');
  };
  const version = text('v');
  if (version !== FORMAT_V1) {
    throw new StoreDecodeError(`${where}: unsupported entry format version ${JSON.stringify(version.slice(0, 16))}`);
  }
  try {
    const state = text('state');
    if (state !== 'processing' && state !== 'completed') throw new Error(`unknown state ${JSON.stringify(state)}`);
    const fingerprint = Fingerprint.fromHex(text('fp'));
    const tokenText = text('token');
    if (!DECIMAL.test(tokenText)) throw new Error('the fencing token is not a positive decimal number');
    const token = BigInt(tokenText);
    const nonce = text('nonce');
    if (!NONCE.test(nonce)) throw new Error('the nonce is malformed');
    const ttlText = text('ttl');
    const ttl = assertDuration('ttl', /^[1-9][0-9]{0,15}$/.test(ttlText) ? Number(ttlText) : NaN);
    if (state === 'processing') return { entry: new IdempotencyEntry(fingerprint, ttl), token, nonce };
    const statusText = text('status');
    const body = fields.body;
    if (body === undefined) throw new Error('a completed entry has no "body" field');
    const metadata: unknown = JSON.parse(text('meta'));
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
      throw new Error('the metadata is not a JSON object');
    }
    const response = new CachedResponse({
      statusCode: /^[0-9]{3}$/.test(statusText) ? Number(statusText) : NaN,
      body,
      metadata: metadata as Record<string, string>,
    });
    return { entry: completedEntry(fingerprint, ttl, response), token, nonce };
  } catch (error) {
    if (error instanceof StoreDecodeError) throw error;
    throw new StoreDecodeError(`${where}: corrupt idempotency entry: ${(error as Error).message}`, { cause: error });
  }
}
