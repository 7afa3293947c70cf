import { CachedResponse } from '../core/cached-response';
import { assertDuration } from '../core/duration';
import { StoreDecodeError } from '../core/errors';
import { Fingerprint } from '../core/fingerprint';
import { AnyEntry, completedEntry, IdempotencyEntry } from '../core/idempotency-entry';

/**
 * The stored form of an entry, format version 1: one hash per entry.
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
 *
 * The Lua scripts in `lua/` write these fields; this module reads them.
 * @internal
 */
export const FORMAT_VERSION = '1';

/** A decoded entry with the claim that holds it. @internal */
export interface StoredEntry {
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
 * Decodes an entry hash (as `hgetallBuffer` answers it).
 * @throws StoreDecodeError when the data is not an entry this version wrote.
 * @internal
 */
export function decodeEntry(fields: Fields, where: string): StoredEntry {
  const text = (name: string): string => {
    const value = fields[name];
    if (value === undefined) throw new StoreDecodeError(`${where}: not an idempotency entry (no "${name}" field)`);
    return value.toString('utf8');
  };
  const version = text('v');
  if (version !== FORMAT_VERSION) {
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
