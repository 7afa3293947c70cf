import { CachedResponse } from './cached-response';
import {
  IdempotencyStoreError,
  SealedRecordError,
  StoreClosedError,
  StoreDurabilityError,
  StoreTimeoutError,
} from './errors';
import { FencedOutcome } from './fenced-outcome';
import { FencingToken } from './fencing-token';
import { Fingerprint } from './fingerprint';
import { AnyEntry, assertEntryParts, CompletedEntry, IdempotencyEntry } from './idempotency-entry';
import { IdempotencyKey } from './idempotency-key';
import { ClaimedResult, InsertResult } from './insert-result';
import { CompletionFailedError, Lease, LeaseLostError, type LeaseLostEvent, monotonicNow } from './lease';
import { immediateOperations, type StoreOperations } from './store-operations';
import { type StoreTransaction, type TransactionalStore, transactionalStoreIn } from './store-transaction';
import { holdUnstoredResult, type UnstoredResult, unstoredResultOf } from './unstored-results';

/*
 * The claim protocol, in one place. Every entry point (the HTTP route wrapper, `executeOrReplay`,
 * services, message handlers, resolvers) claims with `claimKey`, runs its work with `runClaimed`
 * and turns the outcome into its own kind of answer. The rules it keeps:
 *
 * - The work runs only under a claim; a key that exists answers with what it holds.
 * - A lease counts from when its claim (or renewal) was sent, by the monotonic clock; the work
 *   never starts on a claim that has lost a third of its lease (a process paused between claim and
 *   work): the claim is renewed first, or the key claimed again.
 * - Once the work has run, the key is never released and never runs again within `ttlMs`: its
 *   result is stored now, stored late (re-claimed after the lease ran out unclaimed), or kept
 *   trying in the background while the key is held (a store that refuses the completion).
 * - While this process holds a result its store has not taken, claims of that key in this process
 *   ask for it to be stored first, and answer in-flight until it is (`unstored-results.ts`).
 * - A holder whose lease was taken over answers with what the key holds now.
 * - The work throwing releases the key, unless `cacheError` turns the error into a response to
 *   store, which then follows the same rules as a value.
 */

/** One claim of one key: where, what and for how long. */
export interface ClaimRequest {
  readonly store: StoreOperations;
  /** The store key (already scoped to a principal, if any). */
  readonly key: IdempotencyKey;
  readonly fingerprint: Fingerprint;
  /** The processing lease, renewed while the work runs. */
  readonly leaseMs: number;
  /** How long the result is kept for replay. */
  readonly ttlMs: number;
  /**
   * How long a claim that finds the key in flight (same fingerprint) waits for it to end, in ms.
   * @default 0 (answer in-flight at once)
   */
  readonly waitMs?: number;
  /** Stops a wait early (the caller went away); asked for only when about to wait. */
  readonly waitSignal?: () => AbortSignal | undefined;
}

/**
 * The key is claimed: the work may run under `fencingToken`, whose lease started (by the monotonic
 * clock, `monotonicNow()`) at `leaseStart`, when the claim was sent.
 */
export interface Claimed extends ClaimedResult {
  readonly leaseStart: number;
}

/** The key is held by someone else, or done: what to tell the caller instead of running. */
export type ClaimRefusal =
  /** A stored response for the same request. */
  | { readonly kind: 'replayed'; readonly response: CachedResponse }
  /** Another claim holds the key and has not finished. */
  | { readonly kind: 'in-flight' }
  /** The key belongs to a different request. */
  | { readonly kind: 'fingerprint-mismatch' };

/** What `claimKey` decided. */
export type ClaimDecision = Claimed | ClaimRefusal;

/** Something that happened on the way, worth a log line or an event (never the final answer). */
export type EngineEvent =
  /** The lease could not be kept while the work ran; `signal` aborted. */
  | LeaseLostEvent
  /** The completion found the lease run out with nobody else on the key; it is stored late. */
  | { readonly type: 'key-expired'; readonly fencingToken: FencingToken }
  /** The completion was refused: another claim took the key over (fencing). */
  | { readonly type: 'stale-completion'; readonly fencingToken: FencingToken }
  /** The work threw and releasing the key failed; it frees when its lease ends. */
  | { readonly type: 'release-failed'; readonly fencingToken: FencingToken; readonly error: unknown }
  /** The result could not be stored in time; the key is held and the store retried in the background. */
  | { readonly type: 'completion-deferred'; readonly fencingToken: FencingToken; readonly error: unknown }
  /** A deferred result was stored. */
  | { readonly type: 'completion-recovered'; readonly fencingToken: FencingToken }
  /** A deferred result was given up: the key went to another request, the window passed, or shutdown. */
  | { readonly type: 'completion-abandoned'; readonly reason: string; readonly error?: unknown };

