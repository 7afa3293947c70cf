/**
 * Responses this library has sent itself. Nest replies once more when the route's Observable
 * emits (it calls `httpAdapter.reply(res, value)`, and neither adapter checks whether the
 * response is already out), so the guarded `reply` skips these.
 */
const sentByUs = new WeakSet<object>();

/**
 * Responses whose handler is running under a claim, and what they looked like when Nest replied
 * to them meanwhile (an outer interceptor such as a timeout, or an exception filter, answered the
 * client before the handler finished): `null` until then.
 */
const watched = new WeakMap<object, ResponseSnapshot | null>();

/** The status code and headers of a response at one moment. @internal */
export interface ResponseSnapshot {
  readonly statusCode: number;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, unknown>>;
}

const GUARDED = Symbol.for('nestjs-idempotent:reply-guard');

interface ReplyingAdapter {
  reply(response: unknown, body: unknown, statusCode?: number): unknown;
  [GUARDED]?: true;
}

/**
 * Makes `adapter.reply()` a no-op for responses marked with {@link markSent}. Installed once per
 * adapter instance (further calls do nothing), before the first request.
 *
 * Why not return an Observable that never emits (`NEVER`) instead: every interceptor outside
 * this one would then never complete (a `timeout()` would fire, a logging or metrics interceptor
 * would never see the end of the request), and Nest keeps a close listener per request on a
 * keep-alive socket while a handler's Observable is pending. With the guard, the route's
 * Observable completes normally and Nest's own `reply()` call is simply skipped.
 * @internal
 */
export function installReplyGuard(adapter: object | null | undefined): void {
  const target = adapter as ReplyingAdapter | undefined;
  if (target == null || typeof target.reply !== 'function' || target[GUARDED]) return;
  const reply = target.reply;
  target.reply = function guardedReply(this: unknown, response: unknown, body: unknown, statusCode?: number) {
    if (typeof response === 'object' && response !== null) {
      if (sentByUs.has(response)) return response;
      // Nest answers a response whose handler is still running: remember what the handler had set
      // up (status, headers) before this answer overwrites it, so its result can still be stored.
      if (watched.get(response) === null) watched.set(response, snapshotOf(response));
    }
    return reply.call(this, response, body, statusCode);
  };
  target[GUARDED] = true;
}

/** Whether the guard is installed on `adapter`. @internal */
export function hasReplyGuard(adapter: object | undefined): boolean {
  return (adapter as ReplyingAdapter | undefined)?.[GUARDED] === true;
}

/** Marks `response` as sent by this library, so Nest does not reply to it again. @internal */
export function markSent(response: unknown): void {
  sentByUs.add(response as object);
}

/** Starts watching `response` for a reply Nest sends while its handler runs. @internal */
export function watchReplies(response: object): void {
  watched.set(response, null);
}

/** What `response` looked like when Nest replied to it while it was watched, else `undefined`. @internal */
export function outerReply(response: object): ResponseSnapshot | undefined {
  return watched.get(response) ?? undefined;
}

/** @internal */
export function stopWatchingReplies(response: object): void {
  watched.delete(response);
}

function snapshotOf(response: object): ResponseSnapshot {
  const r = response as { statusCode?: unknown; getHeaders?: () => Record<string, unknown> };
  return {
    statusCode: typeof r.statusCode === 'number' ? r.statusCode : 200,
    headers: { ...(typeof r.getHeaders === 'function' ? r.getHeaders() : {}) },
  };
}
