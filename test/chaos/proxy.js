// The harness's own TCP proxy between the apps and "the primary". The apps' ioredis clients only
// know the proxy's port, so the proxy plays the role of a virtual IP: a failover points it at
// another server. It also makes the network misbehave, on command:
//
// - delay: every chunk waits `ms` before it is passed on (order kept, per direction);
// - drop: while on, a chunk is lost with probability `rate` and its connection closed both ways,
//   either after forwarding part of a request (the server never sees a whole command) or instead
//   of a reply (the server ran the command; the client must re-send it after reconnecting);
// - blackhole: nothing is passed either way and the sockets stay open (what a stalled link looks
//   like); when it ends, what was held flows on, as TCP retransmission would deliver it;
// - switchTo(port): new connections go to another server and every open one is closed, so the
//   clients reconnect there (a VIP moving on failover).
'use strict';
const net = require('node:net');
const { HOST } = require('./resp');
const procs = require('./procs');

/**
 * One direction of one connection: chunks wait in a FIFO until their time comes (the delay) and
 * the link is not blackholed, then go to `to`.
 */
class Pipe {
  constructor(proxy, to, onDrop, direction) {
    this.proxy = proxy;
    this.to = to;
    this.onDrop = onDrop;
    this.direction = direction;
    /** @type {{ at: number, chunk: Buffer }[]} */
    this.queue = [];
    this.timer = undefined;
  }

  push(chunk) {
    this.queue.push({ at: Date.now() + this.proxy.delayMs, chunk });
    this.pump();
  }

  pump() {
    if (this.timer !== undefined) return;
    while (this.queue.length > 0 && !this.proxy.blackholed) {
      const head = this.queue[0];
      const wait = head.at - Date.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, wait);
        return;
      }
      this.queue.shift();
      if (this.proxy.shouldDrop()) {
        this.drop(head.chunk);
        return;
      }
      if (!this.to.destroyed) this.to.write(head.chunk);
    }
  }

  drop(chunk) {
    this.proxy.stats.drops++;
    if (this.direction === 'request' && chunk.length > 1) {
      // Part of the request reaches the server: it waits for the rest, which never comes.
      const cut = 1 + Math.floor(this.proxy.random() * (chunk.length - 1));
      if (!this.to.destroyed) this.to.write(chunk.subarray(0, cut));
    }
    // A reply is lost whole: the server ran the command, the client never hears of it.
    this.queue.length = 0;
    this.onDrop();
  }

  clear() {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

class ChaosProxy {
  /**
   * @param {number} upstreamPort the primary's port
   * @param {() => number} random a seeded [0, 1) source (which chunks a drop window loses)
   */
  constructor(upstreamPort, random) {
    this.upstreamPort = upstreamPort;
    this.random = random;
    this.delayMs = 0;
    this.dropRate = 0;
    this.blackholed = false;
    /** @type {Set<{ client: net.Socket, upstream: net.Socket, pipes: Pipe[], close: () => void }>} */
    this.links = new Set();
    this.stats = { connections: 0, drops: 0, switches: 0 };
    this.server = net.createServer((client) => this.#accept(client));
  }

  async listen() {
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, HOST, resolve);
    });
    this.port = this.server.address().port;
    this.forget = procs.onCleanup(() => this.server.close());
    return this;
  }

  shouldDrop() {
    return this.dropRate > 0 && this.random() < this.dropRate;
  }

  #accept(client) {
    this.stats.connections++;
    client.setNoDelay(true);
    const upstream = net.connect({ host: HOST, port: this.upstreamPort });
    upstream.setNoDelay(true);
    const link = { client, upstream, pipes: [], close: () => undefined };
    const close = () => {
      if (!this.links.delete(link)) return;
      for (const pipe of link.pipes) pipe.clear();
      client.destroy();
      upstream.destroy();
    };
    link.close = close;
    link.pipes = [new Pipe(this, upstream, close, 'request'), new Pipe(this, client, close, 'reply')];
    this.links.add(link);
    if (this.blackholed) {
      client.pause();
      upstream.pause();
    }
    client.on('data', (chunk) => link.pipes[0].push(chunk));
    upstream.on('data', (chunk) => link.pipes[1].push(chunk));
    for (const socket of [client, upstream]) {
      socket.on('error', close);
      socket.on('close', close);
    }
  }

  /** Per-chunk delay in ms (0: none). */
  setDelay(ms) {
    this.delayMs = ms;
  }

  /** Probability that a chunk is dropped with its connection (0: none). */
  setDrop(rate) {
    this.dropRate = rate;
  }

  /** Stops (true) or resumes (false) passing bytes, keeping every socket open. */
  setBlackhole(on) {
    this.blackholed = on;
    for (const link of this.links) {
      for (const socket of [link.client, link.upstream]) {
        if (on) socket.pause();
        else socket.resume();
      }
      if (!on) for (const pipe of link.pipes) pipe.pump();
    }
  }

  /** New connections go to `port`; every open connection is closed. */
  switchTo(port) {
    this.upstreamPort = port;
    this.stats.switches++;
    for (const link of [...this.links]) link.close();
  }

  async close() {
    for (const link of [...this.links]) link.close();
    await new Promise((resolve) => this.server.close(() => resolve()));
    this.forget?.();
  }
}

async function startProxy(upstreamPort, random) {
  return new ChaosProxy(upstreamPort, random).listen();
}

module.exports = { startProxy, ChaosProxy };
