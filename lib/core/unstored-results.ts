import type { Fingerprint } from './fingerprint';
import type { IdempotencyKey } from './idempotency-key';
import type { StoreOperations } from './store-operations';

/*
 * Results this process holds that its store has not taken yet (DESIGN 7.1): from the moment a
 * completion cannot be stored at once until it is stored, or the key is found to be another
 * claim's. While one is held, a claim of its key in this process never goes to the store (where
 * the run's claim may have expired meanwhile, so the work would run again): it asks for the held
 * result to be stored now, and answers from the store only once it is; until then, in-flight.
 */

/** One result held by this process, not stored yet. @internal */
export class UnstoredResult {
  /** Ends the pause between two attempts at once (a claim of the key is waiting). */
  #wake: (() => void) | undefined;
  /** Claims waiting for the next attempt: told whether the result is stored (or no longer held). */
  #waiters: ((done: boolean) => void)[] = [];
  #ended = false;

  constructor(
    private readonly table: Map<string, UnstoredResult>,
    private readonly id: string,
    /** The fingerprint of the request whose result this is. */
    readonly fingerprint: Fingerprint,
  ) {}

  /**
   * A pause of `ms` before the next attempt, cut short when a claim of the key asks for the result
   * (`store()`). `keepAlive`: whether the pause keeps the process alive (a caller awaits it).
   */
  pause(ms: number, keepAlive: boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#waiters.length > 0 || this.#ended) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      if (!keepAlive) timer.unref();
      this.#wake = done;
    });
  }

  /** An attempt to store the result failed: the claims waiting for it answer in-flight. */
  failedAttempt(): void {
    const waiters = this.#waiters;
    if (waiters.length === 0) return;
    this.#waiters = [];
    for (const waiter of waiters) waiter(false);
  }

  /** The result is stored, or the key is another claim's now: claims of it go to the store again. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.table.get(this.id) === this) {
      this.table.delete(this.id);
      held--;
    }
    this.#wake?.();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter(true);
  }

  /**
   * Asks for an attempt to store the result now. Resolves `true` once it is stored (or no longer
   * held here), `false` when the next attempt failed too.
   */
  store(): Promise<boolean> {
    if (this.#ended) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      this.#waiters.push(resolve);
      this.#wake?.();
    });
  }
}

/** The held results of each store (the innermost of wrapped stores), by store key. */
const tables = new WeakMap<object, Map<string, UnstoredResult>>();
/** How many results are held in all: claims skip the lookup while there are none. */
let held = 0;

/**
 * The store a wrapper (telemetry, a fault injector) stands for, so that every entry point of the
 * process (routes, services, messages) shares the results it holds.
 */
function baseOf(store: StoreOperations): object {
  let base: object = store;
  for (let inner = (base as { inner?: unknown }).inner; isStore(inner); inner = (base as { inner?: unknown }).inner) {
    base = inner;
  }
  return base;
}

function isStore(value: unknown): value is StoreOperations {
  return typeof value === 'object' && value !== null && typeof (value as StoreOperations).tryInsert === 'function';
}

/** The result this process holds for `key` and has not stored yet, if any. @internal */
export function unstoredResultOf(store: StoreOperations, key: IdempotencyKey): UnstoredResult | undefined {
  if (held === 0) return undefined;
  return tables.get(baseOf(store))?.get(key.toString());
}

/** Holds a result for `key` until `end()`: claims of the key in this process wait for it. @internal */
export function holdUnstoredResult(
  store: StoreOperations,
  key: IdempotencyKey,
  fingerprint: Fingerprint,
): UnstoredResult {
  const base = baseOf(store);
  let table = tables.get(base);
  if (table === undefined) {
    table = new Map();
    tables.set(base, table);
  }
  const id = key.toString();
  const result = new UnstoredResult(table, id, fingerprint);
  if (!table.has(id)) held++;
  table.set(id, result);
  return result;
}
