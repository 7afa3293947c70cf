// A process under valgrind's callgrind with instrumentation off until asked: the instructions it
// executes while a piece of work runs, a figure the machine's load does not move. Shared by
// bench/valkey-instructions.js (valkey-server) and bench/instructions.js (the variant servers).
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { HOST, freePort, findBinary, serverVersion } = require('./valkey');
const { sleep } = require('./common');

/** `{ valgrind, control }` paths, or throws with what to install. */
function callgrindBinaries() {
  const valgrind = findBinary('valgrind');
  const control = findBinary('callgrind_control');
  if (!valgrind || !control)
    throw new Error('valgrind (with callgrind_control) not found on PATH: apt-get install valgrind');
  return { valgrind, control };
}

/**
 * A temp dir for one process's dumps and the valgrind arguments that go before its command line:
 * `{ dir, args }`. Instrumentation starts off (`--instr-atstart=no`).
 */
function callgrindSetup(label, { separateThreads = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-callgrind-${label}-`));
  const args = ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${dir}/callgrind.out`];
  // One dump file per thread (`callgrind.out.<dump>-<thread>`, the main thread is 01): what the
  // main thread ran can then be told from V8's helper threads (concurrent compiler, GC helpers).
  if (separateThreads) args.push('--separate-threads=yes');
  return { dir, args };
}

/**
 * Counting on the valgrind process `pid` that writes its dumps to `dir`. `on()` zeroes the counters
 * and switches instrumentation on, `off()` switches it off, dumps and answers the instructions
 * executed in between: `instructions` (the dump's `totals:`, all threads) and `mainThread` (the
 * main thread's alone, when the process runs with `--separate-threads=yes`; else null).
 */
function callgrindCounter(pid, dir) {
  const { control } = callgrindBinaries();
  const ctl = (...a) => execFileSync(control, [...a, String(pid)], { stdio: 'ignore', timeout: 120_000 });
  let dumps = 0;
  return {
    on() {
      ctl('-z');
      ctl('-i', 'on');
    },
    off() {
      ctl('-i', 'off');
      const label = `workload-${++dumps}`;
      ctl('-d', label);
      // One file per dump, or one per thread and dump (`callgrind.out.<n>-<thread>`).
      const files = fs
        .readdirSync(dir)
        .filter((f) => f.startsWith('callgrind.out'))
        .map((f) => path.join(dir, f))
        .filter((f) => fs.readFileSync(f, 'utf8').includes(`dump ${label}\n`));
      if (files.length === 0) throw new Error(`no callgrind dump ${label} in ${dir}`);
      let instructions = 0;
      let mainThread = null;
      for (const f of files) {
        const text = fs.readFileSync(f, 'utf8');
        const totals = /^totals: (\d+)/m.exec(text);
        if (!totals) throw new Error(`no totals in ${f}`);
        instructions += Number(totals[1]);
        if (/^thread: 1$/m.test(text) && /-0*1$/.test(f)) mainThread = Number(totals[1]);
      }
      const file = files.find((f) => /-0*1$/.test(f)) ?? files[0];
      return { instructions, mainThread, file, files };
    },
    /** Instructions executed while `work` ran. */
    async count(work) {
      this.on();
      try {
        await work();
      } finally {
        this.last = this.off();
      }
      return this.last.instructions;
    },
  };
}

/** valkey-server under callgrind, instrumentation off until a workload starts. */
async function startValkeyUnderCallgrind() {
  const { valgrind } = callgrindBinaries();
  const bin = findBinary('valkey-server') ?? findBinary('redis-server');
  if (!bin) throw new Error('valkey-server (or redis-server) not found on PATH: install it (DESIGN.md section 5)');
  const { dir, args } = callgrindSetup('valkey');
  const port = await freePort();
  args.push(bin);
  // hz 1: the server's timer (expiry, statistics) runs once a second, not ten times.
  args.push('--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--hz', '1', '--dir', dir);
  const child = spawn(valgrind, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const kill = () => child.kill('SIGKILL');
  process.on('exit', kill);
  const Redis = require('ioredis');
  const url = `redis://${HOST}:${port}`;
  const admin = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  admin.on('error', () => undefined);
  for (let i = 0; ; i++) {
    try {
      await admin.connect();
      await admin.ping();
      break;
    } catch {
      admin.disconnect();
      if (i > 300 || child.exitCode !== null)
        throw new Error(`valkey-server under callgrind did not start: ${stderr.slice(-500)}`);
      await sleep(100);
    }
  }
  const counter = callgrindCounter(child.pid, dir);
  return {
    url,
    port,
    pid: child.pid,
    version: serverVersion(bin),
    admin,
    counter,
    /** Instructions valkey-server executed while `work` ran. */
    count: (work) => counter.count(work),
    async stop() {
      admin.disconnect();
      kill();
      process.removeListener('exit', kill);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { callgrindBinaries, callgrindSetup, callgrindCounter, startValkeyUnderCallgrind };
