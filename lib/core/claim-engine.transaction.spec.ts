/**
 * The claim engine's transactional run (issue 18, DESIGN 7.3), on a store whose transactions are
 * kept in memory: the work's writes and the completion become visible together at commit, or not
 * at all. The same protocol runs on a real PostgreSQL in test/postgres/.
 */
import { CachedResponse } from './cached-response';
import {
  type Claimed,
  type ClaimedWork,
  type ClaimRequest,
  claimKey,
  failedAfterInFlight,
  runClaimed,
  settleDeferredCompletions,
} from './claim-engine';
import { IdempotencyStoreError } from './errors';
import { FencedOutcome } from './fenced-outcome';
import type { FencingToken } from './fencing-token';
import { DefaultFingerprintStrategy } from './fingerprint-strategy';
import type { CompletedEntry } from './idempotency-entry';
import { IdempotencyKey } from './idempotency-key';
import type { StoreTransaction, TransactionalStore } from './store-transaction';
import { MemoryStore } from '../stores/memory.store';

const FP = new DefaultFingerprintStrategy().compute('POST /charges', '{"amount":1}');
const LEASE = 1_000;
const TTL = 60_000;
const bodyOf = (r: CachedResponse) => Buffer.from(r.body).toString();

/** The rows the work writes, as a database would hold them once committed. */
type Rows = string[];

/** A MemoryStore with transactions: writes and the completion are applied at commit, together. */
class TransactionalMemoryStore extends MemoryStore implements TransactionalStore {
  readonly rows: Rows = [];
  /** What the next commit does. */
  nextCommit: 'commit' | 'rolled-back' | 'lost-after-commit' | 'lost-before-commit' = 'commit';
  failBegin = false;
  open = 0;

  async beginTransaction(): Promise<StoreTransaction<Rows>> {
    if (this.failBegin) throw new IdempotencyStoreError('no connection');
    this.open++;
    const pending: Rows = [];
    let completion: { key: IdempotencyKey; entry: CompletedEntry; token: FencingToken; ttlMs: number } | undefined;
    let ended = false;
    const end = () => {
      if (!ended) this.open--;
      ended = true;
    };
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const store = this;
    return {
      client: pending,
      async complete(key, entry, token, ttlMs) {
        // As the token-checked UPDATE would answer, without writing yet.
        const current = await store.get(key);
        if (current === undefined) return FencedOutcome.KeyExpired;
        completion = { key, entry, token, ttlMs };
        const touched = await store.touch(key, token, LEASE);
        return touched === FencedOutcome.Applied ? FencedOutcome.Applied : touched;
      },
      async commit() {
        end();
        const mode = store.nextCommit;
        store.nextCommit = 'commit';
        if (mode === 'rolled-back') return 'rolled-back';
        if (mode === 'lost-before-commit') throw new Error('connection lost during COMMIT');
        if (completion !== undefined) {
          await store.complete(completion.key, completion.entry, completion.token, completion.ttlMs);
        }
        store.rows.push(...pending);
        if (mode === 'lost-after-commit') throw new Error('connection lost during COMMIT');
        return 'committed';
      },
      async rollback() {
        end();
      },
    };
  }
}

