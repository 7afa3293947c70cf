import { Inject, Injectable } from '@nestjs/common';
import { FencedOutcome } from '../core/fenced-outcome';
import type { FencingToken } from '../core/fencing-token';
import { IdempotencyKey } from '../core/idempotency-key';
import { IdempotencyStore, type StoreKeyInfo } from '../core/idempotency-store';
import { storeInChain } from '../core/store-chain';
import { clientKeyFor, storeKeyFor } from '../core/store-key';
import { unstoredResultOf } from '../core/unstored-results';
import { IDEMPOTENCY_OPTIONS } from '../idempotency.constants';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';

/** Whose key: the principal it was used under, as requests name it (`request.user.id`, a `scope` function's answer). */
export interface IdempotencyAdminKeyOptions {
  /**
   * The principal the key was used under: what the route's `scope` named (by default
   * `request.user.id`, `.sub` or `.userId`), or `IdempotencyService.run`'s `scope`. Omit it for
   * an unscoped key.
   */
  scope?: string | number | bigint;
}

/** `IdempotencyAdmin.release` options. */
export interface IdempotencyAdminReleaseOptions extends IdempotencyAdminKeyOptions {
  /** Also release a completed key (its stored response is dropped: the next request runs again). */
  force?: boolean;
}

/** What `IdempotencyAdmin.inspect` found. */
export interface IdempotencyKeyInspection {
  /** `absent`: nothing stored (never used, expired, released or purged). */
  readonly state: 'absent' | 'processing' | 'completed';
  /** The token of the claim that holds (or completed) the key, when the store can say it. */
  readonly fencingToken?: FencingToken;
  /** The lease (processing) or replay window (completed) left, in ms, when the store can say it. */
  readonly msLeft?: number;
  /**
   * This process holds a result for the key that its store has not taken yet (a deferred
   * completion): it is retried in the background, and requests for the key in this process are
   * answered 409 until it is stored.
   */
  readonly heldHere: boolean;
}

/**
 * An operator's view of idempotency keys (provided by `IdempotencyModule`, injectable): what a
 * key holds, and releasing or purging it. Keys are named as clients send them, with the principal
 * they were used under, and scoped exactly as requests are. See docs/operations.md.
 */
@Injectable()
export class IdempotencyAdmin {
  constructor(
    private readonly store: IdempotencyStore,
    @Inject(IDEMPOTENCY_OPTIONS) private readonly options: ResolvedIdempotencyOptions,
  ) {}

  /** The store key requests with this client key and principal use. */
  storeKeyOf(key: string | IdempotencyKey, options: IdempotencyAdminKeyOptions = {}): IdempotencyKey {
    const clientKey = key instanceof IdempotencyKey ? key : clientKeyFor(key, this.options.maxKeyLength);
    const scope = options.scope;
    if (scope === undefined) return storeKeyFor(clientKey, undefined);
    const principal = typeof scope === 'string' ? scope : String(scope);
    if (
      principal.length === 0 ||
      (typeof scope === 'number' && !Number.isFinite(scope)) ||
      !['string', 'number', 'bigint'].includes(typeof scope)
    ) {
      throw new TypeError('IdempotencyAdmin: scope must be a non-empty string, a finite number or a bigint');
    }
    return storeKeyFor(clientKey, principal);
  }

  /** What the key holds: its state, its claim's token and time left (when the store can say), and whether this process holds its result unstored. */
  async inspect(
    key: string | IdempotencyKey,
    options: IdempotencyAdminKeyOptions = {},
  ): Promise<IdempotencyKeyInspection> {
    const storeKey = this.storeKeyOf(key, options);
    const heldHere = unstoredResultOf(this.store, storeKey) !== undefined;
    const info = await this.#info(storeKey);
    if (info !== null) {
      return info === undefined
        ? { state: 'absent', heldHere }
        : { state: info.state, fencingToken: info.fencingToken, msLeft: info.msLeft, heldHere };
    }
    const entry = await this.store.get(storeKey);
    return { state: entry === undefined ? 'absent' : entry.isCompleted() ? 'completed' : 'processing', heldHere };
  }

  /**
   * Frees a key held by a claim (a holder that crashed, or hangs), so the next request runs: `true`
   * when it was released. A completed key only with `force` (its response is dropped). The
   * release is checked against the claim's token: a claim made since the inspection is left alone.
   * With a store that cannot say the token (no `inspect`), the key is purged instead. A key whose
   * result this process holds unstored (`heldHere`: the handler ran, the store refused the result
   * so far) is left alone unless `force`: released, a retry would run the work again.
   */
  async release(key: string | IdempotencyKey, options: IdempotencyAdminReleaseOptions = {}): Promise<boolean> {
    const storeKey = this.storeKeyOf(key, options);
    if (options.force !== true && unstoredResultOf(this.store, storeKey) !== undefined) return false;
    const info = await this.#info(storeKey);
    if (info === null) {
      const entry = await this.store.get(storeKey);
      if (entry === undefined || (entry.isCompleted() && options.force !== true)) return false;
      await this.store.purge(storeKey);
      return true;
    }
    if (info === undefined || (info.state === 'completed' && options.force !== true)) return false;
    return (await this.store.remove(storeKey, info.fencingToken)) === FencedOutcome.Applied;
  }

  /** Deletes whatever the key holds, unconditionally: the next request with it runs again. */
  async purge(key: string | IdempotencyKey, options: IdempotencyAdminKeyOptions = {}): Promise<void> {
    await this.store.purge(this.storeKeyOf(key, options));
  }

  /** The store's own account of the key; `null` when no store in the chain can give one. */
  #info(storeKey: IdempotencyKey): Promise<StoreKeyInfo | undefined> | null {
    const store = storeInChain(this.store, (s) => typeof (s as IdempotencyStore).inspect === 'function') as
      IdempotencyStore | undefined;
    return store === undefined ? null : store.inspect!(storeKey);
  }
}
