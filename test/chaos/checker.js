// The checker: a pure function from what a scenario recorded (the fleet's history of attempts, the
// apps' execution ledger, the nemesis log) to counts and violations. No I/O, no clocks: the same
// input always gives the same verdict (checker.spec.ts runs it on hand-written histories).
//
// As in Jepsen, each attempt is ok (a 2xx), fail (a definite refusal: the request did nothing) or
// info (indeterminate: it may have run, or may still run). An info attempt licenses at most one
// execution of its key, an ok attempt exactly the execution its body names, and a fail attempt
// none. At-most-once is judged on the ledger itself (every `start` is an execution), not on what
// clients saw, so an execution whose client never heard back still counts.
//
// Violations:
//   executed-twice          a key started twice, and the pair fits no window below
//   different-bodies        two 2xx answers for one key name different executions, and the earlier
//                           result was not lost in a failover-lost-write or memory-restart window
//   phantom-2xx             a 2xx naming an execution the ledger does not have
//   wrong-key               a 2xx whose body (or whose execution) is for another key
//   malformed-2xx           a 2xx whose body is not the handler's { key, execution, instance }
//   unstored-answer         a first (not replayed) 2xx whose execution has no `stored` record
//                           before the answer: a response sent before its result was stored
//   unexpected-execution    an execution of a key no client sent, or of an operation every attempt
//                           of which was definitely refused
//
// Postgres scenarios (the input has `effects`: every row of the `effects` table the handlers write
// through their transaction, read after the run; only committed rows are there):
//   duplicate-effect        two or more committed effect rows for one key: the work ran twice, for
//                           good (no window excuses this: the transaction must have rolled back)
//   lost-effect             a key whose client got a 2xx has no committed effect row
//   effect-mismatch         a 2xx names another execution than the key's committed effect row
//   phantom-effect          an effect row whose execution the ledger does not have for its key
//
// Windows (an execution B after an earlier execution A of the same key is excused only when the
// pair fits one, with evidence from the nemesis log and the ledger; B must fit one for *every*
// earlier execution):
//   crash                A's process was SIGKILLed (or exited unasked) after A started and before B
//                        started; A has no `stored` record; B ran in another process.
//   paused-holder        A's process was SIGSTOPped for >= leaseMs, the stop beginning after A
//                        started, before B started and before any `stored` record of A; B ran in
//                        another process.
//   store-outage         the store was unreachable for >= leaseMs (Valkey SIGSTOP, proxy blackhole,
//                        proxy dropping every chunk, proxy delay past the command time limit) at
//                        some time between A's start and B's start; A has no `stored` record from
//                        before B started (the process holding A's result stores it later when B's
//                        run leaves the key without an answer); B ran in another process (within
//                        one process the library must hold the unstored result, so that is a
//                        violation).
//   failover-lost-write  a failover without durability ended after A started and began before B
//                        started; A has no `stored` record after the failover (a result stored
//                        before it may have been lost with the old primary).
//   memory-restart       MemoryStore scenario only: A's process exited (any way) after A started
//                        and before B started.
//   rolled-back          Postgres scenarios only: A left no committed effect row (its transaction
//                        rolled back: a kill, a terminated connection, a lost claim), so A did not
//                        happen as far as the database is concerned. Committed effects are judged
//                        on their own (duplicate-effect), with no window.
'use strict';

const WINDOWS = ['crash', 'paused-holder', 'store-outage', 'failover-lost-write', 'memory-restart', 'rolled-back'];
// Results that were stored and then lost: only these windows excuse two different 2xx bodies.
const LOST_RESULT_WINDOWS = new Set(['failover-lost-write', 'memory-restart']);
// Slack for "after A started": a signal is logged just before it is sent, and Date.now() has 1 ms steps.
const EPSILON_MS = 5;
// How far around a violation's executions the details show nemesis events.
const CONTEXT_MS = 4_000;

/**
 * @typedef {object} Scenario
 * @property {string} name
 * @property {'valkey' | 'memory' | 'postgres'} store
 * @property {number} leaseMs
 * @property {number} commandTimeoutMs
 * @property {boolean} durable claims and completions wait for a replica (failovers lose nothing acknowledged)
 */

