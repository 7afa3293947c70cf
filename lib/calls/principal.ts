import { IdempotencyError } from '../core/errors';
import { defaultScope } from '../idempotency.options';
import type { IdempotencyRequest, ScopeFunction } from '../interfaces/idempotency-options.interface';

/**
 * The request's principal cannot be named, so its key cannot be scoped: the request is refused
 * (500), never run unscoped, where it could replay another principal's response.
 * @internal
 */
export class UnusableScopeError extends IdempotencyError {}

/**
 * The principal `scope` names for `req` (routes and resolvers alike): a non-empty string as it
 * is, a finite number or a bigint as its decimal text; `undefined` for no principal (`scope: false`,
 * no request, the scope function answering `undefined` or `null`, or the default scope finding no
 * `request.user`).
 * @throws UnusableScopeError when the default scope finds a `request.user` without a usable id, or
 *   a scope function answers anything else (an object, an array, an empty string, ...).
 * @internal
 */
export function principalOf(scope: ScopeFunction | false, req: IdempotencyRequest | undefined): string | undefined {
  if (scope === false || req === undefined || req === null) return undefined;
  const principal: unknown = scope(req);
  switch (typeof principal) {
    case 'string':
      if (principal.length > 0) return principal;
      break;
    case 'number':
      if (Number.isFinite(principal)) return String(principal);
      break;
    case 'bigint':
      return String(principal);
    case 'undefined':
      if (scope !== defaultScope || !hasUser(req)) return undefined;
      throw new UnusableScopeError(
        'request.user has no usable id (a non-empty string, a finite number or a bigint in id, sub or userId), ' +
          'so its idempotency keys cannot be scoped to a principal',
      );
    case 'object':
      if (principal === null) return undefined;
      break;
  }
  throw new UnusableScopeError(
    `the scope function returned ${describe(principal)}, not a principal id (a non-empty string, a finite ` +
      'number or a bigint; undefined or null for no principal), so idempotency keys cannot be scoped',
  );
}

/** Whether the request carries an authenticated user (`request.user` set to something). */
function hasUser(req: IdempotencyRequest): boolean {
  const user: unknown = req.user;
  return user !== undefined && user !== null && user !== false;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return 'an empty string';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'object' && value !== null) {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== 'Object' ? `an object (${name})` : 'an object';
  }
  return `a ${typeof value}`;
}

/**
 * Logs, once per handler, why its requests are refused for want of a usable principal: the fix is
 * the `scope` option.
 * @internal
 */
export class UnusableScopeLog {
  readonly #logged = new WeakSet<object>();

  once(handler: object, name: string, error: UnusableScopeError, logger: { error(message: string): void }): void {
    if (this.#logged.has(handler)) return;
    this.#logged.add(handler);
    logger.error(
      `${name}: ${error.message}. Its requests with an idempotency key are refused (500) rather than run ` +
        'unscoped, where one user could replay another\'s response. Set the "scope" option to a function of ' +
        'the request that names the principal, or scope: false for keys shared by every user.',
    );
  }
}
