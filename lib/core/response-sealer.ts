import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { CachedResponse } from './cached-response';
import { SealedRecordError } from './errors';

/** One key of `encryption`: its id (stored with each record it seals) and 32 secret bytes. */
export interface IdempotencyEncryptionKey {
  /** Names the key in the records it seals (stored in clear), so it can be found to open them. 1-64 printable ASCII characters. */
  readonly id: string;
  /** The AES-256 key: exactly 32 bytes. */
  readonly key: Uint8Array;
}

/** The `encryption` module option: stored responses sealed with AES-256-GCM. */
export interface IdempotencyEncryptionOptions {
  /**
   * The first key seals every new record; every listed key opens. Rotate by putting a new key
   * first and keeping the old one after it until the records it sealed have expired (`ttlMs`).
   */
  readonly keys: readonly IdempotencyEncryptionKey[];
}

/**
 * Metadata entry of a sealed record: the id of the key that sealed it. Header names cannot start
 * with `:`, so it never meets a header, and it is never replayed.
 * @internal
 */
export const SEALED_MARK = ':sealed';

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The status code a sealed record is stored with (its real one is inside the seal). */
const SEALED_STATUS = 200;
const AAD_DOMAIN = 'nestjs-idempotent/sealed/v1\n';
const KEY_ID = /^[\x21-\x7e]{1,64}$/;

/**
 * Seals and opens stored responses: status code, metadata (headers) and body are encrypted and
 * authenticated with AES-256-GCM under a random 96-bit IV, with the key id and the store key as
 * associated data, so a record copied to another key (or relabelled with another key id) does
 * not open. A sealed record is a `CachedResponse` with status 200, metadata `{ ':sealed': <key id> }`
 * and body `version (1) ‖ IV (12) ‖ tag (16) ‖ ciphertext`; the plaintext is
 * `status (u16) ‖ metadata length (u32) ‖ metadata JSON ‖ body`.
 * @internal
 */
export class ResponseSealer {
  readonly #sealing: { readonly id: string; readonly key: Buffer };
  readonly #keys: ReadonlyMap<string, Buffer>;

  /** @throws TypeError/RangeError naming what is wrong with `options` (`where` says whose they are). */
  constructor(options: IdempotencyEncryptionOptions, where = 'encryption') {
    if (options === null || typeof options !== 'object' || !Array.isArray(options.keys) || options.keys.length === 0) {
      throw new TypeError(`${where}: encryption must be { keys: [{ id, key }, ...] } with at least one key`);
    }
    const keys = new Map<string, Buffer>();
    for (const [i, entry] of options.keys.entries()) {
      const id: unknown = entry?.id;
      if (typeof id !== 'string' || !KEY_ID.test(id)) {
        throw new TypeError(`${where}: encryption.keys[${i}].id must be 1 to 64 printable ASCII characters`);
      }
      if (keys.has(id)) throw new TypeError(`${where}: encryption.keys[${i}].id "${id}" is listed twice`);
      const key: unknown = entry.key;
      if (!(key instanceof Uint8Array) || key.byteLength !== 32) {
        throw new RangeError(
          `${where}: encryption.keys[${i}].key (id "${id}") must be a Buffer of exactly 32 bytes (AES-256), e.g. ` +
            "Buffer.from(process.env.IDEMPOTENCY_KEY, 'base64')",
        );
      }
      keys.set(id, Buffer.from(key));
    }
    this.#keys = keys;
    const first = options.keys[0].id;
    this.#sealing = { id: first, key: keys.get(first)! };
  }

