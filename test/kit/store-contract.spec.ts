/**
 * The contract suite itself: it declares every case, passes a correct store, and fails a store
 * that breaks the contract, case by case, with messages that name the case. The suite runs here
 * through collecting `describe`/`it` (test/kit/collect.ts), so a failing case is a result to check
 * rather than a failure of this file.
 */
import type * as NodeTest from 'node:test';
import { MemoryStore } from '../../lib';
import { FaultyStore, storeContract, StoreContractError, type MakeStore } from '../../lib/testing';
import { collect, failed, runCases, type CollectedCase } from './collect';
import { ToyBug, ToyStore } from './toy-store';

const CASES = [
  'tryInsert › claims a fresh key with fencing token 1 and a nonce',
  'tryInsert › answers exists with the live processing entry, unmodified by the failed claim',
  'tryInsert › answers exists with the completed entry and its response',
  'tryInsert › lets exactly one of 50 concurrent claims of one key win',
  'tryInsert › keeps different keys, scoped keys and long keys apart',
  'tryInsert › hands out an entry that completing does not affect for anyone else',
  'complete › stores the response: status, exact bytes and metadata',
  'complete › stores an empty body and a 1 MiB body',
  'complete › answers KeyExpired for a key never claimed',
  'complete › answers FencingMismatch for another number, another nonce or no nonce, and changes nothing',
  'complete › answers FingerprintMismatch for another fingerprint and changes nothing',
  'complete › checks the fencing token before the fingerprint',
  'complete › never replaces the first response; the same holder completing again gets Applied',
  'complete › a token restored from JSON still completes its claim',
  'complete › rejects invalid durations with a RangeError naming ttlMs',
  'expiry, reclaim and fencing › treats an expired processing entry as missing and reclaims it with a newer token',
  'expiry, reclaim and fencing › refuses a stale completion after expiry and reclaim, leaving the new claim untouched',
  'expiry, reclaim and fencing › answers KeyExpired to a completion after the lease ran out unclaimed',
  'expiry, reclaim and fencing › keeps a completed entry ttlMs from completion, then lets it expire',
  'expiry, reclaim and fencing › gives strictly increasing tokens across remove, purge and expiry',
  'remove › releases a processing entry so the key can be claimed again',
  'remove › releases a completed entry for its holder',
  'remove › refuses another token and answers KeyExpired for a missing key',
  'touch › extends a live processing lease',
  'touch › never extends a completed entry',
  'touch › answers KeyExpired for a missing key and FencingMismatch for another token',
  'repeated operations › repeats of touch, complete, get and purge answer the same; a repeated remove finds nothing',
  'purge and get › purge deletes processing and completed entries and ignores missing keys',
  'purge and get › get reads without claiming',
  'claim builder › executes once, then replays; the side effect gets the stored token',
  'claim builder › answers in-flight while running and fingerprint-mismatch for another body',
  'claim builder › releases the key when the side effect throws, so a retry runs',
  'claim builder › renews the lease while a side effect outlives it',
];

/** The suite's cases for `makeStore`, named `store contract: <name> › <group> › <case>`. */
const suite = (makeStore: MakeStore, name = 'toy', timeScale?: number): CollectedCase[] =>
  collect((fns) => storeContract(makeStore, { ...fns, name, timeScale }));

/** Just the cases whose names end with one of `endings`. */
const only = (cases: CollectedCase[], ...endings: string[]) =>
  cases.filter((c) => endings.some((e) => c.name.endsWith(e)));

const full = (name: string) => (c: string) => `store contract: ${name} › ${c}`;

