import { bodyText, CachedResponse, trustedResponse } from '../core/cached-response';
import { assertDuration } from '../core/duration';
import { StoreDecodeError } from '../core/errors';
import { Fingerprint, trustedFingerprintHex } from '../core/fingerprint';
import { AnyEntry, completedEntry, IdempotencyEntry } from '../core/idempotency-entry';

/**
 * The stored form of an entry, format version 2: one string per entry, an 84-byte header and,
 * once completed, the metadata and the body.
 *
 * | offset   | bytes | field                                                                   |
 * |----------|-------|-------------------------------------------------------------------------|
 * | 0        | 1     | format version, the byte 0x02                                           |
 * | 1        | 1     | state: `p` processing, `w` processing and found in flight, `c` completed, `u` completed but not yet acknowledged (durability) |
 * | 2        | 16    | fencing token number, 16 lowercase hex digits (the claim script's INCR) |
 * | 18       | 22    | the claim's nonce, base64url                                            |
 * | 40       | 32    | fingerprint, 32 lowercase hex digits                                    |
 * | 72       | 6     | ttl in ms (lease or replay window), unsigned big-endian                 |
 * | 78       | 2     | status code, unsigned big-endian; 0 while processing                    |
 * | 80       | 4     | metadata length `m`, unsigned big-endian; 0 while processing or empty   |
 * | 84       | m     | metadata: a JSON object of strings, UTF-8                               |
 * | 84 + m   | rest  | body, raw bytes                                                         |
 *
 * Bytes 2 to 39 are the claim id (token and nonce). The scripts in `lua/` only compare fixed
 * byte ranges of the header with strings this module builds: a check is one string comparison,
 * and the header is read with GETRANGE, never with the body. State `w` is a processing entry that
 * a claim found in flight (the claim script marks it): only its completion or release is
 * announced to the requests waiting for the key, so an entry nobody asked for ends without a
 * message. The scripts' common path expects `p`; `w` takes their slower one. State `u` is a
 * completed entry written by a store with `durability` whose replicas (or AOF writes) have not
 * acknowledged it yet: its replays wait for them (a `WAIT` behind the read), and once they did the
 * store rewrites the byte to `c` (`ack.lua`), so later replays, also on a promoted replica, answer
 * at once.
 * @internal
 */
export const FORMAT_VERSION = 2;
/** Bytes before the metadata. @internal */
export const HEADER_BYTES = 84;
/** Length of a claim id: the token in 16 hex digits, then the 22-character nonce. @internal */
export const CLAIM_ID_LENGTH = 38;
/** The first two bytes of a processing entry (format version, state). @internal */
export const PROCESSING = '\x02p';
/** The first two bytes of a completed entry. @internal */
export const COMPLETED = '\x02c';
/** The first two bytes of a completed entry not yet acknowledged as `durability` asks. @internal */
export const UNACKNOWLEDGED = '\x02u';
/** The state byte of {@link UNACKNOWLEDGED}. @internal */
export const STATE_UNACKNOWLEDGED = 0x75; // 'u'
/**
 * Stands in for the claim id of a token this store did not issue (a foreign object, or a nonce of
 * another length): it has the right length and never equals a stored one (`~` is not a hex digit).
 * @internal
 */
export const NO_CLAIM = '~'.repeat(CLAIM_ID_LENGTH);

const NONCE_LENGTH = 22;
const FINGERPRINT_HEX = 32;
const STATE_PROCESSING = 0x70; // 'p'
const STATE_WATCHED = 0x77; // 'w': processing, found in flight by a claim
const STATE_COMPLETED = 0x63; // 'c'
const ZEROS = '0000000000000000';

/** Whether bytes `start` to `end` of `value` are all lowercase hex digits (`[0-9a-f]`). */
function lowerHexBytes(value: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = value[i];
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

/** Whether bytes `start` to `end` of `value` are all base64url characters (`[0-9A-Za-z_-]`). */
function base64urlBytes(value: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = value[i];
    if (!(
      (c >= 0x30 && c <= 0x39) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      c === 0x5f ||
      c === 0x2d
    )) {
      return false;
    }
  }
  return true;
}

// The metadata last decoded, as text and as the checked, frozen object a response holds: a route's
// entries nearly always carry the same metadata, which is then neither parsed nor checked again.
let lastMetaText: string | undefined;
let lastMeta: Readonly<Record<string, string>> | undefined;
const NO_BODY = new Uint8Array(0);

/**
 * The metadata of an entry with `statusCode` from its JSON text: the checks and copy of
 * `new CachedResponse` (the status code checked first, as there).
 */
function metadataOf(statusCode: number, text: string): Readonly<Record<string, string>> {
  if (text === lastMetaText) return lastMeta!;
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error('the metadata is not a JSON object');
  }
  const metadata = new CachedResponse({ statusCode, body: NO_BODY, metadata: parsed as Record<string, string> })
    .metadata;
  lastMetaText = text;
  lastMeta = metadata;
  return metadata;
}

/**
 * The claim id of token number `token` and `nonce`, as the entry stores it; {@link NO_CLAIM}
 * when the nonce cannot be one this store made.
 * @internal
 */
export function claimId(token: number | bigint, nonce: string | undefined): string {
  if (nonce === undefined || nonce.length !== NONCE_LENGTH) return NO_CLAIM;
  const hex = token.toString(16);
  return hex.length > 16 ? NO_CLAIM : ZEROS.slice(hex.length) + hex + nonce;
}

