import { HttpException } from '@nestjs/common';
import { STATUS_CODES } from 'node:http';
import { bodySize, bodyText, CachedResponse, trustedResponse } from '../core/cached-response';
import { DEFAULT_REPLAY_HEADERS, IDEMPOTENT_REPLAYED_HEADER } from '../idempotency.constants';
import type { HttpPlatform, Payload } from './http-platform';
import { IdempotencyProblemException } from './idempotency-exceptions';
import type { PreparedProblem } from '../calls/problem-details';
import { markSent } from './reply-guard';

/**
 * Metadata entry naming what kind of payload the body was handed to the platform as: `text`,
 * `binary` or `none`. Header names cannot start with `:`, so it never meets a header.
 * @internal
 */
export const PAYLOAD_KIND = ':payload';

const EMPTY = new Uint8Array(0);

/**
 * The lower-case header names stored for replay: the default allowlist plus `extra`, never
 * `set-cookie`; none at all for `false` (status and body only).
 * @internal
 */
export function replayHeaderNames(extra: readonly string[] | false): readonly string[] {
  if (extra === false) return Object.freeze([]);
  const names = new Set<string>();
  for (const name of [...DEFAULT_REPLAY_HEADERS, ...extra]) {
    const lower = name.toLowerCase();
    if (lower !== 'set-cookie') names.add(lower);
  }
  return Object.freeze([...names]);
}

type PayloadKind = 'none' | 'text' | 'binary';

/**
 * A route's allowlisted headers, and the metadata last captured with them. Responses of a route
 * nearly always carry the same headers (its Content-Type), so consecutive responses with the same
 * values share one frozen metadata object instead of each holding its own copy.
 * @internal
 */
export class ReplayHeaders {
  readonly names: readonly string[];
  #values: (string | undefined)[] = [];
  /** Where the next response's values are read into (no array per response). */
  #scratch: (string | undefined)[] = [];
  #kind: PayloadKind | undefined;
  #metadata: Readonly<Record<string, string>> | undefined;

  constructor(extra: readonly string[] | false) {
    this.names = replayHeaderNames(extra);
  }

  /** The metadata to store for `res` now: its allowlisted headers and the payload kind. */
  metadataOf(platform: HttpPlatform, res: unknown, kind: PayloadKind): Readonly<Record<string, string>> {
    const names = this.names;
    // Each header read once: compared with the last response's, and kept for the next.
    const values = this.#scratch;
    if (platform.readHeaders !== undefined) platform.readHeaders(res, names, values);
    else for (let i = 0; i < names.length; i++) values[i] = platform.getHeader(res, names[i]);
    let same = this.#metadata !== undefined && kind === this.#kind;
    for (let i = 0; same && i < names.length; i++) if (values[i] !== this.#values[i]) same = false;
    if (same) return this.#metadata!;
    const metadata: Record<string, string> = {};
    for (let i = 0; i < names.length; i++) if (values[i] !== undefined) metadata[names[i]] = values[i]!;
    metadata[PAYLOAD_KIND] = kind;
    this.#scratch = this.#values;
    this.#values = values;
    this.#kind = kind;
    return (this.#metadata = Object.freeze(metadata));
  }
}

/**
 * The response to store for `payload`: the status code and allowlisted headers now on `res`, and
 * the body the platform will send (text is kept as text).
 * @internal
 */
export function captureResponse(
  platform: HttpPlatform,
  res: unknown,
  payload: Payload,
  headers: ReplayHeaders,
  statusCode = platform.statusCode(res),
): CachedResponse {
  const kind: PayloadKind = payload === undefined ? 'none' : typeof payload === 'string' ? 'text' : 'binary';
  return trustedResponse(statusCode, payload ?? EMPTY, headers.metadataOf(platform, res, kind));
}

/** The payload to hand the platform for a stored response. @internal */
export function payloadOf(response: CachedResponse): Payload {
  const kind = response.metadata[PAYLOAD_KIND];
  if (kind === 'text') return bodyText(response) ?? response.text();
  // Entries written by other means (the programmatic API) carry no kind: their bytes go out raw.
  if (kind === 'none' || (kind === undefined && bodySize(response) === 0)) return undefined;
  const body = response.body;
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/**
 * Sends a stored response: its status, its headers, `Idempotent-Replayed: true` and its body.
 * @internal
 */
export function sendReplay(
  platform: HttpPlatform,
  res: unknown,
  response: CachedResponse,
  storedHeaders: boolean = true,
): void {
  platform.setStatus(res, response.statusCode);
  const metadata = response.metadata;
  // `replayHeaders: false`: none, also for responses stored before the route was told so.
  if (storedHeaders) {
    for (const name in metadata) {
      if (name.charCodeAt(0) !== 0x3a) platform.setHeader(res, name, metadata[name]);
    }
  }
  platform.setHeader(res, IDEMPOTENT_REPLAYED_HEADER, 'true');
  platform.send(res, payloadOf(response));
  markSent(res);
}

/** Sends `payload` with the status and headers already on `res`. @internal */
export function sendPayload(platform: HttpPlatform, res: unknown, payload: Payload): void {
  platform.send(res, payload);
  markSent(res);
}

/**
 * Answers with a problem: sends it (RFC 9457, or the app's `problemBody`), or, with
 * `throwProblems`, sets `Retry-After` and throws the matching `IdempotencyProblemException` for
 * the app's exception filters.
 * @internal
 */
export function sendProblem(platform: HttpPlatform, res: unknown, problem: PreparedProblem, throwIt = false): void {
  if (problem.retryAfter !== undefined) platform.setHeader(res, 'Retry-After', String(problem.retryAfter));
  if (throwIt) throw IdempotencyProblemException.of(problem.problem);
  platform.setStatus(res, problem.status);
  platform.setHeader(res, 'Content-Type', problem.contentType);
  platform.send(res, problem.body);
  markSent(res);
}

/** A problem answer as a stored response, replayed as it was sent. @internal */
export function problemResponse(problem: PreparedProblem): CachedResponse {
  return new CachedResponse({
    statusCode: problem.status,
    body: problem.body,
    metadata: { 'content-type': problem.contentType, [PAYLOAD_KIND]: 'text' },
  });
}

/** Whether `error` looks like an `http-errors` error, as Nest's BaseExceptionFilter checks. */
function isHttpError(error: unknown): error is { statusCode: number; message: string; expose?: boolean } {
  const e = error as { statusCode?: unknown; message?: unknown } | null;
  return typeof e === 'object' && e !== null && !!e.statusCode && !!e.message;
}

/** The HTTP status a thrown error answers with under Nest's built-in exception filter. @internal */
export function statusOfError(error: unknown): number {
  if (error instanceof HttpException) return error.getStatus();
  if (isHttpError(error) && Number.isInteger(error.statusCode)) return error.statusCode;
  return 500;
}

/**
 * The status and body Nest's built-in exception filter (`BaseExceptionFilter`) renders for a
 * thrown error, before the platform serialises it.
 * @internal
 */
export function renderException(error: unknown): { status: number; body: unknown } {
  if (error instanceof HttpException) {
    const response = error.getResponse();
    const status = error.getStatus();
    return {
      status,
      body: typeof response === 'object' && response !== null ? response : { statusCode: status, message: response },
    };
  }
  if (isHttpError(error)) {
    const message =
      error.expose === false ? (STATUS_CODES[error.statusCode] ?? 'Internal server error') : error.message;
    return { status: error.statusCode, body: { statusCode: error.statusCode, message } };
  }
  return { status: 500, body: { statusCode: 500, message: 'Internal server error' } };
}