/**
 * @typedef {object} Execution
 * @property {string} execution
 * @property {string | null} key
 * @property {string} instance
 * @property {number} pid
 * @property {string} proc `instance:pid`, one process incarnation
 * @property {string | null} token
 * @property {string | null} nonce
 * @property {number} start
 * @property {number | null} end
 * @property {{ time: number, token: string, nonce: string | null, proc: string }[]} stored
 */

const procOf = (r) => `${r.instance}:${r.pid}`;

/** Executions by id, from the ledger's start, end and stored records. */
function executionsOf(ledger, anomalies) {
  /** @type {Map<string, Execution>} */
  const byId = new Map();
  for (const r of ledger) {
    if (r.type !== 'start') continue;
    if (byId.has(r.execution)) {
      anomalies.push(`execution id ${r.execution} started twice in the ledger`);
      continue;
    }
    byId.set(r.execution, {
      execution: r.execution,
      key: r.key,
      instance: r.instance,
      pid: r.pid,
      proc: procOf(r),
      token: r.token ?? null,
      nonce: r.nonce ?? null,
      start: r.time,
      end: null,
      stored: [],
    });
  }
  for (const r of ledger) {
    if (r.type === 'end') {
      const e = byId.get(r.execution);
      if (e) e.end = r.time;
    } else if (r.type === 'stored') {
      let e = r.execution ? byId.get(r.execution) : undefined;
      // A stored body without an execution id: match the claim by key, token and nonce.
      if (!e && !r.execution) {
        e = [...byId.values()].find((x) => x.key === r.key && x.token === r.token && x.nonce === r.nonce);
      }
      if (e) e.stored.push({ time: r.time, token: r.token, nonce: r.nonce ?? null, proc: procOf(r) });
      else anomalies.push(`stored record for key ${r.key} names no execution in the ledger`);
    }
  }
  return byId;
}

/** The nemesis log sorted into the kinds of evidence the windows need. */
function evidenceOf(nemesis, scenario) {
  const span = (e) => ({ ...e, end: e.end ?? Number.POSITIVE_INFINITY });
  const crashes = [];
  const pauses = [];
  const outages = [];
  const failovers = [];
  const exits = [];
  for (const e of nemesis) {
    switch (e.kind) {
      case 'app-kill':
        crashes.push(e);
        break;
      case 'app-exit':
        exits.push(e);
        // An exit the harness did not ask for is a crash too.
        if (!e.expected) crashes.push(e);
        break;
      case 'app-pause':
        pauses.push(span(e));
        break;
      case 'valkey-pause':
      case 'proxy-blackhole':
        outages.push(span(e));
        break;
      case 'proxy-drop':
        if (e.rate >= 1) outages.push(span(e));
        break;
      case 'proxy-delay':
        if (e.delayMs >= scenario.commandTimeoutMs) outages.push(span(e));
        break;
      case 'failover':
        failovers.push(span(e));
        break;
      default:
        break;
    }
  }
  return { crashes, pauses, outages, failovers, exits };
}

/**
 * Every window the pair (a earlier, b later) fits, in the order of WINDOWS. `committed`: the
 * executions with a committed effect row (Postgres scenarios; undefined elsewhere).
 */
