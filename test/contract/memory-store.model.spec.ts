/**
 * Model-based test: random command sequences run against MemoryStore (on a controlled clock) and
 * against a plain model of the store contract; every answer must agree.
 */
import fc from 'fast-check';
import {
  CachedResponse,
  DefaultFingerprintStrategy,
  FencedOutcome,
  FencingToken,
  Fingerprint,
  IdempotencyEntry,
  IdempotencyKey,
  MemoryStore,
} from '../../lib';
import { bucketOf } from '../../lib/core/key-bucket';

const KEYS = ['order-1', 'order-2', 'order-2/alice'].map((k) => IdempotencyKey.fromJSON(k));
const FPS = ['a', 'b'].map((s) => new DefaultFingerprintStrategy().compute('POST /x', s));
const BODIES = ['one', 'two', ''];

interface ModelEntry {
  fp: Fingerprint;
  token: number; // index into Real.issued
  state: 'processing' | 'completed';
  body?: string;
  ttl: number;
  expiresAt: number;
}

interface Model {
  now: number;
  entries: Map<string, ModelEntry>;
  counters: Map<number, bigint>;
  issuedValues: bigint[];
}

interface Real {
  store: MemoryStore;
  clock: { now: number };
  issued: FencingToken[];
}

function live(m: Model, key: IdempotencyKey): ModelEntry | undefined {
  const e = m.entries.get(key.toString());
  if (e && e.expiresAt <= m.now) {
    m.entries.delete(key.toString());
    return undefined;
  }
  return e;
}

/** A token the command presents: one the store issued, or a forged one with no valid nonce. */
type TokenRef = { issued: number } | { forged: bigint };

function resolveToken(r: Real, ref: TokenRef): FencingToken {
  if ('forged' in ref) return new FencingToken(ref.forged, 'forged');
  return r.issued[ref.issued % r.issued.length];
}

function holds(m: Model, e: ModelEntry, r: Real, ref: TokenRef): boolean {
  return 'issued' in ref && r.issued.length > 0 && ref.issued % r.issued.length === e.token;
}

class Claim implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly k: number,
    readonly f: number,
    readonly lease: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const key = KEYS[this.k];
    const result = await r.store.tryInsert(key, new IdempotencyEntry(FPS[this.f], this.lease));
    const e = live(m, key);
    if (e) {
      expect(result.kind).toBe('exists');
      if (result.kind !== 'exists') return;
      expect(result.entry.fingerprint.equals(e.fp)).toBe(true);
      expect(result.entry.isCompleted()).toBe(e.state === 'completed');
      expect(result.entry.ttl).toBe(e.ttl);
      return;
    }
    expect(result.kind).toBe('claimed');
    if (result.kind !== 'claimed') return;
    const bucket = bucketOf(key.toString());
    const value = (m.counters.get(bucket) ?? 0n) + 1n;
    m.counters.set(bucket, value);
    expect(result.fencingToken.value).toBe(value);
    r.issued.push(result.fencingToken);
    m.issuedValues.push(value);
    m.entries.set(key.toString(), {
      fp: FPS[this.f],
      token: r.issued.length - 1,
      state: 'processing',
      ttl: this.lease,
      expiresAt: m.now + this.lease,
    });
  }
  toString = () => `claim(${this.k}, fp${this.f}, ${this.lease})`;
}

class Complete implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly k: number,
    readonly t: TokenRef,
    readonly f: number,
    readonly b: number,
    readonly ttl: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const key = KEYS[this.k];
    const token = resolveToken(r, this.t);
    const entry = new IdempotencyEntry(FPS[this.f], 1000).complete(
      new CachedResponse({ statusCode: 200, body: BODIES[this.b] }),
    );
    const outcome = await r.store.complete(key, entry, token, this.ttl);
    const e = live(m, key);
    let expected: FencedOutcome;
    if (!e) expected = FencedOutcome.KeyExpired;
    else if (!holds(m, e, r, this.t)) expected = FencedOutcome.FencingMismatch;
    else if (!e.fp.equals(FPS[this.f])) expected = FencedOutcome.FingerprintMismatch;
    else {
      expected = FencedOutcome.Applied;
      if (e.state === 'processing') {
        e.state = 'completed';
        e.body = BODIES[this.b];
        e.ttl = this.ttl;
        e.expiresAt = m.now + this.ttl;
      }
    }
    expect(outcome).toBe(expected);
  }
  toString = () =>
    `complete(${this.k}, ${JSON.stringify(this.t, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}, fp${this.f}, body${this.b}, ${this.ttl})`;
}

