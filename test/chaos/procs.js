// Every child process and temp dir the harness makes is registered here, and removed when the
// runner exits: normally, on an error, or on SIGINT/SIGTERM/SIGHUP. SIGKILL also ends a process
// that a nemesis left stopped (SIGSTOP), so nothing outlives the run.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();
/** @type {Set<string>} */
const dirs = new Set();
/** @type {Set<() => void>} */
const closers = new Set();
let keepDirs = false;

function alive(child) {
  return child.exitCode === null && child.signalCode === null;
}

/** Registers a child process: it is SIGKILLed when the runner goes away. */
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Registers something to close synchronously on the way out (servers, sockets). */
function onCleanup(close) {
  closers.add(close);
  return () => closers.delete(close);
}

/** A fresh temp dir, removed on exit (unless `keep(true)`). */
function tempDir(prefix, parent = os.tmpdir()) {
  const dir = fs.mkdtempSync(path.join(parent, prefix));
  dirs.add(dir);
  return dir;
}

function removeDir(dir) {
  dirs.delete(dir);
  if (!keepDirs) fs.rmSync(dir, { recursive: true, force: true });
}

/** Keep the temp dirs (for `--keep`: the ledgers and logs of a run stay for reading). */
function keep(value) {
  keepDirs = value;
}

function killAllNow() {
  for (const child of children) {
    if (alive(child)) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
  for (const close of closers) {
    try {
      close();
    } catch {
      // best effort
    }
  }
  closers.clear();
  if (!keepDirs) for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

let installed = false;
/** Installs the exit and signal handlers once. */
function installCleanup() {
  if (installed) return;
  installed = true;
  process.on('exit', killAllNow);
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ]) {
    process.once(signal, () => {
      console.error(`\nchaos: ${signal}: stopping every process the run started`);
      killAllNow();
      process.exit(code);
    });
  }
}

module.exports = { track, onCleanup, tempDir, removeDir, keep, killAllNow, installCleanup, alive };
