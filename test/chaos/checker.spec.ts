// The chaos checker (test/chaos/checker.js) on hand-written histories: each window excuses exactly
// what its evidence shows, and everything else is a violation.

// The checker is plain CommonJS JavaScript, run by Node as it is (test/chaos/README.md).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { check } = require('./checker') as { check: (input: Input) => Result };

interface Input {
  scenario: {
    name: string;
    store: 'valkey' | 'memory' | 'postgres';
    leaseMs: number;
    commandTimeoutMs: number;
    durable: boolean;
  };
  ops: { op: number; key: string; result: string }[];
  history: Record<string, unknown>[];
  ledger: Record<string, unknown>[];
  nemesis: Record<string, unknown>[];
  effects?: { key: string; execution: string; instance: string }[];
}
interface Result {
  counts: Record<string, number> & { windows: Record<string, number> };
  violations: { kind: string; key: string; detail: Record<string, unknown> }[];
  anomalies: string[];
}

const LEASE = 2_000;
const K = 'key-1';

function scenario(overrides: Partial<Input['scenario']> = {}): Input['scenario'] {
  return { name: 'test', store: 'valkey', leaseMs: LEASE, commandTimeoutMs: 1_000, durable: false, ...overrides };
}

/** One execution of `key` in process `instance:pid`, from `start` to start + 100, stored at `storedAt` if given. */
function execution(
  id: string,
  { key = K, instance = 'e1', pid = 1, start = 0, token = '1', storedAt }: Partial<Exec> = {},
): Record<string, unknown>[] {
  const records: Record<string, unknown>[] = [
    { type: 'start', key, execution: id, token, nonce: `n${id}`, instance, pid, time: start },
    { type: 'end', key, execution: id, token, instance, pid, time: start + 100 },
  ];
  if (storedAt !== undefined) {
    records.push({ type: 'stored', key, execution: id, token, nonce: `n${id}`, instance, pid, time: storedAt });
  }
  return records;
}
interface Exec {
  key: string;
  instance: string;
  pid: number;
  start: number;
  token: string;
  storedAt: number;
}

interface OkAttempt {
  key: string;
  instance: string;
  start: number;
  end: number;
  replayed: boolean;
}

function ok(execution: string, options: Partial<OkAttempt> = {}): Record<string, unknown> {
  const { key = K, instance = 'e1', start = 0, replayed = false } = options;
  const end = options.end ?? start + 150;
  return {
    op: 1,
    key,
    lane: 1,
    n: 1,
    phase: 'load',
    instance,
    start,
    end,
    outcome: 'ok',
    status: 201,
    replayed,
    body: { key, execution, instance },
  };
}

function info(start: number, { key = K, instance = 'e1', status = null as number | null } = {}) {
  return {
    op: 1,
    key,
    lane: 1,
    n: 1,
    phase: 'load',
    instance,
    start,
    end: start + 100,
    outcome: 'info',
    status,
    replayed: false,
    body: null,
  };
}

function run(input: Partial<Input>): Result {
  return check({
    scenario: scenario(),
    ops: [{ op: 1, key: K, result: 'ok' }],
    history: [],
    ledger: [],
    nemesis: [],
    ...input,
  });
}

const kinds = (result: Result) => result.violations.map((v) => v.kind).sort();

