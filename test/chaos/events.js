// The nemesis log: every fault the harness injects, and every app process start and exit, with
// Date.now() times, as JSON lines (a file in the scenario's dir) and in memory for the checker.
// A fault is written when it ends, with its `start` and `end`; if the run dies mid-fault, `begin`
// has already written a record of it without an end.
'use strict';
const fs = require('node:fs');

class EventLog {
  constructor(file) {
    this.file = file;
    /** @type {object[]} */
    this.events = [];
  }

  #write(event) {
    fs.appendFileSync(this.file, `${JSON.stringify(event)}\n`);
  }

  /** A point event (`time`), e.g. an app process exit. */
  note(kind, fields = {}) {
    const event = { kind, time: Date.now(), ...fields };
    this.events.push(event);
    this.#write(event);
    return event;
  }

  /**
   * Starts a fault that lasts (`start` now); returns `end(extra)`, which sets `end` and records it.
   * Until then it is in `events` with `end: null`.
   */
  begin(kind, fields = {}) {
    const event = { kind, start: Date.now(), end: null, ...fields };
    this.events.push(event);
    this.#write({ ...event, phase: 'begin' });
    return (extra = {}) => {
      Object.assign(event, extra, { end: Date.now() });
      this.#write(event);
      return event;
    };
  }
}

module.exports = { EventLog };
