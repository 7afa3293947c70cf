// The app processes of a scenario: each "instance" is a slot (an id, a platform, a port) whose
// process can be killed, stopped, continued and restarted on the same port. Each incarnation is a
// new pid with its own ledger file and log file. Starts and exits go to the nemesis log, with
// whether the harness asked for the exit (an exit nobody asked for is evidence of a crash).
'use strict';
const { fork } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const procs = require('./procs');

const APP = path.join(__dirname, 'app.js');
const READY_TIMEOUT_MS = 60_000;
// A graceful stop that takes longer than this is ended with SIGKILL (and logged as a kill).
const DRAIN_TIMEOUT_MS = 20_000;

class Instance {
  constructor(apps, id, platform, port) {
    this.apps = apps;
    this.id = id;
    this.platform = platform;
    this.port = port;
    /** @type {import('node:child_process').ChildProcess | undefined} */
    this.child = undefined;
    this.incarnation = 0;
    /** What the harness asked of the current process: why it may exit. */
    this.expecting = null;
    this.stopped = false;
  }

  get pid() {
    return this.child?.pid;
  }

  get up() {
    return this.child !== undefined && procs.alive(this.child);
  }

  /** Starts a process for this slot and resolves once it listens. */
  async start() {
    const apps = this.apps;
    const config = { ...apps.appConfig, instance: this.id, platform: this.platform, port: this.port };
    const logFile = path.join(apps.dir, `app-${this.id}-${++this.incarnation}.log`);
    const out = fs.openSync(logFile, 'a');
    const child = procs.track(
      fork(APP, [], {
        env: { ...process.env, CHAOS_APP: JSON.stringify(config) },
        stdio: ['ignore', out, out, 'ipc'],
      }),
    );
    fs.closeSync(out);
    this.child = child;
    this.expecting = null;
    this.stopped = false;
    apps.log.note('app-spawn', { instance: this.id, pid: child.pid });
    child.once('exit', (code, signal) => {
      apps.log.note('app-exit', {
        instance: this.id,
        pid: child.pid,
        code,
        signal,
        expected: this.child === child ? this.expecting : 'replaced',
      });
    });
    await new Promise((resolve, reject) => {
      const done = (error) => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (error === undefined) return resolve();
        const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-3_000) : '';
        reject(
          new Error(`app ${this.id} (${this.platform}, port ${this.port}) did not start: ${error.message}\n${log}`),
        );
      };
      const onMessage = (message) => {
        if (message?.type === 'ready') done();
        else if (message?.type === 'failed') done(new Error(message.error));
      };
      const onExit = (code, signal) => done(new Error(`exited (${signal ?? code}) before it was ready`));
      const timer = setTimeout(() => done(new Error(`no ready message in ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
    apps.log.note('app-ready', { instance: this.id, pid: child.pid });
  }

  #exited() {
    const child = this.child;
    if (!child || !procs.alive(child)) return Promise.resolve();
    return new Promise((resolve) => child.once('exit', resolve));
  }

  /** SIGKILL now (a crash); resolves once the process is gone. */
  async kill(reason = 'nemesis') {
    if (!this.up) return;
    const exited = this.#exited();
    this.expecting = 'sigkill';
    this.apps.log.note('app-kill', { instance: this.id, pid: this.pid, reason });
    this.child.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM and wait for the graceful shutdown (SIGKILL after DRAIN_TIMEOUT_MS). */
  async terminate() {
    if (!this.up) return;
    const exited = this.#exited();
    this.expecting = 'sigterm';
    if (this.stopped) this.resume();
    this.apps.log.note('app-term', { instance: this.id, pid: this.pid });
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => void this.kill('drain-timeout'), DRAIN_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  /** SIGSTOP: the process keeps its sockets and answers nothing. */
  pause() {
    this.child.kill('SIGSTOP');
    this.stopped = true;
  }

  resume() {
    this.child.kill('SIGCONT');
    this.stopped = false;
  }
}

class Apps {
  /**
   * @param {object} options
   * @param {string} options.dir where app logs go (ledgers go to appConfig.ledgerDir)
   * @param {import('./events').EventLog} options.log
   * @param {object} options.appConfig what every app of the scenario shares (see app.js)
   * @param {{ id: string, platform: string, port: number }[]} options.slots
   */
  constructor({ dir, log, appConfig, slots }) {
    this.dir = dir;
    this.log = log;
    this.appConfig = appConfig;
    this.instances = slots.map((s) => new Instance(this, s.id, s.platform, s.port));
  }

  get(id) {
    return this.instances.find((i) => i.id === id);
  }

  async startAll() {
    await Promise.all(this.instances.map((i) => i.start()));
  }

  /** Graceful stop of every app at the end of a scenario (stopped ones are continued first). */
  async stopAll() {
    await Promise.all(this.instances.map((i) => i.terminate()));
  }
}

module.exports = { Apps };
