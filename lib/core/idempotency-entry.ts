import { CachedResponse, CachedResponseJSON } from './cached-response';
import { assertDuration } from './duration';
import { IdempotencyDecodeError, IdempotencyError } from './errors';
import { Fingerprint } from './fingerprint';

/** The two states of an entry. */
export type EntryState = 'processing' | 'completed';

/** The JSON form of an {@link IdempotencyEntry}. */
export interface IdempotencyEntryJSON {
  state: EntryState;
  fingerprint: string;
  ttl: number;
  response?: CachedResponseJSON;
}

// Set while a completed entry is being built by `complete()` or `fromJSON()`.
let building: CachedResponse | undefined;

/**
 * An idempotency record in state `S`. See {@link IdempotencyEntry} (the value) for how to make one.
 */
class Entry<S extends EntryState> {
  /** `'processing'` or `'completed'`, as the type parameter says. */
  readonly state: S;
  readonly fingerprint: Fingerprint;
  /** The lifetime, in ms, the entry is stored with: the lease while processing, the replay window once completed. */
  readonly ttl: number;
  /** The stored response (completed entries only). */
  readonly response: S extends 'completed' ? CachedResponse : undefined;
  #consumed = false;

  constructor(fingerprint: Fingerprint, ttlMs: number) {
    assertEntryParts(fingerprint, ttlMs);
    this.fingerprint = fingerprint;
    this.ttl = ttlMs;
    if (building === undefined) {
      this.state = 'processing' as S;
      this.response = undefined as this['response'];
    } else {
      this.state = 'completed' as S;
      this.response = building as this['response'];
      this.#consumed = true;
    }
  }

  /**
   * The completed entry for this claim, with the same fingerprint and ttl. Only a processing
   * entry has it, and only once: a second call on the same object throws.
   */
  complete(this: Entry<'processing'>, response: CachedResponse): Entry<'completed'> {
    if (this.state !== 'processing' || this.#consumed) {
      throw new IdempotencyError('this idempotency entry has already been completed');
    }
    if (!(response instanceof CachedResponse)) throw new TypeError('response must be a CachedResponse');
    this.#consumed = true;
    return completedEntry(this.fingerprint, this.ttl, response);
  }

  isCompleted(): this is Entry<'completed'> {
    return this.state === 'completed';
  }

  isProcessing(): this is Entry<'processing'> {
    return this.state === 'processing';
  }

  fingerprintMatches(fingerprint: Fingerprint): boolean {
    return this.fingerprint.equals(fingerprint);
  }

  /** Rebuilds an entry in either state from `toJSON()` output. */
  static fromJSON(json: unknown): AnyEntry {
    const j = json as Partial<IdempotencyEntryJSON> | null;
    if (typeof j !== 'object' || j === null || (j.state !== 'processing' && j.state !== 'completed')) {
      throw new IdempotencyDecodeError('not a serialised idempotency entry');
    }
    const fingerprint = Fingerprint.fromJSON(j.fingerprint);
    let ttl: number;
    try {
      ttl = assertDuration('ttl', j.ttl as number);
    } catch (error) {
      throw new IdempotencyDecodeError(`not a serialised idempotency entry: ${(error as Error).message}`);
    }
    if (j.state === 'processing') return new Entry<'processing'>(fingerprint, ttl);
    return completedEntry(fingerprint, ttl, CachedResponse.fromJSON(j.response));
  }

  toJSON(): IdempotencyEntryJSON {
    const json: IdempotencyEntryJSON = { state: this.state, fingerprint: this.fingerprint.toJSON(), ttl: this.ttl };
    if (this.response !== undefined) json.response = (this.response as CachedResponse).toJSON();
    return json;
  }
}

/**
 * An idempotency record. `new IdempotencyEntry(fp, ttlMs)` is a *processing* entry (a claim in
 * progress); `complete(response)` turns it into a *completed* one. The state is part of the type:
 * `ProcessingEntry` and `CompletedEntry` are not assignable to each other, so a store cannot be
 * handed an entry that was never completed, and an entry cannot be completed twice.
 */
export type IdempotencyEntry<S extends EntryState = 'processing'> = Entry<S>;
export const IdempotencyEntry: {
  /** A processing entry: a claim of `fingerprint` whose lease lasts `ttlMs`. */
  new (fingerprint: Fingerprint, ttlMs: number): Entry<'processing'>;
  readonly prototype: Entry<EntryState>;
  fromJSON(json: unknown): AnyEntry;
} = Entry;

/** An entry whose claim is still running. */
export type ProcessingEntry = IdempotencyEntry<'processing'>;
/** An entry holding the response to replay. */
export type CompletedEntry = IdempotencyEntry<'completed'>;
/** Either state, as stores hand entries back. */
export type AnyEntry = ProcessingEntry | CompletedEntry;

/**
 * Builds a completed entry directly, for stores decoding what they hold.
 * @internal
 */
export function completedEntry(fingerprint: Fingerprint, ttlMs: number, response: CachedResponse): CompletedEntry {
  if (!(response instanceof CachedResponse)) throw new TypeError('response must be a CachedResponse');
  building = response;
  try {
    return new Entry<'completed'>(fingerprint, ttlMs);
  } finally {
    building = undefined;
  }
}

/**
 * Checks, at run time, that a store was handed an entry in the state its operation needs (the
 * types already say so; this guards JavaScript callers and casts).
 * @internal
 */
export function assertEntryState<S extends EntryState>(
  entry: unknown,
  state: S,
  operation: string,
): asserts entry is IdempotencyEntry<S> {
  if (!(entry instanceof Entry) || entry.state !== state) {
    throw new TypeError(`${operation} needs a ${state} IdempotencyEntry`);
  }
}

/**
 * Checks what `new IdempotencyEntry(fingerprint, ttlMs)` checks, without making the entry.
 * @throws TypeError or RangeError as the constructor does
 * @internal
 */
export function assertEntryParts(fingerprint: Fingerprint, ttlMs: number): void {
  if (!(fingerprint instanceof Fingerprint)) throw new TypeError('fingerprint must be a Fingerprint');
  assertDuration('ttlMs', ttlMs);
}
