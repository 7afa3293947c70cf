// The store side of a chaos run: a Valkey primary and one replica (no persistence), each a
// valkey-server (or redis-server) child process on 127.0.0.1 with a free port and its own temp
// dir, and the failover moves between them. The apps never connect here directly: they talk to
// the harness's TCP proxy, which plays the primary's address (see proxy.js).
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');
const { HOST, command, info } = require('./resp');
const procs = require('./procs');

function findBinary() {
  for (const name of ['valkey-server', 'redis-server']) {
    for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
      const candidate = path.join(dir, name);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

/** A free TCP port on 127.0.0.1 (the kernel's pick). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * One server process. `replicaOf`: the primary's port, to start as its replica.
 * @returns {Promise<Server>}
 */
async function startServer(dir, name, replicaOf) {
  const bin = findBinary();
  if (!bin) throw new Error('valkey-server (or redis-server) is not on PATH: see .ci/install-servers.sh');
  const serverDir = path.join(dir, name);
  fs.mkdirSync(serverDir, { recursive: true });
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const args = ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no'];
    args.push('--dir', serverDir, '--daemonize', 'no', '--maxmemory-policy', 'noeviction', '--logfile', '');
    // A replica's first sync at once (the default waits seconds for more replicas to join).
    args.push('--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0');
    if (replicaOf !== undefined) args.push('--replicaof', HOST, String(replicaOf));
    const out = fs.openSync(path.join(serverDir, 'server.log'), 'a');
    const child = procs.track(spawn(bin, args, { stdio: ['ignore', out, out] }));
    fs.closeSync(out);
    const server = new Server(name, port, child, serverDir);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && procs.alive(child)) {
      try {
        await command(port, ['PING'], 500);
        return server;
      } catch {
        await sleep(50);
      }
    }
    await server.kill();
    if (attempt >= 3) {
      const log = fs.readFileSync(path.join(serverDir, 'server.log'), 'utf8').slice(-2_000);
      throw new Error(`${path.basename(bin)} ${name} did not start on port ${port}:\n${log}`);
    }
  }
}

class Server {
  constructor(name, port, child, dir) {
    this.name = name;
    this.port = port;
    this.child = child;
    this.pid = child.pid;
    this.dir = dir;
  }

  get alive() {
    return procs.alive(this.child);
  }

  pause() {
    this.child.kill('SIGSTOP');
  }

  resume() {
    this.child.kill('SIGCONT');
  }

  /** SIGKILL, as a crash. Resolves once the process is gone. */
  async kill() {
    if (!this.alive) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM (after SIGCONT, in case a nemesis left it stopped); SIGKILL after 5 s. */
  async stop() {
    if (!this.alive) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGCONT');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  command(args, timeoutMs) {
    return command(this.port, args, timeoutMs);
  }

  /** Resolves once this replica's link to its primary is up and it has synced. */
  async waitLinkUp(timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    let last = {};
    while (Date.now() < deadline) {
      try {
        last = await info(this.port, 'replication', 1_000);
        if (last.master_link_status === 'up' && last.master_sync_in_progress === '0') return;
      } catch {
        // not answering yet
      }
      await sleep(50);
    }
    throw new Error(`replica ${this.name} (port ${this.port}) did not sync: ${JSON.stringify(last)}`);
  }
}

/**
 * A primary and its replica. `failover()` promotes the replica and then either demotes the old
 * primary to be the new one's replica, or kills it and starts a fresh replica: either way there is
 * again one primary with one replica in sync, ready for the next failover.
 */
class ValkeyPair {
  static async start(dir) {
    const pair = new ValkeyPair(dir);
    pair.primary = await startServer(dir, pair.#nextName());
    pair.replica = await startServer(dir, pair.#nextName(), pair.primary.port);
    await pair.replica.waitLinkUp();
    return pair;
  }

  #count = 0;

  constructor(dir) {
    this.dir = dir;
    /** @type {Server} */
    this.primary = undefined;
    /** @type {Server} */
    this.replica = undefined;
  }

  #nextName() {
    return `valkey-${++this.#count}`;
  }

  /** Step 1 of a failover: the replica stops replicating and takes writes. */
  async promote() {
    await this.replica.command(['REPLICAOF', 'NO', 'ONE']);
  }

  /**
   * Step 3 (after the proxy moved to the promoted replica): the old primary becomes a replica of the
   * new one (`demote`), or is killed and replaced by a fresh replica (`replace`). Its writes that
   * had not reached the replica are gone either way.
   */
  async rejoin(mode) {
    const oldPrimary = this.primary;
    this.primary = this.replica;
    if (mode === 'demote') {
      await oldPrimary.command(['REPLICAOF', HOST, String(this.primary.port)]);
      this.replica = oldPrimary;
    } else {
      await oldPrimary.kill();
      this.replica = await startServer(this.dir, this.#nextName(), this.primary.port);
    }
    await this.replica.waitLinkUp();
  }

  async stop() {
    await Promise.all([this.primary?.stop(), this.replica?.stop()]);
  }
}

module.exports = { ValkeyPair, startServer, freePort, findBinary };
