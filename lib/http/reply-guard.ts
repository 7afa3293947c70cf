/**
 * Responses this library has sent itself. Nest replies once more when the route's Observable
 * emits (it calls `httpAdapter.reply(res, value)`, and neither adapter checks whether the
 * response is already out), so the guarded `reply` skips these.
 */
const sentByUs = new WeakSet<object>();

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
    if (typeof response === 'object' && response !== null && sentByUs.has(response)) return response;
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