describe('chaos checker', () => {
  it('passes one execution, its stored first answer and a replay', () => {
    const result = run({
      ledger: execution('a', { storedAt: 110 }),
      history: [ok('a', { start: 0, end: 120 }), ok('a', { start: 500, replayed: true })],
    });
    expect(result.violations).toEqual([]);
    expect(result.counts).toMatchObject({ ops: 1, attempts: 2, ok: 2, executions: 1, duplicates: 0, unanswered: 0 });
  });

  it('fails a key executed twice with nothing to explain it', () => {
    const result = run({
      ledger: [...execution('a', { storedAt: 110 }), ...execution('b', { instance: 'e2', pid: 2, start: 3_000 })],
    });
    expect(kinds(result)).toEqual(['executed-twice']);
    expect(result.counts.duplicates).toBe(1);
  });

  describe('crash', () => {
    const kill = (time: number, pid = 1) => ({ kind: 'app-kill', instance: 'e1', pid, time, reason: 'nemesis' });

    it('excuses a retry after the holder was SIGKILLed before its result was stored', () => {
      const result = run({
        ledger: [...execution('a', { start: 100 }), ...execution('b', { instance: 'e2', pid: 2, start: 2_500 })],
        nemesis: [kill(150)],
      });
      expect(result.violations).toEqual([]);
      expect(result.counts.windows.crash).toBe(1);
    });

    it('also takes an exit nobody asked for as a crash, but not a graceful one', () => {
      const ledger = [...execution('a', { start: 100 }), ...execution('b', { instance: 'e2', pid: 2, start: 2_500 })];
      const exit = (expected: string | null) => ({ kind: 'app-exit', instance: 'e1', pid: 1, time: 150, expected });
      expect(run({ ledger, nemesis: [exit(null)] }).violations).toEqual([]);
      expect(kinds(run({ ledger, nemesis: [exit('sigterm')] }))).toEqual(['executed-twice']);
    });

    it('does not excuse a result that was stored, a kill before the start, or a kill after the retry', () => {
      const twoRuns = (storedAt?: number) => [
        ...execution('a', { start: 100, storedAt }),
        ...execution('b', { instance: 'e2', pid: 2, start: 2_500 }),
      ];
      expect(kinds(run({ ledger: twoRuns(140), nemesis: [kill(150)] }))).toEqual(['executed-twice']);
      expect(kinds(run({ ledger: twoRuns(), nemesis: [kill(50)] }))).toEqual(['executed-twice']);
      expect(kinds(run({ ledger: twoRuns(), nemesis: [kill(2_600)] }))).toEqual(['executed-twice']);
      expect(kinds(run({ ledger: twoRuns(), nemesis: [kill(150, 99)] }))).toEqual(['executed-twice']);
    });
  });

  describe('paused-holder', () => {
    const pause = (start: number, end: number) => ({ kind: 'app-pause', instance: 'e1', pid: 1, start, end });
    const ledger = [...execution('a', { start: 100 }), ...execution('b', { instance: 'e2', pid: 2, start: 2_400 })];

    it('excuses a takeover while the holder was stopped past the lease', () => {
      const result = run({ ledger, nemesis: [pause(150, 150 + LEASE + 500)] });
      expect(result.violations).toEqual([]);
      expect(result.counts.windows['paused-holder']).toBe(1);
    });

    it('does not excuse a stop shorter than the lease, or one that began before the execution started', () => {
      expect(kinds(run({ ledger, nemesis: [pause(150, 150 + LEASE - 1)] }))).toEqual(['executed-twice']);
      // A process stopped between its claim and its handler, which then ran on an expired lease
      // after another instance had taken the key over (the earlier execution is the other one).
      const late = [...execution('b', { instance: 'e2', pid: 2, start: 2_400 }), ...execution('a', { start: 3_000 })];
      expect(kinds(run({ ledger: late, nemesis: [pause(50, 2_900)] }))).toEqual(['executed-twice']);
    });

    it('never excuses a paused holder whose stale result reached a client', () => {
      const result = run({
        ledger,
        nemesis: [pause(150, 150 + LEASE + 500)],
        history: [ok('b', { instance: 'e2', start: 2_400, end: 2_600 }), ok('a', { start: 90, end: 2_800 })],
      });
      expect(kinds(result)).toEqual(['different-bodies', 'unstored-answer', 'unstored-answer']);
    });
  });

  describe('store-outage', () => {
    const outage = { kind: 'valkey-pause', server: 'valkey-1', pid: 9, start: 200, end: 200 + LEASE + 300 };

    it('excuses a retry in another process after the store was unreachable past the lease', () => {
      const result = run({
        ledger: [...execution('a', { start: 100 }), ...execution('b', { instance: 'e2', pid: 2, start: 2_800 })],
        nemesis: [outage],
      });
      expect(result.violations).toEqual([]);
      expect(result.counts.windows['store-outage']).toBe(1);
    });

    it('excuses it too when the first result, held meanwhile, was stored after the retry ran (whose own was not)', () => {
      const result = run({
        ledger: [
          ...execution('a', { start: 100, storedAt: 9_000 }),
          ...execution('b', { instance: 'e2', pid: 2, start: 2_800 }),
        ],
        nemesis: [outage],
      });
      expect(result.violations).toEqual([]);
      expect(result.counts.windows['store-outage']).toBe(1);
      // Stored before the retry started: the retry had a result to replay, so it is no window.
      const early = run({
        ledger: [
          ...execution('a', { start: 100, storedAt: 2_700 }),
          ...execution('b', { instance: 'e2', pid: 2, start: 2_800 }),
        ],
        nemesis: [outage],
      });
      expect(kinds(early)).toEqual(['executed-twice']);
    });

    it('never excuses a second run in the same process: it must hold its unstored result', () => {
      const result = run({
        ledger: [...execution('a', { start: 100 }), ...execution('b', { start: 2_800, token: '2' })],
        nemesis: [outage],
      });
      expect(kinds(result)).toEqual(['executed-twice']);
      expect(result.violations[0].detail.sameProcess).toBe(true);
    });

    it('counts a blackhole, a full drop and a delay past the time limit, not a slow or lossy link', () => {
      const ledger = [...execution('a', { start: 100 }), ...execution('b', { instance: 'e2', pid: 2, start: 2_800 })];
      const at = { start: 200, end: 200 + LEASE + 300 };
      for (const e of [
        { kind: 'proxy-blackhole', ...at },
        { kind: 'proxy-drop', rate: 1, ...at },
        { kind: 'proxy-delay', delayMs: 1_200, ...at },
      ]) {
        expect(run({ ledger, nemesis: [e] }).violations).toEqual([]);
      }
      for (const e of [
        { kind: 'proxy-drop', rate: 0.5, ...at },
        { kind: 'proxy-delay', delayMs: 250, ...at },
        { kind: 'proxy-blackhole', start: 200, end: 200 + LEASE - 1 },
      ]) {
        expect(kinds(run({ ledger, nemesis: [e] }))).toEqual(['executed-twice']);
      }
    });
  });

  describe('failover-lost-write', () => {
    const failover = (durable: boolean) => ({ kind: 'failover', mode: 'demote', durable, start: 300, end: 320 });
    const ledger = [
      ...execution('a', { start: 100, storedAt: 210 }),
      ...execution('b', { instance: 'e2', pid: 2, start: 2_500, storedAt: 2_650 }),
    ];
    const history = [ok('a', { start: 90, end: 220 }), ok('b', { instance: 'e2', start: 2_490, end: 2_700 })];

    it('excuses a stored result lost with the old primary, two bodies included', () => {
      const result = run({ ledger, history, nemesis: [failover(false)] });
      expect(result.violations).toEqual([]);
      expect(result.counts).toMatchObject({ mismatched: 1, mismatchedExcused: 1 });
      expect(result.counts.windows['failover-lost-write']).toBe(1);
    });

    it('excuses nothing when the scenario is durable', () => {
      const result = run({ ledger, history, nemesis: [failover(true)], scenario: scenario({ durable: true }) });
      expect(kinds(result)).toEqual(['different-bodies', 'executed-twice']);
    });
  });

  describe('memory-restart', () => {
    const ledger = [...execution('a', { start: 100, storedAt: 210 }), ...execution('b', { pid: 2, start: 2_500 })];
    const exit = { kind: 'app-exit', instance: 'e1', pid: 1, time: 1_000, expected: 'sigterm' };

    it('excuses a rerun after a MemoryStore process restarted, graceful or not', () => {
      const result = run({ ledger, nemesis: [exit], scenario: scenario({ store: 'memory' }) });
      expect(result.violations).toEqual([]);
      expect(result.counts.windows['memory-restart']).toBe(1);
    });

    it('does not apply to a shared store', () => {
      expect(kinds(run({ ledger, nemesis: [exit] }))).toEqual(['executed-twice']);
    });
  });

  it('wants a window for every earlier execution, not just the previous one', () => {
    // a was stored, then lost in a failover; b ran and its process crashed; then c ran.
    const ledger = [
      ...execution('a', { start: 100, storedAt: 150 }),
      ...execution('b', { instance: 'e2', pid: 2, start: 2_500 }),
      ...execution('c', { instance: 'f1', pid: 3, start: 5_000 }),
    ];
    const nemesis = [
      { kind: 'failover', durable: false, start: 300, end: 320 },
      { kind: 'app-kill', instance: 'e2', pid: 2, time: 2_550 },
    ];
    // b after a: failover-lost-write; c after b: crash; c after a: the failover too. All excused.
    expect(run({ ledger, nemesis }).violations).toEqual([]);
    // Without the failover, c after a has no excuse even though c after b has one.
    const result = run({ ledger, nemesis: [nemesis[1]] });
    expect(kinds(result)).toEqual(['executed-twice', 'executed-twice']);
  });

  it('fails a 2xx naming an execution the ledger does not have', () => {
    const result = run({ ledger: execution('a', { storedAt: 110 }), history: [ok('zzz', { replayed: true })] });
    expect(kinds(result)).toEqual(['phantom-2xx']);
  });

  it('fails a 2xx for another key, and a body that is not the handler’s', () => {
    const ledger = [...execution('a', { storedAt: 110 }), ...execution('x', { key: 'key-2', storedAt: 110 })];
    const wrongBody = { ...ok('a'), body: { key: 'key-2', execution: 'a', instance: 'e1' } };
    const otherExecution = ok('x', { replayed: true });
    const malformed = { ...ok('a'), body: 'Internal error' };
    const result = run({
      ledger,
      ops: [
        { op: 1, key: K, result: 'ok' },
        { op: 2, key: 'key-2', result: 'ok' },
      ],
      history: [wrongBody, otherExecution, malformed],
    });
    expect(kinds(result)).toEqual(['malformed-2xx', 'wrong-key', 'wrong-key']);
  });

  it('fails a first answer sent before its result was stored, but not a replay', () => {
    expect(kinds(run({ ledger: execution('a'), history: [ok('a')] }))).toEqual(['unstored-answer']);
    expect(kinds(run({ ledger: execution('a', { storedAt: 500 }), history: [ok('a', { end: 400 })] }))).toEqual([
      'unstored-answer',
    ]);
    expect(run({ ledger: execution('a'), history: [ok('a', { replayed: true })] }).violations).toEqual([]);
  });

  it('fails an execution of a key nobody sent, or of an operation only ever refused', () => {
    expect(kinds(run({ ledger: execution('a', { key: 'stranger' }) }))).toEqual(['unexpected-execution']);
    const refused = { ...info(0), outcome: 'fail', status: 422 };
    expect(kinds(run({ ledger: execution('a'), history: [refused] }))).toEqual(['unexpected-execution']);
  });

  it('notes unasked exits and stalls no SIGSTOP explains, without calling them violations', () => {
    const result = run({
      ledger: [
        ...execution('a', { storedAt: 110 }),
        { type: 'stall', from: 1_000, to: 2_500, instance: 'e1', pid: 1, time: 2_500 },
        { type: 'stall', from: 5_000, to: 8_000, instance: 'e1', pid: 1, time: 8_000 },
      ],
      nemesis: [
        { kind: 'app-exit', instance: 'e2', pid: 2, time: 300, code: 1, signal: null, expected: null },
        { kind: 'app-pause', instance: 'e1', pid: 1, start: 5_050, end: 7_990 },
      ],
    });
    expect(result.violations).toEqual([]);
    expect(result.anomalies).toEqual([
      'app e2 pid 2 exited unasked (code 1, signal null)',
      'app e1 pid 1: event loop stalled 1500 ms without a SIGSTOP',
    ]);
  });

  it('counts indeterminate attempts and executions no client heard of, which are not violations', () => {
    const result = run({
      ledger: execution('a', { storedAt: 110 }),
      history: [info(0, { status: 409 }), info(200, { status: 503 }), info(400)],
    });
    expect(result.violations).toEqual([]);
    expect(result.counts).toMatchObject({ info: 3, status409: 1, status503: 1, noAnswer: 1, unanswered: 1, ok: 0 });
  });

  describe('postgres: committed effects', () => {
    const pg = scenario({ store: 'postgres' });
    const effect = (execution: string, { key = K, instance = 'e1' } = {}) => ({ key, execution, instance });

    it('passes one committed effect whose execution the 2xx answers name', () => {
      const result = run({
        scenario: pg,
        ledger: execution('a', { storedAt: 110 }),
        history: [ok('a', { end: 120 }), ok('a', { start: 500, replayed: true })],
        effects: [effect('a')],
      });
      expect(result.violations).toEqual([]);
      expect(result.counts.effects).toEqual({
        rows: 1,
        keys: 1,
        duplicateKeys: 0,
        lost: 0,
        mismatched: 0,
        rolledBack: 0,
      });
    });

    it('excuses a rerun, in any process, after a run whose transaction left nothing', () => {
      // a's connection was terminated: rolled back, the key released, the retry ran in the same process.
      const ledger = [...execution('a', { start: 0 }), ...execution('b', { start: 400, storedAt: 520 })];
      const result = run({
        scenario: pg,
        ledger,
        history: [ok('b', { start: 400, end: 530 })],
        effects: [effect('b')],
      });
      expect(result.violations).toEqual([]);
      expect(result.counts.windows['rolled-back']).toBe(1);
      expect(result.counts.effects).toMatchObject({ rows: 1, rolledBack: 1 });
      // The same ledger on a store without transactions: a second run in one process.
      expect(kinds(run({ ledger, history: [ok('b', { start: 400, end: 530 })] }))).toEqual(['executed-twice']);
    });

    it('fails two committed effects for one key, whatever window excuses the second run', () => {
      // A crash excuses b running after a; but a's effect was committed (written outside the transaction).
      const ledger = [
        ...execution('a', { start: 0 }),
        ...execution('b', { instance: 'e2', pid: 2, start: 2_500, storedAt: 2_650 }),
      ];
      const nemesis = [{ kind: 'app-kill', instance: 'e1', pid: 1, time: 50 }];
      const result = run({
        scenario: pg,
        ledger,
        nemesis,
        history: [ok('b', { instance: 'e2', start: 2_500, end: 2_700 })],
        effects: [effect('a'), effect('b', { instance: 'e2' })],
      });
      expect(kinds(result)).toEqual(['duplicate-effect']);
      expect(result.violations[0].detail).toMatchObject({ rows: 2, executions: ['a', 'b'] });
      expect(result.counts.effects).toMatchObject({ duplicateKeys: 1 });
    });

    it('fails a 2xx whose key has no committed effect, or whose execution is not the committed one', () => {
      const lost = run({
        scenario: pg,
        ledger: execution('a', { storedAt: 110 }),
        history: [ok('a', { end: 120 })],
        effects: [],
      });
      expect(kinds(lost)).toEqual(['lost-effect']);
      // b's effect committed, but a client was answered with a's (rolled-back) result.
      const ledger = [...execution('a', { start: 0, storedAt: 110 }), ...execution('b', { start: 400, storedAt: 520 })];
      const mismatch = run({
        scenario: pg,
        ledger,
        history: [ok('a', { end: 120 })],
        effects: [effect('b')],
      });
      expect(kinds(mismatch)).toEqual(['effect-mismatch']);
      expect(mismatch.violations[0].detail).toEqual({ answered: 'a', committed: ['b'] });
    });

    it('fails an effect row the ledger has no execution for', () => {
      const result = run({
        scenario: pg,
        ledger: execution('a', { storedAt: 110 }),
        history: [ok('a', { end: 120 })],
        effects: [effect('a'), effect('ghost', { key: 'key-2' })],
      });
      expect(kinds(result)).toEqual(['phantom-effect']);
    });

    it('allows a key no client got a 2xx for to have one effect or none', () => {
      const ledger = [...execution('a', { start: 0 }), ...execution('x', { key: 'key-2', start: 0 })];
      const result = run({
        scenario: pg,
        ops: [
          { op: 1, key: K, result: 'gave-up' },
          { op: 2, key: 'key-2', result: 'gave-up' },
        ],
        ledger,
        history: [info(0), info(0, { key: 'key-2' })],
        effects: [effect('a')],
      });
      expect(result.violations).toEqual([]);
      expect(result.counts.effects).toMatchObject({ rows: 1, keys: 1, rolledBack: 1 });
    });
  });
});
