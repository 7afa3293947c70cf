/**
 * The claim engine, outcome by outcome, on a real MemoryStore behind a fault injector, with a fake
 * clock (Jest's modern fake timers drive Date.now, the lease heartbeat and every back-off).
 */
import { FencedOutcome } from './fenced-outcome';
import { CachedResponse } from './cached-response';
import {
  type Claimed,
  type ClaimDecision,
  type ClaimRequest,
  claimKey,
  claimKeyNow,
  type ClaimedWork,
  type EngineEvent,
  failedAfterInFlight,
  runClaimed,
  type RunOutcome,
  runClaimedNow,
  settleDeferredCompletions,
} from './claim-engine';
import { StoreDurabilityError, StoreFullError, StoreTimeoutError } from './errors';
import { DefaultFingerprintStrategy } from './fingerprint-strategy';
import { IdempotencyEntry } from './idempotency-entry';
import { IdempotencyKey } from './idempotency-key';
import type { InsertResult } from './insert-result';
import { LeaseLostError } from './lease';
import { MemoryStore } from '../stores/memory.store';
import { FaultyStore } from '../testing/faulty-store';

const strategy = new DefaultFingerprintStrategy();
const FP = strategy.compute('POST /charges', '{"amount":1}');
const OTHER_FP = strategy.compute('POST /charges', '{"amount":2}');
const LEASE = 1_000;
const TTL = 60_000;

const response = (body: string, statusCode = 201) => new CachedResponse({ statusCode, body });
const bodyOf = (r: CachedResponse) => Buffer.from(r.body).toString();
type RunOutcomeOf = RunOutcome<string>;

