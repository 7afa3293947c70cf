import { fingerprintJson } from '../core/canonical-json';
import type { Fingerprint } from '../core/fingerprint';
import type { FingerprintStrategy } from '../core/fingerprint-strategy';
import type { IdempotencyRequest } from '../interfaces/idempotency-options.interface';
import { mediaTypeIncludesJson } from './http-platform';

/**
 * The default fingerprint of a request: `strategy` over the operation
 * `"<METHOD> <path?query>\n<body kind> <media type>"` and the body.
 *
 * The body is hashed as what the handler receives, tagged with what kind of body it was, so two
 * requests a handler can tell apart never share a fingerprint:
 * - `bytes`: the raw bytes, when Nest keeps them (`rawBody: true`) or the body is a Buffer;
 * - `json`: canonical JSON of a parsed body (key order does not matter; non-finite numbers are
 *   kept apart from `null`), also for a string body sent with a JSON media type;
 * - `text`: a string body of any other media type, as it is;
 * - `none`: no body.
 * The media type (without parameters, lower case) is part of it, so the same text sent as
 * `text/plain` and as `application/json` differs. A request line cannot contain a line break, so
 * the operation cannot be forged by a path.
 * @internal
 */
export function requestFingerprint(req: IdempotencyRequest, strategy: FingerprintStrategy): Fingerprint {
  const target = `${req.method} ${req.originalUrl ?? req.url}\n`;
  const raw = req.rawBody;
  if (raw instanceof Uint8Array) return strategy.compute(`${target}bytes ${mediaTypeOf(req)}`, raw);
  const body: unknown = req.body;
  if (body === undefined) return strategy.compute(`${target}none`, '');
  if (body instanceof Uint8Array) return strategy.compute(`${target}bytes ${mediaTypeOf(req)}`, body);
  const mediaType = mediaTypeOf(req);
  if (typeof body === 'string' && !mediaTypeIncludesJson(mediaType)) {
    return strategy.compute(`${target}text ${mediaType}`, body);
  }
  return strategy.compute(`${target}json ${mediaType}`, fingerprintJson(body) ?? '');
}

function mediaTypeOf(req: IdempotencyRequest): string {
  const contentType: unknown = req.headers?.['content-type'];
  if (typeof contentType !== 'string') return '';
  const semicolon = contentType.indexOf(';');
  return (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
}
