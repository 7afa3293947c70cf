import {
  AnyEntry,
  CachedResponse,
  CompletedEntry,
  DefaultFingerprintStrategy,
  IdempotencyDecodeError,
  IdempotencyEntry,
  IdempotencyError,
  IdempotencyStore,
  ProcessingEntry,
} from '../index';

const fp = new DefaultFingerprintStrategy().compute('POST /x', '{}');
const other = new DefaultFingerprintStrategy().compute('POST /x', '{"a":1}');
const response = new CachedResponse({ statusCode: 201, body: 'ok', metadata: { a: 'b' } });

describe('IdempotencyEntry', () => {
  it('starts processing and completes once into a new completed entry', () => {
    const entry = new IdempotencyEntry(fp, 1000);
    expect(entry.isCompleted()).toBe(false);
    expect(entry.state).toBe('processing');
    expect(entry.response).toBeUndefined();
    const done = entry.complete(response);
    expect(done).not.toBe(entry);
    expect(done.isCompleted()).toBe(true);
    expect(done.response).toBe(response);
    expect(done.fingerprint).toBe(fp);
    expect(done.ttl).toBe(1000);
    expect(() => entry.complete(response)).toThrow(IdempotencyError);
  });

  it('refuses to complete a completed entry even through a cast', () => {
    const done = new IdempotencyEntry(fp, 1000).complete(response);
    expect(() => (done as unknown as ProcessingEntry).complete(response)).toThrow(/already been completed/);
  });

  it('matches fingerprints', () => {
    const entry = new IdempotencyEntry(fp, 5);
    expect(entry.fingerprintMatches(fp)).toBe(true);
    expect(entry.fingerprintMatches(other)).toBe(false);
  });

  it('rejects bad durations with a RangeError naming ttlMs', () => {
    for (const bad of [0, -1, 1.5, NaN, Infinity, 2 ** 60]) {
      expect(() => new IdempotencyEntry(fp, bad)).toThrow(/ttlMs/);
      expect(() => new IdempotencyEntry(fp, bad)).toThrow(RangeError);
    }
  });

  it('round-trips both states through JSON', () => {
    const processing = new IdempotencyEntry(fp, 1234);
    const back = IdempotencyEntry.fromJSON(JSON.parse(JSON.stringify(processing)));
    expect(back.isCompleted()).toBe(false);
    expect(back.ttl).toBe(1234);
    expect(back.fingerprint.equals(fp)).toBe(true);

    const completed = new IdempotencyEntry(fp, 99).complete(
      new CachedResponse({ statusCode: 200, body: new Uint8Array([0, 1, 254, 255]) }),
    );
    const json = JSON.parse(JSON.stringify(completed));
    expect(json).toEqual({ state: 'completed', fingerprint: fp.toString(), ttl: 99, response: expect.any(Object) });
    const restored = IdempotencyEntry.fromJSON(json);
    expect(restored.isCompleted() && restored.response.equals(completed.response)).toBe(true);
    // A restored processing entry can still be completed, once.
    if (back.isProcessing()) expect(back.complete(response).isCompleted()).toBe(true);
  });

  it('refuses malformed JSON', () => {
    for (const bad of [null, {}, { state: 'done' }, { state: 'processing', fingerprint: 'x', ttl: 1 }]) {
      expect(() => IdempotencyEntry.fromJSON(bad)).toThrow(IdempotencyDecodeError);
    }
    expect(() => IdempotencyEntry.fromJSON({ state: 'processing', fingerprint: fp.toString(), ttl: -5 })).toThrow(
      IdempotencyDecodeError,
    );
    expect(() => IdempotencyEntry.fromJSON({ state: 'completed', fingerprint: fp.toString(), ttl: 5 })).toThrow(
      IdempotencyDecodeError,
    );
  });
});

/*
 * Type-level tests: `npm test` type-checks this file (tsc) before Jest runs it. Each
 * `@ts-expect-error` fails the type check if the line below it compiles.
 */
export function typestateChecks(
  store: IdempotencyStore,
  processing: ProcessingEntry,
  completed: CompletedEntry,
  unknownState: AnyEntry,
) {
  const key = undefined as never;
  const token = undefined as never;

  // A processing entry cannot be stored as a completion.
  // @ts-expect-error processing entries are not completed entries
  void store.complete(key, processing, token, 1000);

  // A completed entry cannot be completed again...
  // @ts-expect-error complete() exists only on processing entries
  completed.complete(response);

  // ...nor used to claim a key.
  // @ts-expect-error completed entries cannot be reclaimed
  void store.tryInsert(key, completed);

  // The constructor only makes processing entries; it cannot be coaxed into a completed one.
  // @ts-expect-error new IdempotencyEntry() is always processing
  const forged: CompletedEntry = new IdempotencyEntry(fp, 1000);

  // Only completed entries have a response typed as CachedResponse.
  // @ts-expect-error a processing entry's response is undefined
  const missing: CachedResponse = processing.response;

  // What a store hands back must be narrowed before use.
  // @ts-expect-error AnyEntry may still be processing
  const notYet: CachedResponse = unknownState.response;
  if (unknownState.isCompleted()) {
    const ok: CachedResponse = unknownState.response;
    void ok;
  }

  // The happy path compiles.
  const done: CompletedEntry = processing.complete(response);
  void store.complete(key, done, token, 1000);
  void store.tryInsert(key, new IdempotencyEntry(fp, 1000));
  return [forged, missing, notYet];
}