class Remove implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly k: number,
    readonly t: TokenRef,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const key = KEYS[this.k];
    const outcome = await r.store.remove(key, resolveToken(r, this.t));
    const e = live(m, key);
    if (!e) expect(outcome).toBe(FencedOutcome.KeyExpired);
    else if (!holds(m, e, r, this.t)) expect(outcome).toBe(FencedOutcome.FencingMismatch);
    else {
      expect(outcome).toBe(FencedOutcome.Applied);
      m.entries.delete(key.toString());
    }
  }
  toString = () => `remove(${this.k})`;
}

class Touch implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly k: number,
    readonly t: TokenRef,
    readonly ttl: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const key = KEYS[this.k];
    const outcome = await r.store.touch(key, resolveToken(r, this.t), this.ttl);
    const e = live(m, key);
    if (!e) expect(outcome).toBe(FencedOutcome.KeyExpired);
    else if (!holds(m, e, r, this.t)) expect(outcome).toBe(FencedOutcome.FencingMismatch);
    else if (e.state === 'completed') expect(outcome).toBe(FencedOutcome.KeyExpired);
    else {
      expect(outcome).toBe(FencedOutcome.Applied);
      e.ttl = this.ttl;
      e.expiresAt = m.now + this.ttl;
    }
  }
  toString = () => `touch(${this.k}, ${this.ttl})`;
}

class Purge implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number) {}
  check = () => true;
  async run(m: Model, r: Real) {
    await r.store.purge(KEYS[this.k]);
    m.entries.delete(KEYS[this.k].toString());
  }
  toString = () => `purge(${this.k})`;
}

class Get implements fc.AsyncCommand<Model, Real> {
  constructor(readonly k: number) {}
  check = () => true;
  async run(m: Model, r: Real) {
    const got = await r.store.get(KEYS[this.k]);
    const e = live(m, KEYS[this.k]);
    if (!e) {
      expect(got).toBeUndefined();
      return;
    }
    expect(got?.fingerprint.equals(e.fp)).toBe(true);
    expect(got?.ttl).toBe(e.ttl);
    expect(got?.isCompleted()).toBe(e.state === 'completed');
    if (got?.isCompleted()) expect(got.response.text()).toBe(e.body);
  }
  toString = () => `get(${this.k})`;
}

class Advance implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: Model, r: Real) {
    m.now += this.ms;
    r.clock.now += this.ms;
    if (this.ms % 7 === 0) r.store.sweep();
  }
  toString = () => `advance(${this.ms})`;
}

const key = fc.nat({ max: KEYS.length - 1 });
const fp = fc.nat({ max: FPS.length - 1 });
const ttl = fc.integer({ min: 1, max: 50 });
const tokenRef: fc.Arbitrary<TokenRef> = fc.oneof(
  { weight: 5, arbitrary: fc.nat({ max: 30 }).map((issued) => ({ issued })) },
  { weight: 1, arbitrary: fc.bigInt({ min: 1n, max: 6n }).map((forged) => ({ forged })) },
);

const commands = [
  fc.tuple(key, fp, ttl).map(([k, f, l]) => new Claim(k, f, l)),
  fc
    .tuple(key, tokenRef, fp, fc.nat({ max: BODIES.length - 1 }), ttl)
    .map(([k, t, f, b, l]) => new Complete(k, t, f, b, l)),
  fc.tuple(key, tokenRef).map(([k, t]) => new Remove(k, t)),
  fc.tuple(key, tokenRef, ttl).map(([k, t, l]) => new Touch(k, t, l)),
  key.map((k) => new Purge(k)),
  key.map((k) => new Get(k)),
  fc.integer({ min: 1, max: 40 }).map((ms) => new Advance(ms)),
];

describe('MemoryStore against the contract model', () => {
  it('agrees with the model on random command sequences', async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 80 }), async (cmds) => {
        const clock = { now: 1_000_000 };
        const store = new MemoryStore({ now: () => clock.now });
        const model: Model = { now: clock.now, entries: new Map(), counters: new Map(), issuedValues: [] };
        try {
          await fc.asyncModelRun(() => ({ model, real: { store, clock, issued: [] } }), cmds);
        } finally {
          await store.close();
        }
      }),
      { numRuns: 300 },
    );
  });
});