describe('storeContract', () => {
  it('declares every case of the store contract, grouped by operation', () => {
    expect(suite(() => new ToyStore()).map((c) => c.name)).toEqual(CASES.map(full('toy')));
  });

  it('passes a correct store', async () => {
    const results = await runCases(suite(() => new ToyStore()));
    expect(results.filter((r) => r.error).map((r) => `${r.name}: ${r.error?.message}`)).toEqual([]);
    expect(results).toHaveLength(CASES.length);
  }, 30_000);

  // Each bug, and exactly the cases that catch it.
  const broken: [bug: ToyBug, caughtBy: string[]][] = [
    ['claims-twice', ['tryInsert › lets exactly one of 50 concurrent claims of one key win']],
    [
      'ignores-fencing',
      [
        'complete › answers FencingMismatch for another number, another nonce or no nonce, and changes nothing',
        'complete › checks the fencing token before the fingerprint',
        'expiry, reclaim and fencing › refuses a stale completion after expiry and reclaim, leaving the new claim untouched',
        'remove › refuses another token and answers KeyExpired for a missing key',
        'touch › answers KeyExpired for a missing key and FencingMismatch for another token',
      ],
    ],
    [
      'replaces-completed',
      ['complete › never replaces the first response; the same holder completing again gets Applied'],
    ],
  ];

  it.each(broken)(
    'fails a store that %s, in the cases that catch it',
    async (bug, caughtBy) => {
      const results = await runCases(suite(() => new ToyStore(bug), bug));
      expect(failed(results)).toEqual(caughtBy.map(full(bug)));
      for (const { name, error } of results.filter((r) => r.error)) {
        expect(error).toBeInstanceOf(StoreContractError);
        // The message names the store and the case, whatever runner prints it.
        expect(
          error?.message.startsWith(`store contract (${bug}) › ${name.slice(`store contract: ${bug} › `.length)}: `),
        ).toBe(true);
      }
    },
    30_000,
  );

  it('says what was checked, expected and found', async () => {
    const [result] = await runCases(
      only(
        suite(() => new ToyStore('claims-twice'), 'racy'),
        'of one key win',
      ),
    );
    expect(result.error).toBeInstanceOf(StoreContractError);
    expect(result.error?.message).toBe(
      'store contract (racy) › tryInsert › lets exactly one of 50 concurrent claims of one key win: ' +
        'claims that won: expected 1, got 50',
    );
    expect((result.error as StoreContractError).testCase).toBe(
      'tryInsert › lets exactly one of 50 concurrent claims of one key win',
    );
    expect((result.error as StoreContractError).cause).toBeInstanceOf(Error);
  });

  it('reports what the store threw, with the error as the cause', async () => {
    const boom = new Error('disk on fire');
    const cases = suite(() => new FaultyStore(new MemoryStore()).failNext('get', boom, Infinity), 'faulty');
    const [result] = await runCases(only(cases, 'get reads without claiming'));
    expect(result.error?.message).toBe(
      'store contract (faulty) › purge and get › get reads without claiming: threw Error: disk on fire',
    );
    expect((result.error as StoreContractError).cause).toBe(boom);
  });

  it('makes a fresh store for every case and closes it after, passed or failed', async () => {
    const made: ToyStore[] = [];
    const closed: ToyStore[] = [];
    const cases = suite(() => {
      const store = new ToyStore('claims-twice');
      made.push(store);
      return { store, close: () => void closed.push(store) };
    });
    const results = await runCases(only(cases, 'of one key win', 'get reads without claiming'));
    expect(failed(results)).toHaveLength(1);
    expect(made).toHaveLength(2);
    expect(made[0]).not.toBe(made[1]);
    expect(closed).toEqual(made);
  });

  it('takes a store, or a fixture, made at once or by a promise; without close it calls store.close()', async () => {
    const closes: string[] = [];
    const closing = (name: string) => {
      const store = new ToyStore();
      store.close = async () => void closes.push(name);
      return store;
    };
    const makers: [string, MakeStore][] = [
      ['store', () => closing('store')],
      ['async store', async () => closing('async store')],
      ['fixture', () => ({ store: closing('unused'), close: async () => void closes.push('fixture') })],
      ['fixture without close', async () => ({ store: closing('fixture without close') })],
    ];
    for (const [name, make] of makers) {
      const results = await runCases(only(suite(make, name), 'get reads without claiming'));
      expect(failed(results)).toEqual([]);
    }
    expect(closes).toEqual(['store', 'async store', 'fixture', 'fixture without close']);
  });

  it('fails a case, naming it, when makeStore throws or gives no store, or closing fails', async () => {
    const cases = [
      ...only(
        suite(() => Promise.reject(new Error('no database')), 'down'),
        'get reads without claiming',
      ),
      ...only(
        suite(() => ({}) as never, 'empty'),
        'get reads without claiming',
      ),
      ...only(
        suite(() => ({ store: new ToyStore(), close: () => Promise.reject(new Error('still busy')) }), 'stuck'),
        'get reads without claiming',
      ),
    ];
    const messages = (await runCases(cases)).map((r) => r.error?.message);
    expect(messages).toEqual([
      'store contract (down) › purge and get › get reads without claiming: makeStore() failed: Error: no database',
      'store contract (empty) › purge and get › get reads without claiming: makeStore() failed: ' +
        'TypeError: it must give an IdempotencyStore or { store, close? }, got {}',
      'store contract (stuck) › purge and get › get reads without claiming: closing the store failed: Error: still busy',
    ]);
  });

  it('stretches every short lease, ttl and wait by timeScale', async () => {
    const cases = only(
      suite(() => new MemoryStore(), 'slow clock', 3),
      'across remove, purge and expiry',
    );
    const started = Date.now();
    expect(failed(await runCases(cases))).toEqual([]);
    // The case waits 100 ms for a 50 ms lease to run out: 300 ms at timeScale 3.
    expect(Date.now() - started).toBeGreaterThanOrEqual(295);
  });

  it('refuses to declare a suite without the runner’s functions or with a bad timeScale', () => {
    const make = () => new MemoryStore();
    expect(() => storeContract(make, {} as never)).toThrow(/\{ describe, it \}/);
    expect(() => storeContract(undefined as never, { describe, it })).toThrow(/makeStore must be a function/);
    expect(() => storeContract(make, { describe, it, timeScale: 0.5 })).toThrow(RangeError);
  });
});

/** Compile-time check: `node:test`'s own `describe` and `it` fit as they are (see node-test-runner.mjs). */
export function nodeTestFits(nodeTest: typeof NodeTest): void {
  storeContract(() => new MemoryStore(), { describe: nodeTest.describe, it: nodeTest.it });
}