function windowsFor(a, b, evidence, scenario, committed) {
  const found = [];
  const lease = scenario.leaseMs;
  const unstored = a.stored.length === 0;
  const otherProcess = a.proc !== b.proc;
  const sameProc = (e) => e.instance === a.instance && e.pid === a.pid;
  if (
    unstored &&
    otherProcess &&
    evidence.crashes.some((e) => sameProc(e) && e.time >= a.start - EPSILON_MS && e.time <= b.start)
  ) {
    found.push('crash');
  }
  if (
    otherProcess &&
    evidence.pauses.some(
      (p) =>
        sameProc(p) &&
        p.end - p.start >= lease &&
        p.start >= a.start - EPSILON_MS &&
        p.start <= b.start &&
        a.stored.every((s) => s.time >= p.start - EPSILON_MS),
    )
  ) {
    found.push('paused-holder');
  }
  if (
    a.stored.every((st) => st.time > b.start) &&
    otherProcess &&
    evidence.outages.some((o) => o.end - o.start >= lease && o.start <= b.start && o.end >= a.start)
  ) {
    found.push('store-outage');
  }
  if (
    !scenario.durable &&
    evidence.failovers.some(
      (f) =>
        !f.durable && f.end >= a.start - EPSILON_MS && f.start <= b.start && a.stored.every((s) => s.time <= f.end),
    )
  ) {
    found.push('failover-lost-write');
  }
  if (
    scenario.store === 'memory' &&
    otherProcess &&
    evidence.exits.some((e) => sameProc(e) && e.time >= a.start - EPSILON_MS && e.time <= b.start)
  ) {
    found.push('memory-restart');
  }
  if (scenario.store === 'postgres' && committed !== undefined && !committed.has(a.execution)) {
    found.push('rolled-back');
  }
  return found;
}

/** What a reader needs to debug a violation on `key`. */
function contextOf(key, execs, { history, nemesis, ledger }) {
  const times = execs.map((e) => e.start);
  const from = (times.length ? Math.min(...times) : 0) - CONTEXT_MS;
  const to = (times.length ? Math.max(...times) : 0) + CONTEXT_MS;
  const procs = new Set(execs.map((e) => e.proc));
  const overlaps = (e) => (e.time ?? e.start) <= to && (e.time ?? e.end ?? Number.POSITIVE_INFINITY) >= from;
  return {
    executions: execs,
    attempts: history.filter((a) => a.key === key),
    nemesis: times.length ? nemesis.filter(overlaps) : [],
    libraryEvents: ledger.filter((r) => r.type === 'event' && r.key === key),
    stalls: ledger.filter((r) => r.type === 'stall' && procs.has(procOf(r)) && r.to >= from && r.from <= to),
  };
}

/**
 * Judges one scenario.
 * @param {{ scenario: Scenario, ops: { op: number, key: string, result: string }[],
 *   history: import('./fleet').Attempt[], ledger: object[], nemesis: object[],
 *   effects?: { key: string, execution: string, instance: string }[] }} input
 *   `effects`: the committed rows of the Postgres scenarios' effects table
 */
