import { StreamableFile } from '@nestjs/common';
import { type ServerResponse, STATUS_CODES } from 'node:http';

/**
 * What a platform's `send` is handed: text (sent as UTF-8), bytes (sent as they are), or nothing.
 * Replays hand the platform the same kind of payload as the first response did, with the same
 * headers set beforehand, so the platform adds the same headers (charset, ETag, length) and
 * sends the same bytes.
 * @internal
 */
export type Payload = string | Uint8Array | undefined;

/** A result that is a stream, which cannot be stored. @internal */
export class UnsupportedResultError extends Error {}

/**
 * The few things the interceptor needs from Express or Fastify, in the platform's own terms.
 * `res` is what `context.switchToHttp().getResponse()` returns: an Express `Response` or a
 * `FastifyReply`.
 * @internal
 */
export interface HttpPlatform {
  readonly name: 'express' | 'fastify';
  /**
   * The payload the platform would send for a handler's `value` after Nest's adapter has had its
   * say, setting on `res` the headers the platform would set first (the JSON Content-Type).
   * `replyStatus` is the status code Nest passes to its `reply()` (exception responses only).
   * @throws UnsupportedResultError for streams and files
   */
  toPayload(res: unknown, value: unknown, replyStatus?: number): Payload;
  statusCode(res: unknown): number;
  setStatus(res: unknown, statusCode: number): void;
  /** A response header as one string (list values joined with ", "), or `undefined`. */
  getHeader(res: unknown, name: string): string | undefined;
  /**
   * Several response headers at once: `into[i]` is what `getHeader(res, names[i])` answers. For a
   * platform where asking once is cheaper than asking by name; without it, `getHeader` is asked.
   */
  readHeaders?(res: unknown, names: readonly string[], into: (string | undefined)[]): void;
  setHeader(res: unknown, name: string, value: string): void;
  /** Sends `payload` with the status and headers already on `res`. */
  send(res: unknown, payload: Payload): void;
  /** Whether the response has been sent (or its headers written). */
  isSent(res: unknown): boolean;
  /** Node's `ServerResponse` under the platform's response. */
  rawResponse(res: unknown): ServerResponse;
  /** The names of the headers set on the response so far (lower case). */
  headerNames(res: unknown): string[];
  removeHeader(res: unknown, name: string): void;
}

/** Nest's `isObject`: a non-null object. */
function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object';
}

function statusCodeOf(value: unknown): number | undefined {
  return isObject(value) && typeof value.statusCode === 'number' ? value.statusCode : undefined;
}

/** @internal */
export function isStreamLike(value: unknown): boolean {
  if (!isObject(value)) return false;
  return (
    value instanceof StreamableFile ||
    typeof value.pipe === 'function' ||
    typeof value.getReader === 'function' ||
    Object.prototype.toString.call(value) === '[object Response]'
  );
}

function headerString(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return value.length === 0 ? undefined : value.join(', ');
  return String(value);
}

interface ExpressResponse {
  statusCode: number;
  headersSent: boolean;
  app: { get(setting: string): unknown };
  status(code: number): unknown;
  get(name: string): string | undefined;
  set(name: string, value: string): unknown;
  getHeader(name: string): unknown;
  setHeader(name: string, value: string): unknown;
  send(body?: unknown): unknown;
}

// As Express's `res.json()` serialises (its `json replacer`, `json spaces` and `json escape` settings).
function expressStringify(value: unknown, res: ExpressResponse): string | undefined {
  const app = res.app;
  const replacer = app.get('json replacer') as Parameters<typeof JSON.stringify>[1];
  const spaces = app.get('json spaces') as string | number | undefined;
  let json = replacer || spaces ? JSON.stringify(value, replacer as never, spaces) : JSON.stringify(value);
  if (app.get('json escape') && typeof json === 'string') {
    json = json.replace(/[<>&]/g, (c) => (c === '<' ? '\\u003c' : c === '>' ? '\\u003e' : '\\u0026'));
  }
  return json;
}

/**
 * Express, as `ExpressAdapter.reply()` and Express's `res.json()`/`res.send()` treat a value:
 * `null`/`undefined` -> no body; any object (Buffers included) -> JSON with
 * `application/json`; anything else -> `String(value)`, which Express sends as `text/html`
 * unless a Content-Type is set. The text goes through `res.send(string)` both times, so Express
 * adds the same charset and ETag, and answers conditional and HEAD requests the same way.
 */