describe('claim engine', () => {
  let inner: MemoryStore;
  let store: FaultyStore;
  let events: EngineEvent[];

  beforeEach(() => {
    jest.useFakeTimers({ now: 1_000_000 });
    inner = new MemoryStore();
    store = new FaultyStore(inner);
    events = [];
  });

  afterEach(async () => {
    // Background completions still holding a result (e.g. behind a taker that never ends) are
    // abandoned; the clock is fake, so it is moved past the (zero) wait for them.
    const settled = settleDeferredCompletions(0, () => true);
    await jest.advanceTimersByTimeAsync(1);
    await settled;
    jest.useRealTimers();
    await inner.close();
  });

  const request = (fingerprint = FP, key = new IdempotencyKey('k')): ClaimRequest => ({
    store,
    key,
    fingerprint,
    leaseMs: LEASE,
    ttlMs: TTL,
  });

  async function claimed(req: ClaimRequest): Promise<Claimed> {
    const decision = await claimKey(req);
    if (decision.kind !== 'claimed') throw new Error(`expected a claim, got ${decision.kind}`);
    return decision;
  }

  /** Work answering `body` after `ms` of (fake) time; `runs` counts executions. */
  function work(body: string, ms = 0, extra: Partial<ClaimedWork<string>> = {}) {
    const counter = { runs: 0 };
    const spec: ClaimedWork<string> = {
      run: async () => {
        counter.runs++;
        if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
        return body;
      },
      capture: (value) => response(value),
      notify: (event) => events.push(event),
      ...extra,
    };
    return { spec, counter };
  }

  /** Runs `promise` to its end while advancing the fake clock. */
  async function settle<T>(promise: Promise<T>, stepMs = 50, maxMs = 120_000): Promise<T> {
    let done = false;
    let result: T | undefined;
    let failure: unknown;
    promise.then(
      (value) => {
        done = true;
        result = value;
      },
      (error: unknown) => {
        done = true;
        failure = error;
      },
    );
    for (let t = 0; !done && t <= maxMs; t += stepMs) await jest.advanceTimersByTimeAsync(stepMs);
    if (!done) throw new Error('the promise did not settle');
    if (failure !== undefined) throw failure;
    return result as T;
  }

  describe('claimKey', () => {
    it('claims a free key', async () => {
      const decision = await claimKey(request());
      expect(decision.kind).toBe('claimed');
    });

    it('answers in-flight, replayed or fingerprint-mismatch for a key that exists', async () => {
      const req = request();
      const first = await claimed(req);
      expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
      expect(await claimKey(request(OTHER_FP))).toEqual({ kind: 'fingerprint-mismatch' });
      await inner.complete(req.key, first.entry.complete(response('done')), first.fencingToken, TTL);
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('done');
      expect(await claimKey(request(OTHER_FP))).toEqual({ kind: 'fingerprint-mismatch' });
    });

    it('a refused claim on a key that exists answers with what the key holds (read instead)', async () => {
      const req = request();
      await claimed(req);
      store.failNext('tryInsert', new Error('OOM command not allowed when used memory > maxmemory'));
      expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
      expect(store.calls.get).toBe(1);
    });

    it('a refused claim on a free key throws the store error', async () => {
      const error = new Error('refused');
      store.failNext('tryInsert', error);
      await expect(claimKey(request())).rejects.toBe(error);
    });

    it('a claim the store made but could not make durable throws, even while that claim is still on the key', async () => {
      // The claim landed and the store could not remove it: reading the key would find it and
      // answer in-flight (409). The caller must hear the store failed (503).
      const req = request();
      await inner.tryInsert(req.key, new IdempotencyEntry(FP, LEASE));
      const error = new StoreDurabilityError('claim', { asked: 1, acked: 0 });
      store.failNext('tryInsert', error);
      await expect(claimKey(req)).rejects.toBe(error);
      expect(store.calls.get).toBe(0);
    });

    it('a claim that timed out throws at once, without a second command', async () => {
      store.failNext('tryInsert', new StoreTimeoutError('valkey claim', 1000));
      await expect(claimKey(request())).rejects.toBeInstanceOf(StoreTimeoutError);
      expect(store.calls.get).toBe(0);
    });
  });

  describe('runClaimed', () => {
    it('executed: the work runs once and its response is stored under the claim', async () => {
      const req = request();
      const claim = await claimed(req);
      const { spec, counter } = work('ok');
      const outcome = await settle(runClaimed(req, claim, spec));
      expect(outcome).toMatchObject({ kind: 'executed', value: 'ok', fencingToken: claim.fencingToken });
      expect(counter.runs).toBe(1);
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('ok');
      expect(events).toEqual([]);
    });

    it('the lease is renewed while the work runs past it: duplicates stay in flight', async () => {
      const req = request();
      const claim = await claimed(req);
      const { spec } = work('slow', 3 * LEASE);
      const running = runClaimed(req, claim, spec);
      await jest.advanceTimersByTimeAsync(2 * LEASE);
      expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
      expect((await settle(running)).kind).toBe('executed');
      expect(store.calls.touch).toBeGreaterThanOrEqual(6);
    });

    it('released: the work throws, the key is freed and the error handed back', async () => {
      const req = request();
      const claim = await claimed(req);
      const error = new Error('boom');
      const outcome = await settle(runClaimed(req, claim, work('x', 0, { run: () => Promise.reject(error) }).spec));
      expect(outcome).toEqual({ kind: 'released', error });
      expect(await inner.get(req.key)).toBeUndefined();
    });

    it('released, and the release failing is reported (the key frees when its lease ends)', async () => {
      const req = request();
      const claim = await claimed(req);
      store.failNext('remove');
      const outcome = await settle(
        runClaimed(req, claim, work('x', 0, { run: () => Promise.reject(new Error('boom')) }).spec),
      );
      expect(outcome.kind).toBe('released');
      expect(events.map((e) => e.type)).toEqual(['release-failed']);
      expect((await inner.get(req.key))?.isProcessing()).toBe(true);
    });

    it('error-stored: cacheError turns the error into a response that is stored and replayed', async () => {
      const req = request();
      const claim = await claimed(req);
      const error = new Error('declined');
      const outcome = await settle(
        runClaimed(
          req,
          claim,
          work('x', 0, { run: () => Promise.reject(error), cacheError: () => response('declined', 402) }).spec,
        ),
      );
      expect(outcome).toMatchObject({ kind: 'error-stored', error, fencingToken: claim.fencingToken });
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && replay.response.statusCode).toBe(402);
    });

    it('a cacheError that throws releases the key', async () => {
      const req = request();
      const claim = await claimed(req);
      const spec = work('x', 0, {
        run: () => Promise.reject(new Error('boom')),
        cacheError: () => {
          throw new Error('predicate failed');
        },
      }).spec;
      expect((await settle(runClaimed(req, claim, spec))).kind).toBe('released');
      expect(await inner.get(req.key)).toBeUndefined();
    });

    it('a value capture refuses: released without unstorable, a stored stand-in with it', async () => {
      const a = request(FP, new IdempotencyKey('a'));
      const refuse = () => {
        throw new TypeError('not storable');
      };
      const released = await settle(runClaimed(a, await claimed(a), work('x', 0, { capture: refuse }).spec));
      expect(released.kind).toBe('released');
      const b = request(FP, new IdempotencyKey('b'));
      const kept = await settle(
        runClaimed(
          b,
          await claimed(b),
          work('x', 0, { capture: refuse, unstorable: () => response('kept', 500) }).spec,
        ),
      );
      expect(kept).toMatchObject({ kind: 'executed', unstorable: expect.any(TypeError) });
      const replay = await claimKey(b);
      expect(replay.kind === 'replayed' && replay.response.statusCode).toBe(500);
    });

    it('a completion that fails for a while is retried with the same token', async () => {
      const req = request();
      const claim = await claimed(req);
      store.failNext('complete', undefined, 3);
      const outcome = await settle(runClaimed(req, claim, work('ok').spec));
      expect(outcome).toMatchObject({ kind: 'executed', fencingToken: claim.fencingToken });
      expect(store.calls.complete).toBe(4);
    });

    it('a completion lost in flight (applied, reply lost) is re-sent and answers applied', async () => {
      const req = request();
      const claim = await claimed(req);
      store.loseReplyNext('complete');
      const outcome = await settle(runClaimed(req, claim, work('ok').spec));
      expect(outcome.kind).toBe('executed');
      expect(store.calls.complete).toBe(2);
    });

    it('deferred: a store that refuses the completion past the lease holds the key for the replay window and stores it in the background', async () => {
      const req = request();
      const claim = await claimed(req);
      store.failNext('complete', undefined, Number.POSITIVE_INFINITY);
      const outcome = await settle(runClaimed(req, claim, work('late').spec));
      expect(outcome.kind).toBe('deferred');
      // Held far past the lease: a retry is in flight, never a second run.
      await jest.advanceTimersByTimeAsync(10 * LEASE);
      expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
      store.heal('complete');
      await jest.advanceTimersByTimeAsync(40_000);
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('late');
      expect(events.map((e) => e.type)).toEqual(['completion-deferred', 'completion-recovered']);
    });

    it('deferred after completions that were applied but threw (e.g. not acknowledged by replicas): the background retry sends the same completion again until it is confirmed', async () => {
      const req = request();
      const claim = await claimed(req);
      store.loseReplyNext('complete', Number.POSITIVE_INFINITY);
      const runs = work('stored, unconfirmed');
      const outcome = await settle(runClaimed(req, claim, runs.spec));
      expect(outcome.kind).toBe('deferred');
      // The completion is there already: the lease cannot be renewed on it (touch: KeyExpired),
      // and the background retry must not mistake it for another request's and give up.
      await jest.advanceTimersByTimeAsync(5_000);
      expect(events.map((e) => e.type)).toEqual(['completion-deferred']);
      store.heal('complete');
      await jest.advanceTimersByTimeAsync(40_000);
      expect(events.map((e) => e.type)).toEqual(['completion-deferred', 'completion-recovered']);
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('stored, unconfirmed');
      expect(runs.counter.runs).toBe(1);
    });

    it('deferred with the entry gone (e.g. expired) and completions refused: the background retry claims the key again at once, so it stays held', async () => {
      const req = request();
      const claim = await claimed(req);
      store.failNext('complete', undefined, Number.POSITIVE_INFINITY);
      const runs = work('late', 0, {
        run: async () => {
          runs.counter.runs++;
          await inner.purge(req.key); // the entry vanishes, as when it expires
          return 'late';
        },
      });
      expect((await settle(runClaimed(req, claim, runs.spec))).kind).toBe('deferred');
      await jest.advanceTimersByTimeAsync(100);
      expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
      store.heal('complete');
      await jest.advanceTimersByTimeAsync(40_000);
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('late');
      expect(runs.counter.runs).toBe(1);
    });

    it('deferred, then abandoned at shutdown: the key stays held', async () => {
      const req = request();
      const claim = await claimed(req);
      store.failNext('complete', undefined, Number.POSITIVE_INFINITY);
      expect((await settle(runClaimed(req, claim, work('late').spec))).kind).toBe('deferred');
      const abandoned = settleDeferredCompletions(2_000, (s) => s === store);
      await jest.advanceTimersByTimeAsync(2_000);
      expect(await abandoned).toBe(1);
      await jest.advanceTimersByTimeAsync(30_000); // well inside the replay window (60 s)
      expect(events.map((e) => e.type)).toEqual(['completion-deferred', 'completion-abandoned']);
      expect((await inner.get(req.key))?.isProcessing()).toBe(true);
    });

    describe('a pause between the claim and the work (issue 17, defect 7)', () => {
      it('a claim that lost a third of its lease is renewed before the work starts', async () => {
        const req = request();
        const claim = await claimed(req);
        await jest.advanceTimersByTimeAsync(LEASE / 2);
        const touches = store.calls.touch;
        const runs = work('after a pause');
        const outcome = await settle(runClaimed(req, claim, runs.spec));
        expect(outcome).toMatchObject({ kind: 'executed', value: 'after a pause' });
        expect(store.calls.touch).toBe(touches + 1);
        expect(runs.counter.runs).toBe(1);
      });

      it('the lease passed and another claim took the key: the work never starts; the answer is in-flight', async () => {
        const req = request();
        const claim = await claimed(req);
        await jest.advanceTimersByTimeAsync(LEASE + 1);
        const taker = await claimed(req); // the store let the key go: another request claims it
        const runs = work('stale');
        const outcome = await settle(runClaimed(req, claim, runs.spec));
        expect(outcome).toEqual({ kind: 'in-flight' });
        expect(runs.counter.runs).toBe(0);
        expect((await inner.get(req.key))?.isProcessing()).toBe(true);
        expect(taker.fencingToken.isNewerThan(claim.fencingToken)).toBe(true);
      });

      it('the lease passed with nobody on the key: the key is claimed again and the work runs once under the new claim', async () => {
        const req = request();
        const claim = await claimed(req);
        await jest.advanceTimersByTimeAsync(LEASE + 1);
        const runs = work('reclaimed');
        const outcome = await settle(runClaimed(req, claim, runs.spec));
        expect(outcome).toMatchObject({ kind: 'executed', value: 'reclaimed' });
        if (outcome.kind !== 'executed') throw new Error('unreachable');
        expect(outcome.fencingToken.isNewerThan(claim.fencingToken)).toBe(true);
        expect(runs.counter.runs).toBe(1);
      });

      it('the store cannot be reached to renew it: the work never starts, and the error never lets it run unguarded', async () => {
        const req = request();
        const claim = await claimed(req);
        await jest.advanceTimersByTimeAsync(LEASE / 2);
        store.failNext('touch');
        const runs = work('never');
        const error = await settle(runClaimed(req, claim, runs.spec)).catch((e: unknown) => e);
        expect(failedAfterInFlight(error)).toBe(true);
        expect(runs.counter.runs).toBe(0);
      });
    });

    it('a result held unstored past its lease: a claim of its key in this process stores it first, never runs the work again (issue 17, defect 3)', async () => {
      const req = request();
      const claim = await claimed(req);
      // The store goes away right after the work ends, for longer than the lease.
      const down = Number.POSITIVE_INFINITY;
      const runs = work('held', 0, {
        run: async () => {
          runs.counter.runs++;
          for (const op of ['complete', 'touch', 'tryInsert', 'get'] as const) store.failNext(op, undefined, down);
          return 'held';
        },
      });
      expect((await settle(runClaimed(req, claim, runs.spec))).kind).toBe('deferred');
      await jest.advanceTimersByTimeAsync(3 * LEASE); // the run's claim has expired in the store
      expect(await inner.get(req.key)).toBeUndefined();
      // The store answers again; the background completion is asleep in its back-off. A claim
      // of the key now must not take the expired key and run the work a second time.
      store.heal();
      const decision = await claimKey(req);
      expect(decision.kind === 'replayed' && bodyOf(decision.response)).toBe('held');
      expect(runs.counter.runs).toBe(1);
      // A different request under the key is refused, as the store will refuse it.
      expect(await claimKey(request(OTHER_FP))).toEqual({ kind: 'fingerprint-mismatch' });
    });

    it('a result whose key another claim of the same request holds (one that timed out, released when it lands): held, and stored once that claim goes; never run again', async () => {
      const req = request();
      const claim = await claimed(req);
      let phantom: Claimed | undefined;
      const runs = work('mine', 0, {
        run: async () => {
          runs.counter.runs++;
          // The run's claim expires, and a claim of the same request lands meanwhile.
          await inner.purge(req.key);
          phantom = await claimed(req);
          return 'mine';
        },
      });
      const outcome = await settle(runClaimed(req, claim, runs.spec));
      expect(outcome).toEqual({ kind: 'in-flight' });
      // This process holds the result: its claims of the key are in flight, never a second run.
      expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
      await inner.remove(req.key, phantom!.fencingToken); // the late claim is released
      await jest.advanceTimersByTimeAsync(40_000);
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('mine');
      expect(runs.counter.runs).toBe(1);
    });

    it('a result held unstored: while the store still refuses it, claims of its key in this process answer in-flight', async () => {
      const req = request();
      const claim = await claimed(req);
      const runs = work('held', 0, {
        run: async () => {
          runs.counter.runs++;
          for (const op of ['complete', 'touch', 'tryInsert', 'get'] as const) store.failNext(op, undefined, Infinity);
          return 'held';
        },
      });
      expect((await settle(runClaimed(req, claim, runs.spec))).kind).toBe('deferred');
      await jest.advanceTimersByTimeAsync(3 * LEASE);
      expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
      expect(runs.counter.runs).toBe(1);
      // Once the store takes it, the result is stored and replayed.
      store.heal();
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('held');
      expect(runs.counter.runs).toBe(1);
    });

    it('key-expired: the lease ran out with nobody on the key; the result is stored under a new claim', async () => {
      const req = request();
      const claim = await claimed(req);
      store.failNext('touch', undefined, Number.POSITIVE_INFINITY); // no renewals: the lease runs out
      const outcome = await settle(runClaimed(req, claim, work('late', 2 * LEASE).spec));
      expect(outcome).toMatchObject({ kind: 'executed', value: 'late' });
      if (outcome.kind !== 'executed') throw new Error('unreachable');
      expect(outcome.fencingToken.isNewerThan(claim.fencingToken)).toBe(true);
      expect(events.map((e) => e.type)).toEqual(['lease-lost', 'key-expired']);
      const replay = await claimKey(req);
      expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('late');
    });

    it('the lease lost aborts the signal with a LeaseLostError', async () => {
      const req = request();
      const claim = await claimed(req);
      let signal: AbortSignal | undefined;
      store.failNext('touch', undefined, Number.POSITIVE_INFINITY);
      const spec = work('x', 0, {
        run: async (lease) => {
          signal = lease.signal;
          await new Promise((resolve) => setTimeout(resolve, 2 * LEASE));
          return 'x';
        },
      }).spec;
      await settle(runClaimed(req, claim, spec));
      expect(signal?.aborted).toBe(true);
      expect(signal?.reason).toBeInstanceOf(LeaseLostError);
    });

    describe('taken over while the work ran (stale completion)', () => {
      async function takeOver(fingerprint: typeof FP, finish?: 'complete' | 'release') {
        const req = request();
        const claim = await claimed(req);
        store.failNext('touch', undefined, Number.POSITIVE_INFINITY);
        const running = runClaimed(req, claim, work('stale', 3 * LEASE).spec);
        await jest.advanceTimersByTimeAsync(LEASE + 100);
        store.heal('touch');
        const taker = await claimKey({ ...req, fingerprint });
        if (taker.kind !== 'claimed') throw new Error(`expected the taker to claim, got ${taker.kind}`);
        if (finish === 'complete') {
          await inner.complete(req.key, taker.entry.complete(response('taker')), taker.fencingToken, TTL);
        } else if (finish === 'release') {
          await inner.remove(req.key, taker.fencingToken);
        } else {
          // Still running: keep its lease alive past the stale holder's end.
          await inner.touch(req.key, taker.fencingToken, TTL);
        }
        return settle(running);
      }

      it("the taker completed: the stale holder answers with the taker's response", async () => {
        const outcome = await takeOver(FP, 'complete');
        expect(outcome.kind === 'replayed' && bodyOf(outcome.response)).toBe('taker');
        expect(events.map((e) => e.type)).toEqual(['lease-lost', 'stale-completion']);
      });

      it('the taker still runs: in-flight', async () => {
        expect(await takeOver(FP)).toEqual({ kind: 'in-flight' });
      });

      it('a different request took the key: fingerprint-mismatch', async () => {
        expect(await takeOver(OTHER_FP, 'complete')).toEqual({ kind: 'fingerprint-mismatch' });
      });

      it("the stale holder's work throws: it answers with the taker's response, not its error", async () => {
        const req = request();
        const claim = await claimed(req);
        store.failNext('touch', undefined, Number.POSITIVE_INFINITY);
        const spec = work('x', 0, {
          run: async () => {
            await new Promise((resolve) => setTimeout(resolve, 3 * LEASE));
            throw new Error('stale failure');
          },
        }).spec;
        const running = runClaimed(req, claim, spec);
        await jest.advanceTimersByTimeAsync(LEASE + 100);
        store.heal('touch');
        const taker = await claimKey(req);
        if (taker.kind !== 'claimed') throw new Error('expected the taker to claim');
        await inner.complete(req.key, taker.entry.complete(response('taker')), taker.fencingToken, TTL);
        const outcome = await settle(running);
        expect(outcome.kind === 'replayed' && bodyOf(outcome.response)).toBe('taker');
      });

      it('the taker released the key again: the stale result is stored under a new claim', async () => {
        const outcome = await takeOver(FP, 'release');
        expect(outcome).toMatchObject({ kind: 'executed', value: 'stale' });
        const replay = await claimKey(request());
        expect(replay.kind === 'replayed' && bodyOf(replay.response)).toBe('stale');
      });
    });

    it('never completes with a processing entry of another claim (typestate): one completed entry per claim', async () => {
      const req = request();
      const claim = await claimed(req);
      await settle(runClaimed(req, claim, work('ok').spec));
      expect(() => claim.entry.complete(response('again'))).toThrow(/already been completed/);
      expect(
        await inner.complete(req.key, new IdempotencyEntry(FP, LEASE).complete(response('x')), claim.fencingToken, TTL),
      ).toBe(FencedOutcome.Applied);
    });
  });

  /*
   * On the in-process store (which answers at once), without the fault injector in front: claims,
   * and work that answers at once, are decided without a promise; everything else as above.
   */
  describe('answered at once', () => {
    const direct = (fingerprint = FP, key = new IdempotencyKey('k')): ClaimRequest => ({
      store: inner,
      key,
      fingerprint,
      leaseMs: LEASE,
      ttlMs: TTL,
    });
    const syncWork = (body: string): ClaimedWork<string> => ({
      run: () => body,
      capture: (value) => response(value),
      notify: (event) => events.push(event),
    });

    it('claims, and answers in-flight, replayed or fingerprint-mismatch, without a promise', () => {
      const req = direct();
      const first = claimKeyNow(req);
      if (first instanceof Promise || first.kind !== 'claimed') throw new Error('expected a claim at once');
      expect(claimKeyNow(req)).toEqual({ kind: 'in-flight' });
      expect(claimKeyNow(direct(OTHER_FP))).toEqual({ kind: 'fingerprint-mismatch' });
      const outcome = runClaimedNow(req, first, syncWork('done'));
      expect(outcome).toMatchObject({ kind: 'executed', value: 'done', fencingToken: first.fencingToken });
      const replay = claimKeyNow(req);
      expect(!(replay instanceof Promise) && replay.kind === 'replayed' && bodyOf(replay.response)).toBe('done');
      expect(events).toEqual([]);
    });

    it('work that answers later, or throws, is awaited as usual', async () => {
      const req = direct();
      const claim = claimKeyNow(req) as Claimed;
      const later = runClaimedNow(req, claim, work('later', 10).spec);
      expect(later).toBeInstanceOf(Promise);
      expect(await settle(later as Promise<unknown>)).toMatchObject({ kind: 'executed', value: 'later' });

      const other = direct(FP, new IdempotencyKey('thrown'));
      const error = new Error('boom');
      const thrown = runClaimedNow(other, claimKeyNow(other) as Claimed, {
        ...syncWork('x'),
        run: () => {
          throw error;
        },
      });
      expect(await settle(Promise.resolve(thrown))).toEqual({ kind: 'released', error });
      expect((claimKeyNow(other) as InsertResult).kind).toBe('claimed');
    });

    it('a store whose tryInsert or complete is overridden is awaited, so its own code runs', async () => {
      const seen: string[] = [];
      class Counting extends MemoryStore {
        override tryInsert(...args: Parameters<MemoryStore['tryInsert']>) {
          seen.push('tryInsert');
          return super.tryInsert(...args);
        }
      }
      const counting = new Counting();
      const req = { ...direct(), store: counting };
      const decision = claimKeyNow(req);
      expect(decision).toBeInstanceOf(Promise);
      expect((await decision).kind).toBe('claimed');
      expect(seen).toEqual(['tryInsert']);

      // An instance whose method is replaced (as a test double would) is awaited too.
      const patched = new MemoryStore();
      patched.complete = async () => FencedOutcome.KeyExpired;
      const preq = { ...direct(), store: patched };
      const claim = await claimKeyNow(preq);
      expect(claim.kind).toBe('claimed');
      const outcome = runClaimedNow(preq, claim as Claimed, syncWork('x'));
      expect(outcome).toBeInstanceOf(Promise);
      await settle(outcome as Promise<unknown>);
      await counting.close();
      await patched.close();
    });

    it('a wrapped store (fault injector, a subclass overriding complete only, telemetry on) is awaited', async () => {
      // The fault injector in front: every operation is the wrapper's.
      const viaWrapper = claimKeyNow({ ...direct(), key: new IdempotencyKey('w') });
      expect(viaWrapper).not.toBeInstanceOf(Promise);
      expect(claimKeyNow(request(FP, new IdempotencyKey('w2')))).toBeInstanceOf(Promise);

      const seen: string[] = [];
      class Completing extends MemoryStore {
        override complete(...args: Parameters<MemoryStore['complete']>) {
          seen.push('complete');
          return super.complete(...args);
        }
      }
      const completing = new Completing();
      const req = { ...direct(), store: completing };
      const claim = await claimKeyNow(req);
      const outcome = runClaimedNow(req, claim as Claimed, syncWork('x'));
      expect(outcome).toBeInstanceOf(Promise);
      expect((await settle(outcome as Promise<RunOutcomeOf>)).kind).toBe('executed');
      expect(seen).toEqual(['complete']);
      await completing.close();
    });

    it('sync work starts no lease timer; work that goes on keeps its lease alive, and stops it', async () => {
      const req = direct();
      const timers = jest.getTimerCount();
      const claim = claimKeyNow(req) as Claimed;
      runClaimedNow(req, claim, syncWork('x'));
      expect(jest.getTimerCount()).toBe(timers);

      const other = direct(FP, new IdempotencyKey('later'));
      let finish: (value: string) => void = () => undefined;
      const running = runClaimedNow(other, claimKeyNow(other) as Claimed, {
        ...syncWork('x'),
        run: () => new Promise<string>((resolve) => (finish = resolve)),
      }) as Promise<RunOutcomeOf>;
      expect(jest.getTimerCount()).toBe(timers + 1);
      // The heartbeat renews the lease past its first end.
      await jest.advanceTimersByTimeAsync(3 * LEASE);
      expect(claimKeyNow(other)).toEqual({ kind: 'in-flight' });
      finish('done');
      expect((await running).kind).toBe('executed');
      expect(jest.getTimerCount()).toBe(timers);
    });

    /*
     * Each case once on the store itself (answered at once) and once behind a wrapper that only
     * passes calls on (awaited): the same outcome, events, stored answer and runs.
     */
    describe('the same answers as awaited', () => {
      interface Case {
        /** What happens between the claim and the work. */
        before?(store: MemoryStore, req: ClaimRequest): Promise<void>;
        /** What the work does (at once); `store` is the memory store itself. */
        run(store: MemoryStore, req: ClaimRequest): string;
        capture?(value: string): CachedResponse;
        unstorable?(value: string, error: unknown): CachedResponse;
        cacheError?(error: unknown): CachedResponse | undefined;
        ttlMs?: number;
        expected: { outcome: string; events: string[]; after: string };
      }
      const boom = new Error('boom');
      const throwing = (): string => {
        throw boom;
      };
      const cases: Record<string, Case> = {
        'a value': {
          run: () => 'v',
          expected: { outcome: 'executed v 201', events: [], after: 'replayed v 201' },
        },
        'a throw': {
          run: throwing,
          expected: { outcome: 'released boom', events: [], after: 'claimed' },
        },
        'a throw that is cached': {
          run: throwing,
          cacheError: (error) => response(`cached ${(error as Error).message}`, 500),
          expected: { outcome: 'error-stored boom 500', events: [], after: 'replayed cached boom 500' },
        },
        'a throw whose cacheError throws': {
          run: throwing,
          cacheError: () => {
            throw new Error('renderer');
          },
          expected: { outcome: 'released boom', events: [], after: 'claimed' },
        },
        'an unstorable value': {
          run: () => 'v',
          capture: () => {
            throw new Error('unstorable');
          },
          unstorable: (value, error) => response(`stand-in for ${value}: ${(error as Error).message}`, 500),
          expected: { outcome: 'executed v 500', events: [], after: 'replayed stand-in for v: unstorable 500' },
        },
        'an unstorable value without a stand-in': {
          run: () => 'v',
          capture: () => {
            throw boom;
          },
          expected: { outcome: 'released boom', events: [], after: 'claimed' },
        },
        'the key vanished meanwhile': {
          run: (store, req) => {
            void store.purge(req.key);
            return 'late';
          },
          expected: { outcome: 'executed late 201', events: ['key-expired'], after: 'replayed late 201' },
        },
        'another request took the key meanwhile': {
          run: (store, req) => {
            void store.purge(req.key);
            void store.tryInsert(req.key, new IdempotencyEntry(OTHER_FP, LEASE));
            return 'stale';
          },
          expected: { outcome: 'fingerprint-mismatch', events: ['stale-completion'], after: 'fingerprint-mismatch' },
        },
        'a taker completed before the work ended': {
          before: async (store, req) => {
            await store.purge(req.key);
            const taker = await store.tryInsert(req.key, new IdempotencyEntry(FP, LEASE));
            if (taker.kind !== 'claimed') throw new Error('expected the taker to claim');
            await store.complete(req.key, taker.entry.complete(response('taker')), taker.fencingToken, TTL);
          },
          run: () => 'stale',
          expected: { outcome: 'replayed taker 201', events: ['stale-completion'], after: 'replayed taker 201' },
        },
        'the store refuses the completion': {
          run: () => 'v',
          ttlMs: -1,
          expected: {
            outcome: 'deferred',
            events: ['completion-deferred', 'completion-abandoned'],
            after: 'in-flight',
          },
        },
      };

      const describeDecision = (d: ClaimDecision): string =>
        d.kind === 'replayed' ? `replayed ${bodyOf(d.response)} ${d.response.statusCode}` : d.kind;
      const describeOutcome = (o: RunOutcomeOf): string => {
        switch (o.kind) {
          case 'executed':
            return `executed ${o.value} ${o.response.statusCode}`;
          case 'error-stored':
            return `error-stored ${(o.error as Error).message} ${o.response.statusCode}`;
          case 'released':
            return `released ${(o.error as Error).message}`;
          case 'deferred':
            return 'deferred';
          case 'rolled-back':
            return 'rolled-back';
          default:
            return describeDecision(o);
        }
      };

      async function play(c: Case, awaited: boolean) {
        const memory = new MemoryStore();
        const seen: EngineEvent[] = [];
        const req: ClaimRequest = {
          store: awaited ? new FaultyStore(memory) : memory,
          key: new IdempotencyKey('k'),
          fingerprint: FP,
          leaseMs: LEASE,
          ttlMs: c.ttlMs ?? TTL,
        };
        const decision = claimKeyNow(req);
        expect(decision instanceof Promise).toBe(awaited);
        const claim = (await decision) as Claimed;
        await c.before?.(memory, req);
        let runs = 0;
        const spec: ClaimedWork<string> = {
          run: () => {
            runs++;
            return c.run(memory, req);
          },
          capture: c.capture ?? ((value) => response(value)),
          notify: (event) => seen.push(event),
        };
        if (c.unstorable) spec.unstorable = c.unstorable;
        if (c.cacheError) spec.cacheError = c.cacheError;
        const outcome = await settle(runClaimed(req, claim, spec));
        await settleDeferredCompletions(0, () => true);
        const after = describeDecision(await claimKey(req));
        await memory.close();
        return { outcome: describeOutcome(outcome), events: seen.map((e) => e.type), after, runs };
      }

      for (const [name, c] of Object.entries(cases)) {
        it(name, async () => {
          const now = await play(c, false);
          const awaited = await play(c, true);
          expect(now).toEqual({ ...c.expected, runs: 1 });
          expect(awaited).toEqual(now);
        });
      }

      it('a value answered at once needs no promise at all', () => {
        const memory = new MemoryStore();
        const req: ClaimRequest = {
          store: memory,
          key: new IdempotencyKey('k'),
          fingerprint: FP,
          leaseMs: LEASE,
          ttlMs: TTL,
        };
        const claim = claimKeyNow(req) as Claimed;
        const cached = runClaimedNow(req, claim, {
          run: throwing,
          capture: (value) => response(value),
          cacheError: () => response('cached', 500),
        });
        expect(cached).not.toBeInstanceOf(Promise);
        expect(describeOutcome(cached as RunOutcomeOf)).toBe('error-stored boom 500');
        void memory.close();
      });

      it('a claim the store refuses (full) reads the key instead, as awaited', async () => {
        for (const awaited of [false, true]) {
          const memory = new MemoryStore({ maxEntries: 1, onWarning: () => undefined });
          const store = awaited ? new FaultyStore(memory) : memory;
          const req: ClaimRequest = {
            store,
            key: new IdempotencyKey('k'),
            fingerprint: FP,
            leaseMs: LEASE,
            ttlMs: TTL,
          };
          expect((await claimKey(req)).kind).toBe('claimed');
          // The key held: read instead of refused (409), whether the store answered at once or not.
          expect(await claimKey(req)).toEqual({ kind: 'in-flight' });
          // Another key: the store's error.
          await expect(claimKey({ ...req, key: new IdempotencyKey('other') })).rejects.toBeInstanceOf(StoreFullError);
          // Bad request parts throw before any store is asked, in both.
          expect(() => claimKeyNow({ ...req, leaseMs: -1 })).toThrow(RangeError);
          await expect(claimKey({ ...req, leaseMs: -1 })).rejects.toThrow(RangeError);
          await memory.close();
        }
      });

      it('a waiter is woken by a completion answered at once, as by an awaited one', async () => {
        for (const awaited of [false, true]) {
          const memory = new MemoryStore();
          const store = awaited ? new FaultyStore(memory) : memory;
          const req: ClaimRequest = {
            store,
            key: new IdempotencyKey('k'),
            fingerprint: FP,
            leaseMs: LEASE,
            ttlMs: TTL,
          };
          const claim = (await claimKey(req)) as Claimed;
          const waiting = claimKey({ ...req, waitMs: 5_000 });
          await jest.advanceTimersByTimeAsync(10);
          const outcome = runClaimedNow(req, claim, { run: () => 'done', capture: (value) => response(value) });
          expect(outcome instanceof Promise).toBe(awaited);
          await outcome;
          await jest.advanceTimersByTimeAsync(10);
          const decision = await waiting;
          expect(describeDecision(decision)).toBe('replayed done 201');
          await memory.close();
        }
      });
    });
  });
});