function check({ scenario, ops, history, ledger, nemesis, effects }) {
  const anomalies = [];
  const executions = executionsOf(ledger, anomalies);
  const committed = effects === undefined ? undefined : new Set(effects.map((r) => r.execution));
  const evidence = evidenceOf(nemesis, scenario);
  const violations = [];
  const data = { history, nemesis, ledger };
  const violation = (kind, key, execs, detail) =>
    violations.push({ kind, key, detail, ...contextOf(key, execs, data) });

  /** @type {Map<string | null, Execution[]>} */
  const byKey = new Map();
  for (const e of executions.values()) {
    if (!byKey.has(e.key)) byKey.set(e.key, []);
    byKey.get(e.key).push(e);
  }
  for (const list of byKey.values()) list.sort((x, y) => x.start - y.start || x.proc.localeCompare(y.proc));

  const attemptsByKey = new Map();
  for (const a of history) {
    if (!attemptsByKey.has(a.key)) attemptsByKey.set(a.key, []);
    attemptsByKey.get(a.key).push(a);
  }
  const opKeys = new Set(ops.map((o) => o.key));

  // At most once: every later execution of a key fits a window against every earlier one.
  const duplicates = Object.fromEntries(WINDOWS.map((w) => [w, 0]));
  let duplicateCount = 0;
  for (const [key, list] of byKey) {
    for (let k = 1; k < list.length; k++) {
      const b = list[k];
      let unexplained;
      let counted;
      for (let i = 0; i < k; i++) {
        const fits = windowsFor(list[i], b, evidence, scenario, committed);
        if (fits.length === 0) {
          unexplained = list[i];
          break;
        }
        if (i === k - 1) counted = fits[0];
      }
      duplicateCount++;
      if (unexplained) {
        violation('executed-twice', key, list, {
          earlier: unexplained.execution,
          later: b.execution,
          sameProcess: unexplained.proc === b.proc,
        });
      } else {
        duplicates[counted]++;
      }
    }
  }

  // Every execution belongs to an operation a client sent, and not to one only ever refused.
  for (const [key, list] of byKey) {
    if (!opKeys.has(key)) {
      violation('unexpected-execution', key, list, { why: 'no client sent this key' });
      continue;
    }
    const attempts = attemptsByKey.get(key) ?? [];
    if (attempts.length > 0 && attempts.every((a) => a.outcome === 'fail')) {
      violation('unexpected-execution', key, list, { why: 'every attempt of this operation was refused (4xx)' });
    }
  }

  // Every 2xx: a well-formed body, for its own key, naming an execution that exists, stored before a
  // first answer was sent.
  const answered = new Map();
  let ok = 0;
  for (const a of history) {
    if (a.outcome !== 'ok') continue;
    ok++;
    const body = a.body;
    const execs = byKey.get(a.key) ?? [];
    if (body === null || typeof body !== 'object' || typeof body.execution !== 'string' || !('key' in body)) {
      violation('malformed-2xx', a.key, execs, { status: a.status, body });
      continue;
    }
    if (body.key !== a.key) {
      violation('wrong-key', a.key, execs, { bodyKey: body.key, execution: body.execution });
      continue;
    }
    const e = executions.get(body.execution);
    if (!e) {
      violation('phantom-2xx', a.key, execs, { execution: body.execution, instance: a.instance });
      continue;
    }
    if (e.key !== a.key) {
      violation('wrong-key', a.key, execs, { executionKey: e.key, execution: e.execution });
      continue;
    }
    if (!a.replayed && !e.stored.some((s) => s.time <= a.end)) {
      violation('unstored-answer', a.key, execs, { execution: e.execution, answeredAt: a.end, instance: a.instance });
    }
    if (!answered.has(a.key)) answered.set(a.key, new Map());
    answered.get(a.key).set(e.execution, e);
  }

  // One body per key, unless the earlier result was stored and then lost (failover, memory restart).
  let mismatched = 0;
  let mismatchedExcused = 0;
  for (const [key, seen] of answered) {
    if (seen.size < 2) continue;
    mismatched++;
    const list = [...seen.values()].sort((x, y) => x.start - y.start);
    let excused = true;
    for (let k = 1; k < list.length && excused; k++) {
      for (let i = 0; i < k && excused; i++) {
        const fits = windowsFor(list[i], list[k], evidence, scenario, committed);
        if (!fits.some((w) => LOST_RESULT_WINDOWS.has(w))) {
          excused = false;
          violation('different-bodies', key, byKey.get(key) ?? list, {
            executions: list.map((x) => x.execution),
            unexcused: [list[i].execution, list[k].execution],
            windows: fits,
          });
        }
      }
    }
    if (excused) mismatchedExcused++;
  }

  const effectCounts =
    effects === undefined ? undefined : checkEffects(effects, { executions, byKey, answered }, violation);

  const answeredExecutions = new Set();
  for (const seen of answered.values()) for (const id of seen.keys()) answeredExecutions.add(id);
  const status = (s) => history.filter((a) => a.status === s).length;
  const counts = {
    ops: ops.length,
    opsOk: ops.filter((o) => o.result === 'ok').length,
    givenUp: ops.filter((o) => o.result === 'gave-up').length,
    refused: ops.filter((o) => o.result === 'failed').length,
    attempts: history.length,
    ok,
    status409: status(409),
    status503: status(503),
    otherStatus: history
      .filter((a) => a.status !== null && !(a.status >= 200 && a.status < 300))
      .filter((a) => a.status !== 409 && a.status !== 503).length,
    info: history.filter((a) => a.outcome === 'info').length,
    fail: history.filter((a) => a.outcome === 'fail').length,
    noAnswer: history.filter((a) => a.status === null).length,
    executions: executions.size,
    unanswered: [...executions.keys()].filter((id) => !answeredExecutions.has(id)).length,
    duplicates: duplicateCount,
    windows: duplicates,
    mismatched,
    mismatchedExcused,
    ...(effectCounts === undefined ? {} : { effects: effectCounts }),
  };
  anomalies.push(...harnessNotes(ledger, nemesis, scenario));
  return { scenario: scenario.name, counts, violations, anomalies };
}