/** The work guarded by a claim, and how to turn its results into stored responses. */
export interface ClaimedWork<T> {
  /**
   * Runs the work. `lease.signal` aborts if the lease is lost meanwhile. With `transactional`,
   * `transaction` is open: what the work writes through its client commits with the result.
   */
  run(lease: Lease, transaction?: StoreTransaction): T | Promise<T>;
  /**
   * Runs the work in a transaction of the store (a `TransactionalStore`), in which its result is
   * stored too: the work's writes through the transaction and the stored result commit together,
   * or neither does.
   */
  readonly transactional?: boolean;
  /** The response to store for the work's value. Throwing makes the value unstorable. */
  capture(value: T): CachedResponse;
  /**
   * The response to store in place of a value `capture` refused (the work ran, so the key is kept
   * and a retry gets this). Without it, the refusal is handled like an error the work threw.
   */
  unstorable?(value: T, error: unknown): CachedResponse;
  /** The response to store for an error the work threw, or `undefined` to release the key. */
  cacheError?(error: unknown): CachedResponse | undefined;
  /** Receives the events on the way. */
  notify?(event: EngineEvent): void;
}

/** Who hears of the events on the way: the work. */
type Listener = Pick<ClaimedWork<unknown>, 'notify'>;

/** How `runClaimed` ended. */
export type RunOutcome<T> =
  /** The work ran and `response` is stored for the key (now, or late after the lease ran out). */
  | {
      readonly kind: 'executed';
      readonly value: T;
      readonly response: CachedResponse;
      readonly fencingToken: FencingToken;
      /** Why the value could not be stored, when `response` is `unstorable`'s stand-in. */
      readonly unstorable?: unknown;
    }
  /** The work threw, and the response `cacheError` made of it is stored for the key. */
  | {
      readonly kind: 'error-stored';
      readonly error: unknown;
      readonly response: CachedResponse;
      readonly fencingToken: FencingToken;
    }
  /** The work threw; the key is released, so a retry runs again. */
  | { readonly kind: 'released'; readonly error: unknown }
  /**
   * The work ran but its result is not stored yet: the key stays held and the store is retried in
   * the background until it takes the result (retries then replay it) or the replay window ends.
   */
  | { readonly kind: 'deferred'; readonly response: CachedResponse; readonly error: unknown }
  /**
   * The work ran in a transaction that was rolled back (its result could not be stored with it):
   * nothing of it persisted, the key is released, and a retry runs it cleanly.
   */
  | { readonly kind: 'rolled-back'; readonly error: unknown }
  /**
   * The lease was taken over while the work ran: what the key holds now (never this run's result
   * or error).
   */
  | ClaimRefusal;

const IN_FLIGHT: ClaimRefusal = Object.freeze({ kind: 'in-flight' });
const FINGERPRINT_MISMATCH: ClaimRefusal = Object.freeze({ kind: 'fingerprint-mismatch' });

/** What an entry that exists means to a request with `fingerprint`. */
export function refusalFor(entry: AnyEntry, fingerprint: Fingerprint): ClaimRefusal {
  if (!entry.fingerprintMatches(fingerprint)) return FINGERPRINT_MISMATCH;
  if (entry.isCompleted()) return { kind: 'replayed', response: entry.response };
  return IN_FLIGHT;
}

/** Errors thrown after the claim had seen its key in flight: they never let a request run unguarded. */
const seenInFlight = new WeakSet<object>();

/**
 * Whether a claim failed (`error`, thrown by `claimKey`) after it had seen its key in flight, or
 * while it held a claim of the key: such a request must never run unguarded (`failOpen`), since
 * another run of it may be going on.
 * @internal
 */
export function failedAfterInFlight(error: unknown): boolean {
  return typeof error === 'object' && error !== null && seenInFlight.has(error);
}

function markInFlight(error: unknown): unknown {
  const marked =
    typeof error === 'object' && error !== null
      ? error
      : new IdempotencyStoreError(`the store failed: ${String(error)}`, { cause: error });
  seenInFlight.add(marked);
  return marked;
}