/**
 * What the claim script stores after the token it draws: the nonce, the fingerprint, the lease
 * and an empty status and metadata length (header bytes 18 to 83).
 * @internal
 */
export function claimTail(nonce: string, fingerprint: string, leaseMs: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES - 18);
  out.write(nonce, 0, NONCE_LENGTH, 'latin1');
  out.write(fingerprint, NONCE_LENGTH, FINGERPRINT_HEX, 'latin1');
  out.writeUIntBE(leaseMs, 54, 6);
  out.writeUInt16BE(0, 60);
  out.writeUInt32BE(0, 62);
  return out;
}

/** A ttl as header bytes 72 to 77 (what touch rewrites in place). @internal */
export function ttlBytes(ttlMs: number): Buffer {
  const out = Buffer.allocUnsafe(6);
  out.writeUIntBE(ttlMs, 0, 6);
  return out;
}

/**
 * The completed entry of the claim `idAndFingerprint` (claim id then fingerprint: header bytes 2
 * to 71), to live `ttlMs`; `head` is {@link UNACKNOWLEDGED} for a store with `durability`.
 * @internal
 */
export function completedValue(
  idAndFingerprint: string,
  ttlMs: number,
  response: CachedResponse,
  head: string = COMPLETED,
): Buffer {
  const json = JSON.stringify(response.metadata);
  const meta = json === '{}' ? '' : json;
  const metaBytes = meta === '' ? 0 : Buffer.byteLength(meta, 'utf8');
  // A body kept as text is encoded straight into the entry, not into bytes of its own first.
  const text = bodyText(response);
  const body = text === undefined ? response.body : undefined;
  const bodyBytes = body === undefined ? Buffer.byteLength(text!, 'utf8') : body.byteLength;
  const out = Buffer.allocUnsafe(HEADER_BYTES + metaBytes + bodyBytes);
  out.write(head, 0, 2, 'latin1');
  out.write(idAndFingerprint, 2, CLAIM_ID_LENGTH + FINGERPRINT_HEX, 'latin1');
  out.writeUIntBE(ttlMs, 72, 6);
  out.writeUInt16BE(response.statusCode, 78);
  out.writeUInt32BE(metaBytes, 80);
  if (metaBytes > 0) out.write(meta, HEADER_BYTES, metaBytes, 'utf8');
  if (body === undefined) out.write(text!, HEADER_BYTES + metaBytes, bodyBytes, 'utf8');
  else out.set(body, HEADER_BYTES + metaBytes);
  return out;
}

/**
 * Decodes a format 2 entry. The body of a completed entry is a view of `value`, not a copy.
 * @throws StoreDecodeError when `value` is not a format 2 entry.
 * @internal
 */
export function decodeEntry(value: Buffer, where: string): AnyEntry {
  if (value.length < HEADER_BYTES || value[0] !== FORMAT_VERSION) {
    throw new StoreDecodeError(
      `${where}: not an idempotency entry (${value.length} bytes, starting with ${JSON.stringify(value.toString('latin1', 0, 8))})`,
    );
  }
  try {
    const state = value[1];
    // Checked byte by byte, not as strings: the fingerprint as written (lowercase) is taken as it
    // is; any other text goes through `fromHex`, which accepts uppercase too or throws.
    const fingerprint = lowerHexBytes(value, 40, 72)
      ? trustedFingerprintHex(value.toString('latin1', 40, 72))
      : Fingerprint.fromHex(value.toString('latin1', 40, 72));
    if (!lowerHexBytes(value, 2, 18)) throw new Error('the fencing token is malformed');
    if (!base64urlBytes(value, 18, 40)) throw new Error('the nonce is malformed');
    const ttl = assertDuration('ttl', value.readUIntBE(72, 6));
    const statusCode = value.readUInt16BE(78);
    const metaBytes = value.readUInt32BE(80);
    if (state === STATE_PROCESSING || state === STATE_WATCHED) {
      if (value.length !== HEADER_BYTES || statusCode !== 0 || metaBytes !== 0) {
        throw new Error('a processing entry carries a response');
      }
      return new IdempotencyEntry(fingerprint, ttl);
    }
    if (state !== STATE_COMPLETED && state !== STATE_UNACKNOWLEDGED) throw new Error(`unknown state byte ${state}`);
    const end = HEADER_BYTES + metaBytes;
    if (end > value.length) throw new Error('the metadata runs past the end');
    if (metaBytes === 0)
      return completedEntry(fingerprint, ttl, new CachedResponse({ statusCode, body: value.subarray(end) }));
    const metadata = metadataOf(statusCode, value.toString('utf8', HEADER_BYTES, end));
    return completedEntry(fingerprint, ttl, trustedResponse(statusCode, value.subarray(end), metadata));
  } catch (error) {
    throw new StoreDecodeError(`${where}: corrupt idempotency entry: ${(error as Error).message}`, { cause: error });
  }
}

/** The nonce of a decoded entry. @internal */
export function nonceOf(value: Buffer): string {
  return value.toString('latin1', 18, 40);
}

/** The token number of a decoded entry. @internal */
export function tokenOf(value: Buffer): number | bigint {
  const hex = value.toString('latin1', 2, 18);
  const token = parseInt(hex, 16);
  return Number.isSafeInteger(token) ? token : BigInt(`0x${hex}`);
}