/**
 * The database's side of at-most-once (Postgres scenarios): per key, at most one committed effect
 * row, and exactly one, naming the execution the 2xx answers named, for every key that got a 2xx.
 * Answers counts for the summary.
 */
function checkEffects(effects, { executions, byKey, answered }, violation) {
  /** @type {Map<string, { key: string, execution: string, instance: string }[]>} */
  const rowsByKey = new Map();
  for (const row of effects) {
    if (!rowsByKey.has(row.key)) rowsByKey.set(row.key, []);
    rowsByKey.get(row.key).push(row);
    const e = executions.get(row.execution);
    if (e === undefined || e.key !== row.key) {
      violation('phantom-effect', row.key, byKey.get(row.key) ?? [], {
        execution: row.execution,
        instance: row.instance,
        ledgerKey: e?.key ?? null,
      });
    }
  }
  let duplicateKeys = 0;
  for (const [key, rows] of rowsByKey) {
    if (rows.length < 2) continue;
    duplicateKeys++;
    violation('duplicate-effect', key, byKey.get(key) ?? [], {
      rows: rows.length,
      executions: rows.map((r) => r.execution),
      instances: rows.map((r) => r.instance),
    });
  }
  let lost = 0;
  let mismatched = 0;
  for (const [key, seen] of answered) {
    const rows = rowsByKey.get(key) ?? [];
    if (rows.length === 0) {
      lost++;
      violation('lost-effect', key, byKey.get(key) ?? [], { answered: [...seen.keys()] });
      continue;
    }
    for (const execution of seen.keys()) {
      if (rows.some((r) => r.execution === execution)) continue;
      mismatched++;
      violation('effect-mismatch', key, byKey.get(key) ?? [], {
        answered: execution,
        committed: rows.map((r) => r.execution),
      });
    }
  }
  const committed = new Set(effects.map((r) => r.execution));
  return {
    rows: effects.length,
    keys: rowsByKey.size,
    duplicateKeys,
    lost,
    mismatched,
    // Executions whose transaction left nothing (rolled back, killed, terminated, taken over).
    rolledBack: [...executions.values()].filter((e) => !committed.has(e.execution)).length,
  };
}

/**
 * Things a reader should know when judging the verdict, none a violation by itself: app processes
 * that exited without being asked (a crash excuses duplicates, so say so), drains that had to be
 * killed, and event-loop stalls of half a lease or more that no SIGSTOP explains (a machine too
 * slow for the lease can lose leases without any fault).
 */
function harnessNotes(ledger, nemesis, scenario) {
  const notes = [];
  for (const e of nemesis) {
    if (e.kind === 'app-exit' && !e.expected) {
      notes.push(`app ${e.instance} pid ${e.pid} exited unasked (code ${e.code}, signal ${e.signal})`);
    }
    if (e.kind === 'app-kill' && e.reason === 'drain-timeout') {
      notes.push(`app ${e.instance} pid ${e.pid} did not finish its graceful shutdown in time and was killed`);
    }
  }
  const pauses = nemesis.filter((e) => e.kind === 'app-pause');
  for (const r of ledger) {
    if (r.type !== 'stall' || r.to - r.from < scenario.leaseMs / 2) continue;
    const stopped = pauses.some(
      (p) => p.instance === r.instance && p.pid === r.pid && p.start <= r.to && (p.end ?? Infinity) >= r.from,
    );
    if (!stopped)
      notes.push(`app ${r.instance} pid ${r.pid}: event loop stalled ${r.to - r.from} ms without a SIGSTOP`);
  }
  return notes;
}

module.exports = { check, windowsFor, evidenceOf, executionsOf, checkEffects, WINDOWS };
