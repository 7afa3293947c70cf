// Summarises a V8 .cpuprofile (from `node bench/http.js --profile`, or any `node --cpu-prof`):
// the functions with the most self time, self time by package or file, and the inclusive time of
// this library's own functions (dist/).
//
//   node bench/profile.js bench/results/profiles/express-ours-memory-r1-123.cpuprofile [--top 25]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { cli, positive, table, ROOT } = require('./lib/common');

const USAGE = `usage: node bench/profile.js <file.cpuprofile>... [--top N] [--callers NAME]

  --top N        rows per table (default 25)
  --callers NAME also list the call paths (5 frames up) that lead to functions named NAME`;
const args = process.argv.slice(2);
const files = args.filter((a, i) => !a.startsWith('--') && !['--top', '--callers'].includes(args[i - 1]));
process.argv = [process.argv[0], process.argv[1], ...args.filter((a) => !files.includes(a))];
const opts = cli(USAGE, { top: { type: 'string', default: '25' }, callers: { type: 'string' } });
const TOP = Math.round(positive('top', opts.top));
if (files.length === 0) {
  console.error(USAGE);
  process.exit(2);
}

function where(url) {
  if (!url) return '(native)';
  const file = url.startsWith('file://') ? url.slice(7) : url;
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = file.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (file.startsWith('node:')) return 'node:internal';
  return path.relative(ROOT, file) || file;
}

function label(frame) {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  const file = frame.url.startsWith('file://') ? frame.url.slice(7) : frame.url;
  const short = file.includes('node_modules/')
    ? file.slice(file.lastIndexOf('node_modules/') + 13)
    : path.relative(ROOT, file);
  return `${name} ${short}:${frame.lineNumber + 1}`;
}

function summarise(file) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map();
  const inclusive = new Map();
  const callers = new Map();
  const byWhere = new Map();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const node = byId.get(id);
    const name = node.callFrame.functionName;
    total += dt;
    if (name === '(idle)' || name === '(program)') {
      if (name === '(idle)') idle += dt;
    }
    const key = label(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + dt);
    const w = name.startsWith('(') ? name : where(node.callFrame.url);
    byWhere.set(w, (byWhere.get(w) ?? 0) + dt);
    if (opts.callers && name === opts.callers) {
      const chain = [];
      for (let cur = parent.get(id); cur !== undefined && chain.length < 5; cur = parent.get(cur)) {
        chain.push(label(byId.get(cur).callFrame));
      }
      const k = chain.join(' < ');
      callers.set(k, (callers.get(k) ?? 0) + dt);
    }
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur).callFrame;
      if (!frame.url.includes('/dist/') || frame.url.includes('node_modules')) continue;
      const k = label(frame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
  });
  const busy = total - idle;
  const pct = (v) => `${((v / busy) * 100).toFixed(1)}%`;
  const ms = (v) => (v / 1000).toFixed(0);
  const top = (map) =>
    [...map.entries()]
      .filter(([k]) => k !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP);
  console.log(`\n${file}: ${ms(total)} ms sampled, ${ms(busy)} ms busy (percentages are of busy time)\n`);
  console.log('Self time by function');
  console.log(
    table(
      top(self).map(([k, v]) => ({ fn: k, ms: ms(v), pct: pct(v) })),
      [
        { key: 'pct', title: 'self' },
        { key: 'ms', title: 'ms' },
        { key: 'fn', title: 'function', align: 'left' },
      ],
    ),
  );
  console.log('\nSelf time by package or file');
  console.log(
    table(
      top(byWhere).map(([k, v]) => ({ w: k, ms: ms(v), pct: pct(v) })),
      [
        { key: 'pct', title: 'self' },
        { key: 'ms', title: 'ms' },
        { key: 'w', title: 'where', align: 'left' },
      ],
    ),
  );
  if (callers.size > 0) {
    console.log(`\nCall paths into ${opts.callers} (self time)`);
    for (const [k, v] of top(callers)) console.log(`${pct(v).padStart(6)}  ${k}`);
  }
  if (inclusive.size > 0) {
    console.log('\nInclusive time of the library (dist/) functions');
    console.log(
      table(
        top(inclusive).map(([k, v]) => ({ fn: k, ms: ms(v), pct: pct(v) })),
        [
          { key: 'pct', title: 'total' },
          { key: 'ms', title: 'ms' },
          { key: 'fn', title: 'function', align: 'left' },
        ],
      ),
    );
  }
}

for (const file of files) summarise(file);
