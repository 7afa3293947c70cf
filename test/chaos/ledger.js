// The execution ledger: append-only JSON lines, one file per app process incarnation, written with
// appendFileSync so that every line is on disk before the code after it runs (a response is never
// sent before its `start` record), and nothing is lost when the process is SIGKILLed.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

class Ledger {
  /**
   * @param {string} dir the scenario's ledger dir
   * @param {string} instance the app instance id (stable across restarts)
   */
  constructor(dir, instance) {
    this.instance = instance;
    this.pid = process.pid;
    this.file = path.join(dir, `ledger-${instance}-${process.pid}.jsonl`);
  }

  /** Appends `record` with this process's instance, pid and the time. */
  append(record) {
    const line = JSON.stringify({ ...record, instance: this.instance, pid: this.pid, time: Date.now() });
    fs.appendFileSync(this.file, `${line}\n`);
  }
}

/** Every record of every ledger file in `dir`; a torn last line (a kill mid-write) is skipped. */
function readLedgers(dir) {
  const records = [];
  let torn = 0;
  for (const name of fs.readdirSync(dir).sort()) {
    if (!/^ledger-.*\.jsonl$/.test(name)) continue;
    for (const line of fs.readFileSync(path.join(dir, name), 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        records.push(JSON.parse(line));
      } catch {
        torn++;
      }
    }
  }
  return { records, torn };
}

module.exports = { Ledger, readLedgers };