/**
 * Claims the key, or says why not. Store failures are thrown (nothing ran).
 *
 * When the store answers but refuses the claim (e.g. a Valkey server out of memory refuses every
 * script that writes), the key is read instead: a key that exists answers with what it holds (a
 * replay, 409 or 422), so retries of requests already done or running are not told the store is
 * down. A store that does not answer in time is not asked again, nor one whose claim was made but
 * not made durable (`StoreDurabilityError`): the key then holds that very claim (or nothing, once
 * the store removed it), never an answer for this request.
 */
export function claimKey(request: ClaimRequest): Promise<ClaimDecision> {
  try {
    return promised(claimKeyNow(request));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * {@link claimKey}, answered without a promise when the store answers at once (the in-process
 * store) and nothing waits.
 * @internal
 */
export function claimKeyNow(request: ClaimRequest): ClaimDecision | Promise<ClaimDecision> {
  const first = claimOnce(request);
  // Most claims need no waiting: answered without another async frame.
  if ((request.waitMs ?? 0) <= 0) return first;
  return then(first, (decision) => (decision.kind === 'in-flight' ? waitForKey(request, decision) : decision));
}

/**
 * Waits for the key's holder to end: woken by the store when the entry changes, and re-checking
 * at least every RECHECK_MS, so a missed notification costs latency, never correctness. Each
 * wake-up claims again: a completed key replays, a released one is claimed (by one waiter; the
 * others go on waiting), one still in flight at the bound answers in-flight.
 */
async function waitForKey(request: ClaimRequest, inFlight: ClaimDecision): Promise<ClaimDecision> {
  let decision = inFlight;
  const deadline = monotonicNow() + request.waitMs!;
  const signal = request.waitSignal?.();
  try {
    while (decision.kind === 'in-flight') {
      const left = deadline - monotonicNow();
      if (left <= 0 || signal?.aborted) return decision;
      await request.store.waitForChange(request.key, Math.min(left, RECHECK_MS), signal);
      if (signal?.aborted) return decision;
      decision = await claimOnce(request);
    }
  } catch (error) {
    // The key was in flight when last seen: the first run may still be going on.
    throw markInFlight(error);
  }
  return decision;
}

/** Longest a waiter sleeps before it checks the key again, notification or not. */
const RECHECK_MS = 1_000;

function claimOnce(request: ClaimRequest): ClaimDecision | Promise<ClaimDecision> {
  const { store, key, fingerprint, leaseMs } = request;
  const unstored = unstoredResultOf(store, key);
  if (unstored !== undefined) return claimAfter(request, unstored);
  const leaseStart = monotonicNow();
  const now = immediateOperations(store);
  if (now !== undefined) {
    // What making the processing entry would check; the store makes it only for a claim.
    assertEntryParts(fingerprint, leaseMs);
    let result: InsertResult | undefined;
    try {
      result = now.claim(key, fingerprint, leaseMs);
    } catch (error) {
      return readInstead(request, error);
    }
    if (result !== undefined) return decisionOf(result, fingerprint, leaseStart);
  }
  return store.tryInsert(key, new IdempotencyEntry(fingerprint, leaseMs)).then(
    (result) => decisionOf(result, fingerprint, leaseStart),
    (error: unknown) => readInstead(request, error),
  );
}

/**
 * A claim of a key whose result this process holds unstored: the result is stored first (now, not
 * at the next back-off), then the store answers; while it cannot be, in-flight. Never a claim of
 * the store, where the run's own claim may have expired and the work would run again.
 */
async function claimAfter(request: ClaimRequest, unstored: UnstoredResult): Promise<ClaimDecision> {
  if (!unstored.fingerprint.equals(request.fingerprint)) return FINGERPRINT_MISMATCH;
  if (!(await unstored.store())) return IN_FLIGHT;
  return claimOnce(request);
}

/** The claim, or what a request with `fingerprint` is answered from the entry the key holds. */
function decisionOf(result: InsertResult, fingerprint: Fingerprint, leaseStart: number): ClaimDecision {
  return result.kind === 'claimed'
    ? { kind: 'claimed', fencingToken: result.fencingToken, entry: result.entry, leaseStart }
    : refusalFor(result.entry, fingerprint);
}

/** A claim the store refused: what the key holds, if the store can still be read; else the error. */
async function readInstead(request: ClaimRequest, error: unknown): Promise<ClaimDecision> {
  if (error instanceof StoreTimeoutError || error instanceof StoreDurabilityError) throw error;
  // A stored response that cannot be opened: the key was done. Never run again, nor unguarded.
  if (error instanceof SealedRecordError) throw markInFlight(error);
  let entry: AnyEntry | undefined;
  try {
    entry = await request.store.get(request.key);
  } catch {
    throw error;
  }
  if (entry === undefined) throw error;
  return refusalFor(entry, request.fingerprint);
}

/**
 * Runs `work` under the claim `claimed` holds and stores what it produced. Throws only when the
 * work did not run: a store that cannot be reached to renew a claim that lost a third of its
 * lease before the work started (such an error never lets the request run unguarded).
 */
export function runClaimed<T>(request: ClaimRequest, claimed: Claimed, work: ClaimedWork<T>): Promise<RunOutcome<T>> {
  try {
    return promised(runClaimedNow(request, claimed, work));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * {@link runClaimed}, answered without a promise when the work gives its value (or throws) at once
 * and the store answers at once: a handler that returns a plain value, on the in-process store.
 * @internal
 */
export function runClaimedNow<T>(
  request: ClaimRequest,
  claimed: Claimed,
  work: ClaimedWork<T>,
): RunOutcome<T> | Promise<RunOutcome<T>> {
  const { store, key } = request;
  // Claimed a moment ago, nearly always. Not so after a pause (a stopped process, a long GC, an
  // overloaded loop) between the claim and now: renew the claim first, or claim the key again.
  if (monotonicNow() - claimed.leaseStart > request.leaseMs / 3) return renewFirst(request, claimed, work);
  if (work.transactional === true) return runInTransaction(request, claimed, work);
  const fencingToken = claimed.fencingToken;
  const lease = new Lease(store, key, fencingToken, request.leaseMs, claimed.leaseStart, work);
  let result: T | PromiseLike<T>;
  try {
    result = work.run(lease);
  } catch (error) {
    return workFailed(request, claimed, lease, work, error);
  }
  if (!isThenable(result)) return workDone(request, claimed, lease, work, result);
  // The work goes on after this turn: keep its lease alive meanwhile.
  lease.keepAlive();
  return Promise.resolve(result).then(
    (value) => workDone(request, claimed, lease, work, value),
    (error: unknown) => workFailed(request, claimed, lease, work, error),
  );
}

/**
 * The claim lost a third of its lease before the work started: renews it (the work then starts
 * under the renewed lease), or, when the store no longer holds it (expired, perhaps taken over),
 * claims the key again and answers what that gives. The work never starts on a claim whose lease
 * may have passed.
 */
async function renewFirst<T>(request: ClaimRequest, claimed: Claimed, work: ClaimedWork<T>): Promise<RunOutcome<T>> {
  const leaseStart = monotonicNow();
  let renewed: FencedOutcome;
  try {
    renewed = await request.store.touch(request.key, claimed.fencingToken, request.leaseMs);
  } catch (error) {
    throw markInFlight(error);
  }
  if (renewed === FencedOutcome.Applied) return runClaimedNow(request, { ...claimed, leaseStart }, work);
  let again: ClaimDecision;
  try {
    again = await claimOnce(request);
  } catch (error) {
    throw markInFlight(error);
  }
  return again.kind === 'claimed' ? runClaimedNow(request, again, work) : again;
}

/**
 * Runs `work` in a transaction of the store with its completion: the work writes through the
 * transaction, the result is stored in it (token-checked at the end; the key's entry is not
 * locked while the work runs), then it commits. Both or neither: the work throwing, the claim
 * taken over or run out, or the completion failing roll it back; a commit whose outcome cannot be
 * told is answered from what the key holds (never a second run on a guess).
 */
async function runInTransaction<T>(
  request: ClaimRequest,
  claimed: Claimed,
  work: ClaimedWork<T>,
): Promise<RunOutcome<T>> {
  const { store, key } = request;
  const fencingToken = claimed.fencingToken;
  let tx: StoreTransaction;
  try {
    tx = await transactionalStoreOf(store).beginTransaction();
  } catch (error) {
    // Nothing ran: free the key for the retry.
    await store.remove(key, fencingToken).catch(() => undefined);
    throw markInFlight(error);
  }
  // The connection may have come after a long wait (a busy pool), while the lease ran unrenewed:
  // as for a pause before the work, renew the claim first (or claim the key again), never start
  // the work on a claim whose lease may have passed. The connection goes back meanwhile, so the
  // renewal never waits for a pool this transaction holds.
  if (monotonicNow() - claimed.leaseStart > request.leaseMs / 3) {
    await tx.rollback();
    return renewFirst(request, claimed, work);
  }
  const lease = new Lease(store, key, fencingToken, request.leaseMs, claimed.leaseStart, work);
  let value: T;
  try {
    const result = work.run(lease, tx);
    if (isThenable(result)) lease.keepAlive();
    value = await result;
  } catch (error) {
    await tx.rollback();
    // The usual rules: released, or the error stored (in a transaction of its own).
    return workFailed(request, claimed, lease, work, error);
  }
  lease.stop();
  let response: CachedResponse;
  let unstorable: unknown;
  try {
    response = work.capture(value);
  } catch (error) {
    if (work.unstorable === undefined) {
      await tx.rollback();
      return release(request, fencingToken, error, work);
    }
    unstorable = error;
    response = work.unstorable(value, error);
  }
  let outcome: FencedOutcome;
  try {
    outcome = await tx.complete(key, claimed.entry.complete(response), fencingToken, request.ttlMs);
  } catch (error) {
    await tx.rollback();
    return rolledBack(request, fencingToken, error);
  }
  if (outcome !== FencedOutcome.Applied) {
    await tx.rollback();
    work.notify?.({
      type: outcome === FencedOutcome.KeyExpired ? 'key-expired' : 'stale-completion',
      fencingToken,
    });
    // Another claim holds the key (its answer), or nobody does: nothing of this run persisted.
    const current = await store.get(key).catch(() => undefined);
    if (current !== undefined) return refusalFor(current, request.fingerprint);
    return rolledBack(request, fencingToken, new LeaseLostError(outcome));
  }
  let committed: 'committed' | 'rolled-back';
  try {
    committed = await tx.commit();
  } catch (error) {
    // Committed or not, nobody can tell: answer from the key (a replay once it is known), never
    // run again. The key holds the result (committed) or this claim until its lease ends.
    const current = await store.get(key).catch(() => undefined);
    if (current?.isCompleted() === true) return refusalFor(current, request.fingerprint);
    return { kind: 'deferred', response, error };
  }
  if (committed === 'rolled-back') {
    return rolledBack(request, fencingToken, new IdempotencyStoreError('the transaction was rolled back'));
  }
  return unstorable === undefined
    ? { kind: 'executed', value, response, fencingToken }
    : { kind: 'executed', value, response, fencingToken, unstorable };
}

/** A transactional run left nothing behind: frees the key (best effort) so a retry runs cleanly. */
async function rolledBack(
  request: ClaimRequest,
  fencingToken: FencingToken,
  error: unknown,
): Promise<RunOutcome<never>> {
  await request.store.remove(request.key, fencingToken).catch(() => undefined);
  return { kind: 'rolled-back', error };
}

/** The transactional store a store is, or wraps. */
function transactionalStoreOf(store: StoreOperations): TransactionalStore {
  const transactional = transactionalStoreIn(store);
  if (transactional === undefined) throw new TypeError(`the ${store.kind} store cannot run work in a transaction`);
  return transactional;
}

/** Whether work can run in a transaction of `store` (see `ClaimedWork.transactional`). @internal */
export function canRunInTransaction(store: StoreOperations): boolean {
  return transactionalStoreIn(store) !== undefined;
}

/** The work gave `value`: stores what `capture` makes of it. */
function workDone<T>(
  request: ClaimRequest,
  claimed: Claimed,
  lease: Lease,
  work: ClaimedWork<T>,
  value: T,
): RunOutcome<T> | Promise<RunOutcome<T>> {
  let response: CachedResponse;
  let unstorable: unknown;
  try {
    response = work.capture(value);
  } catch (error) {
    if (work.unstorable === undefined) {
      lease.stop();
      return release(request, claimed.fencingToken, error, work);
    }
    unstorable = error;
    response = work.unstorable(value, error);
  }
  return then(storeResult(request, claimed, lease, response, work), (stored): RunOutcome<T> => {
    if (stored.kind !== 'stored') return stored;
    return unstorable === undefined
      ? { kind: 'executed', value, response, fencingToken: stored.fencingToken }
      : { kind: 'executed', value, response, fencingToken: stored.fencingToken, unstorable };
  });
}

/** The work threw `error`: stores what `cacheError` makes of it, or releases the key. */
function workFailed<T>(
  request: ClaimRequest,
  claimed: Claimed,
  lease: Lease,
  work: ClaimedWork<T>,
  error: unknown,
): RunOutcome<T> | Promise<RunOutcome<T>> {
  lease.stop();
  let cached: CachedResponse | undefined;
  try {
    cached = work.cacheError?.(error);
  } catch {
    // A predicate or renderer that throws must not leave the key blocked: the error is not cached.
    cached = undefined;
  }
  if (cached === undefined) return release(request, claimed.fencingToken, error, work);
  const response = cached;
  return then(storeResult(request, claimed, lease, response, work), (stored): RunOutcome<T> =>
    stored.kind === 'stored' ? { kind: 'error-stored', error, response, fencingToken: stored.fencingToken } : stored,
  );
}

/**
 * Releases the claim after the work threw, so a retry runs again. When the lease had been taken
 * over meanwhile, the key is another claim's: the answer is what it holds now (its stored
 * response, in-flight, fingerprint-mismatch), as for a stale completion.
 */
async function release(
  request: ClaimRequest,
  fencingToken: FencingToken,
  error: unknown,
  listener: Listener,
): Promise<RunOutcome<never>> {
  let outcome: FencedOutcome;
  try {
    outcome = await request.store.remove(request.key, fencingToken);
  } catch (releaseError) {
    listener.notify?.({ type: 'release-failed', fencingToken, error: releaseError });
    return { kind: 'released', error };
  }
  if (outcome === FencedOutcome.FencingMismatch) {
    listener.notify?.({ type: 'stale-completion', fencingToken });
    try {
      const current = await request.store.get(request.key);
      if (current !== undefined) return refusalFor(current, request.fingerprint);
    } catch {
      // Cannot tell what the key holds now: the work's own error is the answer.
    }
  }
  return { kind: 'released', error };
}

type Stored = { readonly kind: 'stored'; readonly fencingToken: FencingToken };
type Deferred = { readonly kind: 'deferred'; readonly response: CachedResponse; readonly error: unknown };

/** A claim this run holds, with the completed entry to hand the store for it. */
interface Held {
  readonly fencingToken: FencingToken;
  readonly completed: CompletedEntry;
}

/**
 * Stores `response` for the claim: with the claim's token while its lease lasts; after the lease
 * ran out unclaimed, under a new claim; else answers with what the key holds now. When the store
 * keeps failing, the key is held and the result stored in the background. Answered at once when
 * the store can answer at once (the in-process store).
 */
function storeResult(
  request: ClaimRequest,
  claimed: Claimed,
  lease: Lease,
  response: CachedResponse,
  listener: Listener,
): Stored | Deferred | ClaimRefusal | Promise<Stored | Deferred | ClaimRefusal> {
  // The heartbeat stops first, so completion retries are bounded by what is left of the lease
  // even when the store keeps renewing leases but refuses completions.
  lease.stop();
  const held: Held = { fencingToken: claimed.fencingToken, completed: claimed.entry.complete(response) };
  const { store, key, ttlMs } = request;
  const now = immediateOperations(store);
  let first: FencedOutcome | { readonly error: unknown } | undefined;
  if (now !== undefined) {
    try {
      first = now.complete(key, held.completed, held.fencingToken, ttlMs);
    } catch (error) {
      first = { error };
    }
    if (first === FencedOutcome.Applied) return { kind: 'stored', fencingToken: held.fencingToken };
  }
  return storeLater(request, response, held, lease.expiresAt, listener, first);
}

/**
 * {@link storeResult} once it cannot answer at once. From its first step until the result is
 * stored, or the key is found to be another claim's, the result is held by this process
 * (`holdUnstoredResult`): claims of the key here wait for it instead of claiming a key whose lease
 * may have run out meanwhile. A deferred result stays held by its background completion.
 */
async function storeLater(
  request: ClaimRequest,
  response: CachedResponse,
  held: Held,
  deadline: number,
  listener: Listener,
  first: FencedOutcome | { readonly error: unknown } | undefined,
): Promise<Stored | Deferred | ClaimRefusal> {
  const unstored = holdUnstoredResult(request.store, request.key, request.fingerprint);
  let current = held;
  let stillHeld = false;
  try {
    let outcome: FencedOutcome;
    try {
      outcome =
        typeof first === 'string'
          ? first
          : await completeBefore(request, current, deadline, unstored, first === undefined ? undefined : first.error);
    } catch (error) {
      stillHeld = true;
      return defer(request, response, current, error, listener, unstored);
    }
    if (outcome === FencedOutcome.Applied) return { kind: 'stored', fencingToken: current.fencingToken };
    listener.notify?.({
      type: outcome === FencedOutcome.KeyExpired ? 'key-expired' : 'stale-completion',
      fencingToken: current.fencingToken,
    });
    // The run's claim is gone (expired, or taken over): claim the key again and store the result
    // when nobody holds it; answer with what the key holds otherwise. A claim that expires between
    // the claim and the completion is tried again, a few times.
    for (let attempt = 0; attempt < 3; attempt++) {
      const leaseStart = monotonicNow();
      try {
        const again = await request.store.tryInsert(
          request.key,
          new IdempotencyEntry(request.fingerprint, request.leaseMs),
        );
        if (again.kind === 'exists') {
          const refusal = refusalFor(again.entry, request.fingerprint);
          // Another claim of this request holds the key: it may never answer (a claim that timed
          // out and is released when it lands, a holder that dies). Answer in-flight, and keep
          // holding the result here until the key has an answer, so no claim of it in this process
          // runs the work again.
          if (refusal === IN_FLIGHT) {
            stillHeld = true;
            defer(request, response, undefined, undefined, listener, unstored);
          }
          return refusal;
        }
        current = { fencingToken: again.fencingToken, completed: again.entry.complete(response) };
      } catch (error) {
        stillHeld = true;
        return defer(request, response, undefined, error, listener, unstored);
      }
      try {
        outcome = await completeBefore(request, current, leaseStart + request.leaseMs, unstored);
      } catch (error) {
        stillHeld = true;
        return defer(request, response, current, error, listener, unstored);
      }
      if (outcome === FencedOutcome.Applied) return { kind: 'stored', fencingToken: current.fencingToken };
    }
    return IN_FLIGHT;
  } finally {
    if (!stillHeld) unstored.end();
  }
}

/**
 * Stores the completion of the claim `held` holds, retrying with its token until `deadline` (by
 * `monotonicNow()`): a store error after the work ran must not release the key or lose the
 * response. Re-sending is safe: a completion that landed but whose answer was lost answers
 * `Applied` again. A claim of the key in this process cuts the pause between attempts short.
 * `firstError`: the caller already tried once, and that failed.
 * @throws CompletionFailedError when every attempt failed before the deadline, or at once when the
 *   store is closed (it refuses every operation from then on).
 */
async function completeBefore(
  request: ClaimRequest,
  held: Held,
  deadline: number,
  unstored: UnstoredResult,
  firstError?: unknown,
): Promise<FencedOutcome> {
  const { store, key, ttlMs } = request;
  let delay = 20;
  let failed: { readonly error: unknown } | undefined = firstError === undefined ? undefined : { error: firstError };
  for (;;) {
    if (failed !== undefined) {
      unstored.failedAttempt();
      if (failed.error instanceof StoreClosedError || monotonicNow() + delay >= deadline) {
        throw new CompletionFailedError('the idempotent result could not be stored before the lease ran out', {
          cause: failed.error,
        });
      }
      await unstored.pause(delay, true);
      delay = Math.min(delay * 2, 1000);
    }
    try {
      return await store.complete(key, held.completed, held.fencingToken, ttlMs);
    } catch (error) {
      failed = { error };
    }
  }
}

/** `value`'s promise: itself, or an already settled one. */
function promised<T>(value: T | Promise<T>): Promise<T> {
  return value instanceof Promise ? value : Promise.resolve(value);
}

/** `fn(value)`, at once for a value, on settling for a promise. */
function then<A, B>(value: A | Promise<A>, fn: (value: A) => B | Promise<B>): B | Promise<B> {
  return value instanceof Promise ? value.then(fn) : fn(value);
}

function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | null | undefined)?.then === 'function';
}

/** Background completions, so a shutdown can wait for them. */
const deferredTasks = new Map<Promise<void>, Control>();

/** Lets a shutdown stop one background completion. */
interface Control {
  readonly store: StoreOperations;
  readonly unstored: UnstoredResult;
  aborted: boolean;
}

/** Longest pause between background attempts. */
const MAX_BACKOFF_MS = 30_000;

function defer(
  request: ClaimRequest,
  response: CachedResponse,
  held: Held | undefined,
  error: unknown,
  listener: Listener,
  unstored: UnstoredResult,
): Deferred {
  if (held !== undefined) listener.notify?.({ type: 'completion-deferred', fencingToken: held.fencingToken, error });
  const control: Control = { store: request.store, unstored, aborted: false };
  const task = completeLater(request, response, held, control, listener).catch(() => undefined);
  deferredTasks.set(task, control);
  void task.finally(() => {
    deferredTasks.delete(task);
    unstored.end();
  });
  return { kind: 'deferred', response, error };
}

/**
 * Keeps trying to store `response` until it is stored, the key is found to hold another answer,
 * the replay window passes, the store is closed, or the store's deferred completions are
 * abandoned (shutdown). The first step extends the processing lease to the whole replay window
 * (`touch`, which a Valkey server out of memory still accepts), so no retry runs the work again
 * meanwhile. A claim of the key in this process cuts the pause between two attempts short.
 */
async function completeLater(
  request: ClaimRequest,
  response: CachedResponse,
  held: Held | undefined,
  control: Control,
  listener: Listener,
): Promise<void> {
  const { store, key, ttlMs } = request;
  const { unstored } = control;
  const deadline = monotonicNow() + ttlMs;
  let holding = false;
  let delay = 50;
  let lastError: unknown;
  let reclaims = 0;
  while (monotonicNow() < deadline && !control.aborted) {
    try {
      if (held === undefined) {
        if (reclaims >= 5) break;
        const again = await store.tryInsert(key, new IdempotencyEntry(request.fingerprint, request.leaseMs));
        if (again.kind === 'exists') {
          if (again.entry.isCompleted() || !again.entry.fingerprintMatches(request.fingerprint)) {
            listener.notify?.({ type: 'completion-abandoned', reason: 'another request holds the key now' });
            return;
          }
          // In flight under another claim of this request (one that timed out and is released
          // when it lands, or a holder that may die): keep holding the result, and try again.
          unstored.failedAttempt();
          await unstored.pause(delay, false);
          delay = Math.min(delay * 2, MAX_BACKOFF_MS);
          continue;
        }
        reclaims++;
        held = { fencingToken: again.fencingToken, completed: again.entry.complete(response) };
        holding = false;
      }
      if (!holding) {
        const touched = await store.touch(key, held.fencingToken, ttlMs);
        if (touched === FencedOutcome.KeyExpired && (await completedAlready(store, key, held, ttlMs))) {
          listener.notify?.({ type: 'completion-recovered', fencingToken: held.fencingToken });
          return;
        }
        if (touched !== FencedOutcome.Applied) {
          // Gone (re-claimed next), or another claim's.
          held = undefined;
          continue;
        }
        holding = true;
      }
      if ((await store.complete(key, held.completed, held.fencingToken, ttlMs)) === FencedOutcome.Applied) {
        listener.notify?.({ type: 'completion-recovered', fencingToken: held.fencingToken });
        return;
      }
      held = undefined;
    } catch (error) {
      lastError = error;
      if (error instanceof StoreClosedError) {
        listener.notify?.({ type: 'completion-abandoned', reason: 'the store was closed', error });
        return;
      }
      unstored.failedAttempt();
      await unstored.pause(delay, false);
      delay = Math.min(delay * 2, MAX_BACKOFF_MS);
    }
  }
  listener.notify?.({
    type: 'completion-abandoned',
    reason: control.aborted ? 'the application shut down' : 'the replay window passed',
    error: lastError,
  });
}

/**
 * Whether this claim's completion is stored already: a store can apply a completion and still
 * throw (a Valkey store whose replicas did not acknowledge it in time). A lease cannot be renewed
 * on a completed entry (`touch` answers `KeyExpired`), so when the key holds a completed entry the
 * same completion is sent again: `Applied` means it is this claim's, and the store's check (its
 * replicas' acknowledgement) has now passed; a throw is retried by the caller. A key that is gone
 * is not completed: the caller claims it again at once, as before.
 */
async function completedAlready(
  store: StoreOperations,
  key: IdempotencyKey,
  held: Held,
  ttlMs: number,
): Promise<boolean> {
  if ((await store.get(key))?.isCompleted() !== true) return false;
  return (await store.complete(key, held.completed, held.fencingToken, ttlMs)) === FencedOutcome.Applied;
}

/**
 * Waits up to `timeoutMs` for the background completions on the stores `belongsTo` accepts to
 * end, then abandons those still running (their keys stay held, as in flight, until the replay
 * window ends). Answers how many were abandoned.
 * @internal
 */
export async function settleDeferredCompletions(
  timeoutMs: number,
  belongsTo: (store: StoreOperations) => boolean,
): Promise<number> {
  const tasks = [...deferredTasks].filter(([, control]) => belongsTo(control.store));
  if (tasks.length === 0) return 0;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  await Promise.race([Promise.all(tasks.map(([task]) => task)), timedOut]);
  clearTimeout(timer);
  let abandoned = 0;
  for (const [task, control] of tasks) {
    if (!deferredTasks.has(task)) continue;
    control.aborted = true;
    // Wakes its pause, so it ends now rather than at its next attempt.
    control.unstored.end();
    abandoned++;
  }
  return abandoned;
}
