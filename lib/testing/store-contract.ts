import { setTimeout as realTimeout } from 'node:timers';
import type { IdempotencyStore } from '../core/idempotency-store';
import { ContractAssertionError, show } from './contract-assert';
import { CONTRACT_CASES, type ContractCaseContext } from './store-contract-cases';

/** A store made for one contract case, and how to release it. */
export interface StoreFixture {
  /** A fresh store over an empty namespace: nothing stored, fencing counters from zero. */
  readonly store: IdempotencyStore;
  /**
   * Releases the store and whatever was opened for it (a table, a key prefix, a connection).
   * Called after the case, whether it passed or not.
   * @default `store.close()`
   */
  close?(): void | PromiseLike<unknown>;
}

/**
 * Makes the store for one case: a store, or a {@link StoreFixture} when something besides
 * `store.close()` must be released. Called once per case, inside the case.
 */
export type MakeStore = () => IdempotencyStore | StoreFixture | PromiseLike<IdempotencyStore | StoreFixture>;

/**
 * The test runner's functions, and how to run the suite. Jest's and Vitest's globals and
 * `node:test`'s exports fit as they are: `{ describe, it }`.
 */
export interface StoreContractOptions {
  /** Declares a group of cases; `fn` declares them synchronously. */
  describe(name: string, fn: () => void): unknown;
  /**
   * Declares one case; `fn` runs it, and rejects when it fails. On a local server each case takes
   * at most about a second at `timeScale` 1 (the longest waits a second); to give every
   * case a timeout of its own, pass a wrapper, e.g. `it: (name, fn) => it(name, fn, 10_000)` in Jest.
   */
  it(name: string, fn: () => Promise<void>): unknown;
  /** Names the store in the outer group, `store contract: <name>`, and in every failure message. */
  name?: string;
  /**
   * Stretches every short lease, ttl and wait of the time-dependent cases (tens to hundreds of
   * ms at 1) by this factor, for stores whose expiry is coarser than a few ms or whose server
   * is far away. A whole number from 1.
   * @default 1
   */
  timeScale?: number;
}

/**
 * A contract case that failed: `message` names the store and the case, then what was checked,
 * expected and found. The original error (a failed check, or what the store threw) is its `cause`.
 */
export class StoreContractError extends Error {
  constructor(
    /** `<group> › <case>`. */
    readonly testCase: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreContractError';
  }
}

const STORE_METHODS = ['tryInsert', 'complete', 'remove', 'touch', 'purge', 'get', 'claim', 'close'] as const;

/**
 * Declares the store contract suite (the cases every store of this library passes) with the test
 * runner's own `describe` and `it`, for a store made by `makeStore`:
 *
 * ```ts
 * import { storeContract } from 'nestjs-idempotent/testing';
 * storeContract(() => new MyStore(), { describe, it, name: 'MyStore' });
 * ```
 *
 * Each case makes its own store (`makeStore` must give one over an empty namespace: its fencing
 * tokens start at 1), runs against it on the real clock, and releases it. A case that fails throws a
 * {@link StoreContractError} naming the case. Cases within the suite run one after another (the
 * runners' default); they must not share a namespace if the runner is told to run them at once.
 */
export function storeContract(makeStore: MakeStore, options: StoreContractOptions): void {
  if (typeof makeStore !== 'function') throw new TypeError('storeContract: makeStore must be a function');
  const { describe, it } = options ?? ({} as StoreContractOptions);
  if (typeof describe !== 'function' || typeof it !== 'function') {
    throw new TypeError("storeContract: pass your test runner's functions, { describe, it }");
  }
  const scale = options.timeScale ?? 1;
  if (!Number.isInteger(scale) || scale < 1) {
    throw new RangeError(`storeContract: timeScale must be a whole number from 1, got ${String(scale)}`);
  }
  const title = options.name === undefined ? 'store contract' : `store contract: ${options.name}`;
  const label = options.name === undefined ? 'store contract' : `store contract (${options.name})`;
  const context = {
    ms: (n: number) => n * scale,
    sleep: (n: number) => new Promise<void>((resolve) => realTimeout(resolve, n * scale)),
  };
  const groups = [...new Set(CONTRACT_CASES.map((c) => c.group))];

  describe(title, () => {
    for (const group of groups) {
      describe(group, () => {
        for (const testCase of CONTRACT_CASES.filter((c) => c.group === group)) {
          const path = `${group} › ${testCase.name}`;
          const fail = (what: string, cause: unknown): StoreContractError =>
            new StoreContractError(path, `${label} › ${path}: ${what}`, { cause });
          // Declared without parameters: runners read a parameter as a `done` callback.
          it(testCase.name, async () => {
            let fixture: Required<StoreFixture>;
            try {
              fixture = fixtureOf(await makeStore());
            } catch (error) {
              throw fail(`makeStore() failed: ${show(error)}`, error);
            }
            const t: ContractCaseContext = { store: fixture.store, ...context };
            let failure: StoreContractError | undefined;
            try {
              await testCase.run(t);
            } catch (error) {
              failure =
                error instanceof ContractAssertionError
                  ? fail(error.message, error)
                  : fail(`threw ${show(error)}`, error);
            }
            try {
              await fixture.close();
            } catch (error) {
              // A case's own failure says more than a close that failed after it.
              failure ??= fail(`closing the store failed: ${show(error)}`, error);
            }
            if (failure !== undefined) throw failure;
          });
        }
      });
    }
  });
}

function fixtureOf(made: unknown): Required<StoreFixture> {
  if (isStore(made)) return { store: made, close: () => made.close() };
  if (typeof made === 'object' && made !== null && isStore((made as StoreFixture).store)) {
    const { store, close } = made as StoreFixture;
    if (close !== undefined && typeof close !== 'function') throw new TypeError('close must be a function');
    return { store, close: close === undefined ? () => store.close() : () => close.call(made) };
  }
  throw new TypeError(`it must give an IdempotencyStore or { store, close? }, got ${show(made)}`);
}

function isStore(value: unknown): value is IdempotencyStore {
  return (
    typeof value === 'object' &&
    value !== null &&
    STORE_METHODS.every((m) => typeof (value as Record<string, unknown>)[m] === 'function')
  );
}
