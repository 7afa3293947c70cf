import { defaultScope } from '../idempotency.providers';
import type { IdempotencyRequest, ScopeFunction } from '../interfaces/idempotency-options.interface';

/**
 * The principal `scope` names for `req` (routes and resolvers alike): a non-empty string as it
 * is, a number or bigint as its decimal text, else `undefined` (no principal). `onUnnamedUser`
 * is called when the default scope finds a `request.user` it cannot name.
 * @internal
 */
export function principalOf(
  scope: ScopeFunction | false,
  req: IdempotencyRequest | undefined,
  onUnnamedUser: () => void,
): string | undefined {
  if (scope === false || req === undefined || req === null) return undefined;
  const principal = scope(req);
  if (typeof principal === 'string' && principal.length > 0) return principal;
  if (typeof principal === 'number' || typeof principal === 'bigint') return String(principal);
  if (scope === defaultScope && typeof req.user === 'object' && req.user !== null) onUnnamedUser();
  return undefined;
}

/**
 * An authenticated `request.user` the default scope cannot name (no id, sub or userId) would share
 * keys with every other user of the handler: says so, once per handler.
 * @internal
 */
export class UnnamedUserWarnings {
  readonly #warned = new WeakSet<object>();

  warnOnce(handler: object, name: string, logger: { warn(message: string): void }): void {
    if (this.#warned.has(handler)) return;
    this.#warned.add(handler);
    logger.warn(
      `${name}: request.user has no id, sub or userId, so its keys are not scoped to a principal and users ` +
        'could replay each other\'s responses; set the "scope" option (a function of the request) or ' +
        'scope: false to silence this',
    );
  }
}
