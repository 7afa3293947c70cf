// How results are printed: one summary line per scenario, then every violation with what a reader
// needs to debug it (the key's executions, attempts, nearby faults, the library's own events).
'use strict';
const { WINDOWS } = require('./checker');

/** Seconds since the scenario's start, e.g. `+3.214s`. */
function at(t0, time) {
  if (time === null || time === undefined || !Number.isFinite(time)) return '?';
  return `${time >= t0 ? '+' : '-'}${(Math.abs(time - t0) / 1_000).toFixed(3)}s`;
}

const short = (id) => (typeof id === 'string' ? id.slice(0, 8) : String(id));

/** The scenario's summary line. */
function summaryLine(result) {
  const c = result.counts;
  if (c === undefined) return `chaos ${result.scenario}: HARNESS ERROR: ${result.error.split('\n')[0]}`;
  const unexplained = result.violations.filter((v) => v.kind === 'executed-twice').length;
  const parts = WINDOWS.filter((w) => c.windows[w] > 0).map((w) => `${w} ${c.windows[w]}`);
  if (unexplained > 0) parts.push(`unexplained ${unexplained}`);
  const dup = parts.length > 0 ? ` (${parts.join(', ')})` : '';
  const excused = c.mismatched > 0 ? ` (${c.mismatchedExcused} in windows)` : '';
  const e = c.effects;
  const effects =
    e === undefined
      ? ''
      : `, effects ${e.rows} (keys ${e.keys}, duplicate ${e.duplicateKeys}, lost ${e.lost}, ` +
        `mismatched ${e.mismatched}), rolled back ${e.rolledBack}`;
  return (
    `chaos ${result.scenario}: ops ${c.ops}, attempts ${c.attempts}, 2xx ${c.ok}, 409 ${c.status409}, ` +
    `503 ${c.status503}, executions ${c.executions}, duplicates ${c.duplicates}${dup}, ` +
    `mismatched replays ${c.mismatched}${excused}, given up ${c.givenUp}, indeterminate ${c.info}, ` +
    `executions without 2xx ${c.unanswered}${effects}, violations ${result.violations.length}` +
    (result.error ? ` (HARNESS ERROR: ${result.error.split('\n')[0]})` : '')
  );
}

function describeEvent(t0, e) {
  const when = e.time !== undefined ? at(t0, e.time) : `${at(t0, e.start)}..${at(t0, e.end)}`;
  const skip = new Set(['kind', 'time', 'start', 'end', 'phase']);
  const fields = Object.entries(e)
    .filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`)
    .join(' ');
  const length = e.time === undefined && Number.isFinite(e.end) ? ` (${e.end - e.start} ms)` : '';
  return `${when} ${e.kind}${length} ${fields}`;
}

/** Lines describing one violation. */
function violationLines(t0, v) {
  const out = [`  VIOLATION ${v.kind} key ${v.key}: ${JSON.stringify(v.detail)}`];
  out.push('    executions (ledger):');
  for (const e of v.executions) {
    const stored = e.stored.length
      ? e.stored.map((s) => `${at(t0, s.time)} token ${s.token} by ${s.proc}`).join('; ')
      : 'never';
    out.push(
      `      ${at(t0, e.start)}..${at(t0, e.end)} exec ${short(e.execution)} on ${e.instance} pid ${e.pid} ` +
        `token ${e.token} nonce ${short(e.nonce)}; stored: ${stored}`,
    );
  }
  out.push('    attempts (fleet):');
  for (const a of v.attempts) {
    const what =
      a.status === null
        ? a.error
        : `${a.status}${a.replayed ? ' replayed' : ''}${a.body?.execution ? ` exec ${short(a.body.execution)}` : ''}`;
    out.push(
      `      ${at(t0, a.start)}..${at(t0, a.end)} ${a.phase} lane ${a.lane} #${a.n} -> ${a.instance}: ${a.outcome} ${what}`,
    );
  }
  if (v.nemesis.length) {
    out.push('    nemesis log nearby:');
    for (const e of v.nemesis) out.push(`      ${describeEvent(t0, e)}`);
  }
  if (v.libraryEvents.length) {
    out.push('    library events (onEvent) for this key:');
    for (const r of v.libraryEvents) {
      out.push(
        `      ${at(t0, r.time)} ${r.instance} pid ${r.pid} ${r.event} token ${r.token}${r.error ? ` (${r.error})` : ''}`,
      );
    }
  }
  if (v.stalls.length) {
    out.push('    event-loop stalls of these processes:');
    for (const r of v.stalls) out.push(`      ${at(t0, r.from)}..${at(t0, r.to)} ${r.instance} pid ${r.pid}`);
  }
  return out;
}

/** The whole text report of one scenario. */
function scenarioReport(result) {
  const lines = [summaryLine(result)];
  if (result.error) lines.push(`  harness error: ${result.error}`);
  for (const v of result.violations ?? []) lines.push(...violationLines(result.t0, v));
  for (const a of result.anomalies ?? []) lines.push(`  note: ${a}`);
  return lines.join('\n');
}

module.exports = { summaryLine, scenarioReport, violationLines, at };
