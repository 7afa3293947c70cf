/*
 * What this library knows of a response, kept in one WeakMap keyed by the response (held on
 * `globalThis` under a registered symbol, so every copy of the library in a process shares it):
 * - `SENT`: this library sent it. Nest replies once more when the route's Observable emits (it
 *   calls `httpAdapter.reply(res, value)`, and neither adapter checks whether the response is
 *   already out), so the guarded `reply` skips these.
 * - `WATCHING`: its handler is running under a claim and has not answered at once; if Nest replies
 *   meanwhile (an outer interceptor such as a timeout, or an exception filter, answered the client
 *   before the handler finished), what the response looked like then replaces it, so the
 *   handler's result can still be stored.
 * A WeakMap, not a property of the response: adding a property to Express's response moves it to
 * a new hidden class and copies its properties (V8's MigrateToMap), about 5,600 instructions per
 * request counted by callgrind (bench/README.md), against about 900 for the WeakMap's work.
 */
const STATE = Symbol.for('nestjs-idempotent:reply-state');
const SENT = 'sent';
const WATCHING = 'watching';

type ReplyState = typeof SENT | typeof WATCHING | ResponseSnapshot | undefined;
const shared = globalThis as { [STATE]?: WeakMap<object, ReplyState> };
const states: WeakMap<object, ReplyState> = (shared[STATE] ??= new WeakMap());

/** The status code and headers of a response at one moment. @internal */
export interface ResponseSnapshot {
  readonly statusCode: number;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, unknown>>;
}

// v2: the states moved from a property of the response to the WeakMap; an older copy of the
// library in the same process installs its own guard (each skips the responses it marked).
const GUARDED = Symbol.for('nestjs-idempotent:reply-guard-v2');

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
      const state = states.get(response);
      if (state === SENT) return response;
      // Nest answers a response whose handler is still running: remember what the handler had set
      // up (status, headers) before this answer overwrites it, so its result can still be stored.
      if (state === WATCHING) states.set(response, snapshotOf(response));
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
  states.set(response as object, SENT);
}

/** Starts watching `response` for a reply Nest sends while its handler runs. @internal */
export function watchReplies(response: object): void {
  if (states.get(response) !== SENT) states.set(response, WATCHING);
}

/** What `response` looked like when Nest replied to it while it was watched, else `undefined`. @internal */
export function outerReply(response: object): ResponseSnapshot | undefined {
  const state = states.get(response);
  return typeof state === 'object' ? state : undefined;
}

/** @internal */
export function stopWatchingReplies(response: object): void {
  if (states.get(response) !== SENT) states.delete(response);
}

function snapshotOf(response: object): ResponseSnapshot {
  const r = response as { statusCode?: unknown; getHeaders?: () => Record<string, unknown> };
  return {
    statusCode: typeof r.statusCode === 'number' ? r.statusCode : 200,
    headers: { ...(typeof r.getHeaders === 'function' ? r.getHeaders() : {}) },
  };
}