describe('claim engine: work in a transaction with its result', () => {
  let store: TransactionalMemoryStore;

  beforeEach(() => {
    jest.useFakeTimers({ now: 1_000_000 });
    store = new TransactionalMemoryStore();
  });

  afterEach(async () => {
    const settled = settleDeferredCompletions(0, () => true);
    await jest.advanceTimersByTimeAsync(1);
    await settled;
    jest.useRealTimers();
    await store.close();
  });

  const request = (key = 'k'): ClaimRequest => ({
    store,
    key: new IdempotencyKey(key),
    fingerprint: FP,
    leaseMs: LEASE,
    ttlMs: TTL,
  });

  async function claimed(req: ClaimRequest): Promise<Claimed> {
    const decision = await claimKey(req);
    if (decision.kind !== 'claimed') throw new Error(`expected a claim, got ${decision.kind}`);
    return decision;
  }

  /** Work that writes `row` through its transaction (after `ms` of fake time), then answers `body`. */
  function work(row: string, body: string, options: { ms?: number; fail?: boolean } = {}) {
    const counter = { runs: 0 };
    const spec: ClaimedWork<string> = {
      transactional: true,
      run: async (_lease, transaction) => {
        counter.runs++;
        (transaction!.client as Rows).push(row);
        if (options.ms) await new Promise((resolve) => setTimeout(resolve, options.ms));
        if (options.fail) throw new Error('work failed');
        return body;
      },
      capture: (value) => new CachedResponse({ statusCode: 201, body: value }),
    };
    return { spec, counter };
  }

  async function settle<T>(promise: Promise<T>): Promise<T> {
    let done = false;
    void promise.then(
      () => (done = true),
      () => (done = true),
    );
    for (let t = 0; !done && t < 120_000; t += 50) await jest.advanceTimersByTimeAsync(50);
    return promise;
  }

  it('committed: the write and the stored result together; a retry replays it', async () => {
    const req = request();
    const outcome = await settle(runClaimed(req, await claimed(req), work('charge-1', 'paid').spec));
    expect(outcome).toMatchObject({ kind: 'executed', value: 'paid' });
    expect(store.rows).toEqual(['charge-1']);
    const replay = await claimKey(req);
    expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('paid');
    expect(store.open).toBe(0);
  });

  it('the work throws: rolled back, the key released; a retry runs cleanly', async () => {
    const req = request();
    const failing = work('charge-1', 'paid', { fail: true });
    const outcome = await settle(runClaimed(req, await claimed(req), failing.spec));
    expect(outcome).toMatchObject({ kind: 'released' });
    expect(store.rows).toEqual([]);
    expect((await claimKey(req)).kind).toBe('claimed');
    expect(store.open).toBe(0);
  });

  it('the claim was taken over while the work ran: rolled back, the answer is what the key holds', async () => {
    const req = request();
    const claim = await claimed(req);
    const slow = work('stale', 'late', { ms: 3 * LEASE });
    // No renewals reach the store: the lease runs out and another request claims the key.
    jest.spyOn(store, 'touch').mockResolvedValue(FencedOutcome.KeyExpired);
    const running = runClaimed(req, claim, slow.spec);
    await jest.advanceTimersByTimeAsync(LEASE + 10);
    jest.restoreAllMocks();
    const taker = await claimed({ ...req, leaseMs: TTL }); // still running when the stale one ends
    const outcome = await settle(running);
    expect(outcome).toEqual({ kind: 'in-flight' });
    expect(store.rows).toEqual([]);
    expect(taker.fencingToken.isNewerThan(claim.fencingToken)).toBe(true);
  });

  it('the lease ran out with nobody on the key: rolled back, the key free, a retry runs cleanly', async () => {
    const req = request();
    const claim = await claimed(req);
    jest.spyOn(store, 'touch').mockResolvedValue(FencedOutcome.KeyExpired);
    const outcome = await settle(runClaimed(req, claim, work('late', 'late', { ms: 3 * LEASE }).spec));
    jest.restoreAllMocks();
    expect(outcome.kind).toBe('rolled-back');
    expect(store.rows).toEqual([]);
    expect((await claimKey(req)).kind).toBe('claimed');
  });

  it('COMMIT failed and the store could tell nothing was written: rolled back, the key released', async () => {
    const req = request();
    store.nextCommit = 'rolled-back';
    const outcome = await settle(runClaimed(req, await claimed(req), work('charge-1', 'paid').spec));
    expect(outcome.kind).toBe('rolled-back');
    expect(store.rows).toEqual([]);
    expect((await claimKey(req)).kind).toBe('claimed');
  });

  it('the commit outcome unknown, and it committed: answered from the key (the replay), never a second run', async () => {
    const req = request();
    store.nextCommit = 'lost-after-commit';
    const w = work('charge-1', 'paid');
    const outcome = await settle(runClaimed(req, await claimed(req), w.spec));
    expect(outcome.kind === 'replayed' && bodyOf(outcome.response)).toBe('paid');
    expect(store.rows).toEqual(['charge-1']);
    expect(w.counter.runs).toBe(1);
  });

  it('the commit outcome unknown, and nothing committed: 503 (deferred) and the key stays held until its lease ends', async () => {
    const req = request();
    store.nextCommit = 'lost-before-commit';
    const w = work('charge-1', 'paid');
    const outcome = await settle(runClaimed(req, await claimed(req), w.spec));
    expect(outcome.kind).toBe('deferred');
    expect(store.rows).toEqual([]);
    expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
    await jest.advanceTimersByTimeAsync(LEASE + 10);
    expect((await claimKey(req)).kind).toBe('claimed');
  });

  it('no transaction could be opened: nothing runs, the key is released, and the error never lets it run unguarded', async () => {
    const req = request();
    store.failBegin = true;
    const w = work('charge-1', 'paid');
    const error = await settle(runClaimed(req, await claimed(req), w.spec)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyStoreError);
    expect(failedAfterInFlight(error)).toBe(true);
    expect(w.counter.runs).toBe(0);
    expect((await claimKey(req)).kind).toBe('claimed');
  });
});