export const expressPlatform: HttpPlatform = {
  name: 'express',

  toPayload(r, value, replyStatus) {
    const res = r as ExpressResponse;
    if (value === null || value === undefined) return undefined;
    if (isStreamLike(value)) throw new UnsupportedResultError('stream');
    let body: unknown = value;
    if (body instanceof Error && res.statusCode >= 400) {
      body = { statusCode: res.statusCode, message: STATUS_CODES[res.statusCode] ?? 'Error' };
    }
    const contentType = res.getHeader('content-type');
    if (
      typeof contentType === 'string' &&
      !contentType.startsWith('application/json') &&
      ((statusCodeOf(body) ?? 0) >= 400 || (isObject(body) && replyStatus !== undefined && replyStatus >= 400))
    ) {
      res.setHeader('Content-Type', 'application/json');
    }
    if (!isObject(body)) return String(body);
    const json = expressStringify(body, res);
    if (!res.get('Content-Type')) res.set('Content-Type', 'application/json');
    return json;
  },

  statusCode: (res) => (res as ExpressResponse).statusCode,
  setStatus: (res, statusCode) => void (res as ExpressResponse).status(statusCode),
  getHeader: (res, name) => headerString((res as ExpressResponse).getHeader(name)),
  setHeader: (res, name, value) => void (res as ExpressResponse).setHeader(name, value),
  send: (res, payload) => void (res as ExpressResponse).send(payload),
  isSent: (res) => (res as ExpressResponse).headersSent,
  rawResponse: (res) => res as ServerResponse,
  headerNames: (res) => (res as { getHeaderNames(): string[] }).getHeaderNames(),
  removeHeader: (res, name) => void (res as { removeHeader(name: string): void }).removeHeader(name),
};

interface FastifyReplyLike {
  statusCode: number;
  sent: boolean;
  code(statusCode: number): unknown;
  getHeader(name: string): unknown;
  getHeaders(): Record<string, unknown>;
  header(name: string, value: string): unknown;
  send(payload?: unknown): unknown;
}

const FASTIFY_JSON = 'application/json; charset=utf-8';

/** Whether a Content-Type names a JSON media type (`application/json`, `application/vnd.api+json`, ...). @internal */
export function mediaTypeIncludesJson(contentType: string): boolean {
  const semicolon = contentType.indexOf(';');
  const mediaType = semicolon < 0 ? contentType : contentType.slice(0, semicolon);
  return mediaType.toLowerCase().includes('json');
}

/**
 * Fastify, as `FastifyAdapter.reply()` and `reply.send()` treat a value: `undefined` -> no body;
 * strings -> sent as they are (`text/plain` unless a Content-Type is set); Buffers and typed
 * arrays -> bytes (`application/octet-stream` unless set); anything else, `null` included ->
 * `JSON.stringify` with a JSON Content-Type. A custom Fastify reply serializer or response
 * schema is not applied on `@Idempotent()` routes.
 */
export const fastifyPlatform: HttpPlatform = {
  name: 'fastify',

  toPayload(r, value) {
    const reply = r as FastifyReplyLike;
    if (isStreamLike(value)) throw new UnsupportedResultError('stream');
    const contentType = reply.getHeader('content-type');
    if (contentType !== undefined && contentType !== 'application/json' && (statusCodeOf(value) ?? 0) >= 400) {
      reply.header('Content-Type', 'application/json');
    }
    if (value === undefined) return undefined;
    // Fastify hands an Error payload to its error handling, as if it had been thrown.
    if (value instanceof Error) throw value;
    if (typeof value === 'string') return value;
    if (isObject(value) && (value as { buffer?: unknown }).buffer instanceof ArrayBuffer) {
      const view = value as unknown as ArrayBufferView;
      return Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
    }
    const current = headerString(reply.getHeader('content-type'));
    if (current === undefined) reply.header('content-type', FASTIFY_JSON);
    else if (!mediaTypeIncludesJson(current)) {
      throw new TypeError(`Fastify cannot send an object with Content-Type "${current}"`);
    }
    return JSON.stringify(value);
  },

  statusCode: (res) => (res as FastifyReplyLike).statusCode,
  setStatus: (res, statusCode) => void (res as FastifyReplyLike).code(statusCode),
  getHeader: (res, name) => headerString((res as FastifyReplyLike).getHeader(name)),
  // `reply.getHeader(name)` lower-cases the name and, for a header the reply does not hold, asks
  // the raw response (lower-casing again): for the replay allowlist's names, nearly all absent,
  // one `getHeaders()` (the raw response's headers overlaid with the reply's, as `getHeader`
  // ranks them; `reply.header()` never stores undefined) costs less. `names` are lower case.
  readHeaders: (res, names, into) => {
    const reply = res as FastifyReplyLike;
    // A `ResponseDraft` (the reply was sent by someone else) answers by name only.
    if (typeof reply.getHeaders !== 'function') {
      for (let i = 0; i < names.length; i++) into[i] = headerString(reply.getHeader(names[i]));
      return;
    }
    const headers = reply.getHeaders();
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      into[i] = Object.prototype.hasOwnProperty.call(headers, name) ? headerString(headers[name]) : undefined;
    }
  },
  setHeader: (res, name, value) => void (res as FastifyReplyLike).header(name, value),
  send: (res, payload) => void (res as FastifyReplyLike).send(payload),
  isSent: (res) => (res as FastifyReplyLike).sent,
  rawResponse: (res) => (res as { raw: ServerResponse }).raw,
  headerNames: (res) => Object.keys((res as { getHeaders(): Record<string, unknown> }).getHeaders()),
  removeHeader: (res, name) => void (res as { removeHeader(name: string): void }).removeHeader(name),
};

/** The platform of an HTTP adapter (`httpAdapter.getType()`). @internal */
export function platformOf(adapterType: string | undefined): HttpPlatform {
  return adapterType === 'fastify' ? fastifyPlatform : expressPlatform;
}
