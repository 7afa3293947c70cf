// Shared helpers of the benchmark scripts: argument parsing, statistics, tables, and the check
// that the compiled library (dist/) has what a benchmark needs.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const ROOT = path.resolve(__dirname, '..', '..');
// The compiled library the benchmarks load: dist/, or another build (BENCH_DIST=/path/to/dist) to
// compare two versions on the same machine in the same hour.
const DIST = process.env.BENCH_DIST ? path.resolve(process.env.BENCH_DIST) : path.join(ROOT, 'dist');

/** `parseArgs` with a `--help` that prints `usage` and exits. */
function cli(usage, options) {
  let parsed;
  try {
    parsed = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: false });
  } catch (error) {
    console.error(`${error.message}\n\n${usage}`);
    process.exit(2);
  }
  if (parsed.values.help) {
    console.log(usage);
    process.exit(0);
  }
  return parsed.values;
}

/** A positive number from a command-line string, or exit with a message. */
function positive(name, text) {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`--${name} must be a positive number (got ${JSON.stringify(text)})`);
    process.exit(2);
  }
  return value;
}

/** A comma-separated list, checked against `allowed`. */
function list(name, text, allowed) {
  const items = String(text)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    if (!allowed.includes(item)) {
      console.error(`--${name}: unknown ${JSON.stringify(item)} (known: ${allowed.join(', ')})`);
      process.exit(2);
    }
  }
  return items;
}

function median(values) {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = xs.length >> 1;
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

function round(value, digits = 0) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** A plain text table: `columns` is [{ key, title, align: 'left' | 'right' }]. */
function table(rows, columns) {
  const cells = rows.map((row) =>
    columns.map((c) => (row[c.key] === null || row[c.key] === undefined ? '-' : String(row[c.key]))),
  );
  const widths = columns.map((c, i) => Math.max(c.title.length, ...cells.map((r) => r[i].length)));
  const pad = (text, i) => (columns[i].align === 'left' ? text.padEnd(widths[i]) : text.padStart(widths[i]));
  const line = (values) =>
    values
      .map((v, i) => pad(v, i))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.title)), line(widths.map((w) => '-'.repeat(w))), ...cells.map((r) => line(r))].join(
    '\n',
  );
}

/**
 * What dist/ offers: `{ lib, missing, reason }`. `lib` is the loaded module when it loads;
 * `missing` lists the wanted exports it does not have.
 */
function loadLibrary(wanted) {
  if (!fs.existsSync(path.join(DIST, 'index.js'))) {
    return { lib: undefined, missing: wanted, reason: 'dist/ is missing: build the library first (npm run build)' };
  }
  let lib;
  try {
    lib = require(DIST);
  } catch (error) {
    return { lib: undefined, missing: wanted, reason: `dist/ does not load (${error.message}); rebuild it` };
  }
  const missing = wanted.filter((name) => lib[name] === undefined);
  const reason =
    missing.length === 0
      ? undefined
      : `dist/ has no ${missing.join(', ')} export: not available yet (build the library first, once it exists)`;
  return { lib, missing, reason };
}

/** Machine facts for reports. */
function machine() {
  const os = require('node:os');
  let model = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) model = m[1].trim();
  } catch {
    // not Linux
  }
  return { node: process.version, cpus: os.availableParallelism?.() ?? os.cpus().length, cpuModel: model };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = { ROOT, DIST, cli, positive, list, median, round, table, loadLibrary, machine, sleep };