  /** The sealed form of `response`, stored under `storeKey`. */
  seal(storeKey: string, response: CachedResponse): CachedResponse {
    const { id, key } = this.#sealing;
    const meta = metadataBytes(response.metadata);
    const body = response.body;
    // One buffer, one cipher update: each update of Node's cipher costs about a microsecond.
    const plain = Buffer.allocUnsafe(6 + meta.byteLength + body.byteLength);
    plain.writeUInt16BE(response.statusCode, 0);
    plain.writeUInt32BE(meta.byteLength, 2);
    meta.copy(plain, 6);
    plain.set(body, 6 + meta.byteLength);
    const iv = nextIv();
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(aad(id, storeKey));
    const encrypted = cipher.update(plain);
    cipher.final(); // GCM is a stream mode: nothing is held back
    // Its own memory, not a slice of Node's shared pool (a stored response would keep the slab alive).
    const sealed = Buffer.allocUnsafeSlow(1 + IV_BYTES + TAG_BYTES + encrypted.byteLength);
    sealed[0] = VERSION;
    iv.copy(sealed, 1);
    cipher.getAuthTag().copy(sealed, 1 + IV_BYTES);
    encrypted.copy(sealed, 1 + IV_BYTES + TAG_BYTES);
    return new CachedResponse({ statusCode: SEALED_STATUS, body: sealed, metadata: { [SEALED_MARK]: id } });
  }

  /**
   * The response `sealed` holds, stored under `storeKey`.
   * @throws SealedRecordError when it cannot be opened: not sealed, an unknown key id, tampered
   *   with, or sealed for another key. The message never holds the record's contents.
   */
  open(storeKey: string, sealed: CachedResponse): CachedResponse {
    const id = sealed.metadata[SEALED_MARK];
    if (id === undefined) {
      throw new SealedRecordError('the stored response is not sealed, and encryption is on: it is not trusted');
    }
    const key = this.#keys.get(id);
    if (key === undefined) {
      throw new SealedRecordError(`the stored response was sealed with key id "${id}", which is not configured`);
    }
    const bytes = sealed.body;
    if (bytes.byteLength < 1 + IV_BYTES + TAG_BYTES + 6 || bytes[0] !== VERSION) {
      throw new SealedRecordError('the stored response is not in the sealed format');
    }
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(1, 1 + IV_BYTES));
      decipher.setAAD(aad(id, storeKey));
      decipher.setAuthTag(data.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES));
      plain = Buffer.concat([decipher.update(data.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]);
    } catch {
      throw new SealedRecordError(
        `the stored response does not open with key id "${id}": it was changed, or copied from another key`,
      );
    }
    const status = plain.readUInt16BE(0);
    const metaEnd = 6 + plain.readUInt32BE(2);
    // Authenticated, so written by this library: the parts are as `seal` made them.
    const metadata = JSON.parse(plain.toString('utf8', 6, metaEnd)) as Record<string, string>;
    return new CachedResponse({ statusCode: status, body: plain.subarray(metaEnd), metadata });
  }
}

// Responses of a route share one frozen metadata object (`ReplayHeaders`): its JSON is made once.
const metadataJson = new WeakMap<object, Buffer>();

function metadataBytes(metadata: Readonly<Record<string, string>>): Buffer {
  let bytes = metadataJson.get(metadata);
  if (bytes === undefined) {
    bytes = Buffer.from(JSON.stringify(metadata), 'utf8');
    if (Object.isFrozen(metadata)) metadataJson.set(metadata, bytes);
  }
  return bytes;
}

// Random 96-bit IVs, drawn from the CSPRNG in blocks (one call per 341 seals instead of one each).
// Random IVs under one key stay safe far beyond any replay window's count of records (NIST SP
// 800-38D: 2^32 messages per key).
let ivPool = Buffer.alloc(0);
let ivAt = 0;

function nextIv(): Buffer {
  if (ivAt + IV_BYTES > ivPool.length) {
    ivPool = randomBytes(IV_BYTES * 341);
    ivAt = 0;
  }
  const iv = ivPool.subarray(ivAt, ivAt + IV_BYTES);
  ivAt += IV_BYTES;
  return iv;
}

function aad(id: string, storeKey: string): Buffer {
  return Buffer.from(`${AAD_DOMAIN}${id}\n${storeKey}`, 'utf8');
}
