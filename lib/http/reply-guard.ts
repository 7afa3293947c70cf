/*
 * What this library knows of a response, kept on the response itself under one symbol (a
 * registered one, so every copy of the library in a process shares it):
 * - `SENT`: this library sent it. Nest replies once more when the route's Observable emits (it
 *   calls `httpAdapter.reply(res, value)`, and neither adapter checks whether the response is
 *   already out), so the guarded `reply` skips these.
 * - `WATCHING`: its handler is running under a claim and has not answered at once; if Nest replies
 *   meanwhile (an outer interceptor such as a timeout, or an exception filter, answered the client
 *   before the handler finished), what the response looked like then replaces it, so the
 *   handler's result can still be stored.
 * A property, not a WeakSet or WeakMap: adding every response of a busy server to a weak
 * collection costs about a microsecond each, and more garbage-collection work.
 */
const STATE = Symbol.for('nestjs-idempotent:reply-state');
const SENT = 'sent';
const WATCHING = 'watching';

type ReplyState = typeof SENT | typeof WATCHING | ResponseSnapshot | undefined;
type Tracked = { [STATE]?: ReplyState };

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
      const state = (response as Tracked)[STATE];
      if (state === SENT) return response;
      // Nest answers a response whose handler is still running: remember what the handler had set
      // up (status, headers) before this answer overwrites it, so its result can still be stored.
      if (state === WATCHING) (response as Tracked)[STATE] = snapshotOf(response);
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
  (response as Tracked)[STATE] = SENT;
}

/** Starts watching `response` for a reply Nest sends while its handler runs. @internal */
export function watchReplies(response: object): void {
  if ((response as Tracked)[STATE] !== SENT) (response as Tracked)[STATE] = WATCHING;
}

/** What `response` looked like when Nest replied to it while it was watched, else `undefined`. @internal */
export function outerReply(response: object): ResponseSnapshot | undefined {
  const state = (response as Tracked)[STATE];
  return typeof state === 'object' ? state : undefined;
}

/** @internal */
export function stopWatchingReplies(response: object): void {
  if ((response as Tracked)[STATE] !== SENT) (response as Tracked)[STATE] = undefined;
}

function snapshotOf(response: object): ResponseSnapshot {
  const r = response as { statusCode?: unknown; getHeaders?: () => Record<string, unknown> };
  return {
    statusCode: typeof r.statusCode === 'number' ? r.statusCode : 200,
    headers: { ...(typeof r.getHeaders === 'function' ? r.getHeaders() : {}) },
  };
}
