import { isUtf8 } from 'node:buffer';
import { IdempotencyKeyError } from '../core/errors';

/**
 * Reads the client's key from a request's headers. Returns `undefined` when the header is absent,
 * else the key text (not yet validated as an `IdempotencyKey`).
 *
 * The value is an RFC 8941 sf-string (`"abc"`, parameters allowed and ignored) when it starts
 * with `"`, and is otherwise the key itself, commas and quotes included. Node joins repeated
 * header lines with `", "`, so "sent twice" is judged from the raw header lines.
 *
 * @param headers the parsed headers (`request.headers`), keyed by lower-case name
 * @param rawHeaders the raw header lines, `[name, value, name, value, ...]`
 * @param lowerName the header name in lower case
 * @throws IdempotencyKeyError `EMPTY_KEY` for an empty or blank value, `INVALID_KEY` for a
 *   malformed sf-string, bytes that are not UTF-8, or a header sent more than once
 */
export function readKeyHeader(
  headers: Record<string, string | string[] | undefined>,
  rawHeaders: readonly string[] | undefined,
  lowerName: string,
): string | undefined {
  const value = headers[lowerName];
  if (value === undefined) return undefined;
  // Node keeps only Set-Cookie as an array; anything else arriving as one was repeated.
  if (typeof value !== 'string') throw sentTwice(lowerName);
  // A repeated header always leaves a comma behind, so only then are the raw lines counted.
  if (value.includes(',') && rawHeaders !== undefined && countLines(rawHeaders, lowerName) > 1) {
    throw sentTwice(lowerName);
  }
  return parseKeyValue(value);
}

/**
 * The key text of one header value: an RFC 8941 sf-string when it starts with `"`, else the
 * value itself. Node hands header values over as latin1; UTF-8 bytes are decoded as UTF-8.
 * @throws IdempotencyKeyError as {@link readKeyHeader}
 */
export function parseKeyValue(value: string): string {
  const text = trimOws(value);
  if (text.length === 0) throw new IdempotencyKeyError('EMPTY_KEY', 'idempotency key is empty');
  if (text.charCodeAt(0) === DQUOTE) return parseSfItemString(text);
  return NON_ASCII.test(text) ? decodeLatin1AsUtf8(text) : text;
}

const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const NON_ASCII = /[^\x00-\x7f]/;

function sentTwice(name: string): IdempotencyKeyError {
  return new IdempotencyKeyError('INVALID_KEY', `the ${name} header was sent more than once`);
}

function malformed(reason: string): IdempotencyKeyError {
  return new IdempotencyKeyError('INVALID_KEY', `idempotency key is not a valid structured-field string: ${reason}`);
}

function countLines(rawHeaders: readonly string[], lowerName: string): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) count++;
  }
  return count;
}

function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isOws(value.charCodeAt(start))) start++;
  while (end > start && isOws(value.charCodeAt(end - 1))) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function decodeLatin1AsUtf8(text: string): string {
  const bytes = Buffer.from(text, 'latin1');
  if (!isUtf8(bytes)) throw new IdempotencyKeyError('INVALID_KEY', 'idempotency key is not valid UTF-8');
  return bytes.toString('utf8');
}

/**
 * An RFC 8941 Item whose bare item is a String: the string, then optional parameters (parsed,
 * so that a malformed one is refused, and ignored).
 */
function parseSfItemString(input: string): string {
  let pos = 1;
  let out = '';
  let runStart = pos;
  for (;;) {
    if (pos >= input.length) throw malformed('no closing quote');
    const c = input.charCodeAt(pos);
    if (c === BACKSLASH) {
      out += input.slice(runStart, pos);
      pos++;
      if (pos >= input.length) throw malformed('escape at the end');
      const escaped = input.charCodeAt(pos);
      if (escaped !== DQUOTE && escaped !== BACKSLASH) throw malformed('only \\" and \\\\ may be escaped');
      out += input[pos];
      pos++;
      runStart = pos;
    } else if (c === DQUOTE) {
      out += input.slice(runStart, pos);
      pos++;
      break;
    } else if (c < 0x20 || c > 0x7e) {
      throw malformed('only printable ASCII is allowed');
    } else {
      pos++;
    }
  }
  parseParameters(input, pos);
  return out;
}

// parameters = *( ";" *SP key [ "=" bare-item ] ), then the end of the value.
function parseParameters(input: string, pos: number): void {
  while (pos < input.length) {
    if (input.charCodeAt(pos) !== 0x3b) throw malformed('unexpected characters after the string');
    pos++;
    while (pos < input.length && input.charCodeAt(pos) === 0x20) pos++;
    const keyStart = pos;
    if (!isKeyStart(input.charCodeAt(pos))) throw malformed('bad parameter name');
    while (pos < input.length && isKeyChar(input.charCodeAt(pos))) pos++;
    if (pos === keyStart) throw malformed('bad parameter name');
    if (input.charCodeAt(pos) === 0x3d) pos = parseBareItem(input, pos + 1);
  }
}

function isKeyStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || c === 0x2a;
}

function isKeyChar(c: number): boolean {
  return isKeyStart(c) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2d || c === 0x2e;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/;

/** Skips one bare item (integer, decimal, string, token, byte sequence, boolean); returns the next position. */
function parseBareItem(input: string, pos: number): number {
  const c = input.charCodeAt(pos);
  if (c === DQUOTE) {
    pos++;
    for (;;) {
      if (pos >= input.length) throw malformed('no closing quote in a parameter');
      const d = input.charCodeAt(pos);
      if (d === BACKSLASH) {
        const e = input.charCodeAt(pos + 1);
        if (e !== DQUOTE && e !== BACKSLASH) throw malformed('bad escape in a parameter');
        pos += 2;
      } else if (d === DQUOTE) {
        return pos + 1;
      } else if (d < 0x20 || d > 0x7e) {
        throw malformed('only printable ASCII is allowed');
      } else pos++;
    }
  }
  if (c === 0x3f) {
    const d = input.charCodeAt(pos + 1);
    if (d !== 0x30 && d !== 0x31) throw malformed('bad boolean parameter');
    return pos + 2;
  }
  if (c === 0x3a) {
    const end = input.indexOf(':', pos + 1);
    if (end < 0 || !/^[A-Za-z0-9+/=]*$/.test(input.slice(pos + 1, end))) throw malformed('bad byte sequence');
    return end + 1;
  }
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
    const match = /^-?[0-9]{1,15}(\.[0-9]{1,3})?/.exec(input.slice(pos));
    if (match === null) throw malformed('bad number parameter');
    const [whole, fraction] = match[0].replace('-', '').split('.');
    if (fraction !== undefined && whole.length > 12) throw malformed('bad number parameter');
    return pos + match[0].length;
  }
  if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2a) {
    pos++;
    while (pos < input.length && TCHAR.test(input[pos])) pos++;
    return pos;
  }
  throw malformed('bad parameter value');
}
