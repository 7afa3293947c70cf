// The client fleet: a few workers run a bounded number of operations against the app instances.
// Each operation is a fresh key and one fixed body for all its attempts; some are sent as 2-3
// duplicates at once ("lanes"). Every attempt goes to a random instance (stopped, restarting and
// paused ones included: sending there is part of the fault) with its own time limit, and is
// recorded in the history with its outcome, as in Jepsen:
//
//   ok    a 2xx (with the body),
//   fail  a definite refusal: a 4xx other than 409 (the request did nothing),
//   info  indeterminate: a timeout, a connection error, a 5xx, 409 (in flight) or 503; it may
//         have run, or may still run.
//
// A lane retries the same key and body after info (after Retry-After for 409 and 503) until a 2xx,
// a definite refusal, or its bound of attempts or time ("given up").
'use strict';
const http = require('node:http');
const { setTimeout: sleep } = require('node:timers/promises');

/**
 * @typedef {object} Attempt
 * @property {number} op
 * @property {string} key
 * @property {number} lane
 * @property {number} n attempt number within its lane (1, 2, ...)
 * @property {'load' | 'verify'} phase
 * @property {string} instance
 * @property {number} start
 * @property {number} end
 * @property {'ok' | 'fail' | 'info'} outcome
 * @property {number | null} status
 * @property {boolean} replayed the answer carried `Idempotent-Replayed: true`
 * @property {unknown} body the parsed JSON body of a 2xx (or its text when it is not JSON)
 * @property {string} [error] why an attempt got no answer
 */

/** A UUID v4 from the seeded stream, so a run's keys follow from its seed. */
function seededUuid(rng) {
  const hex = [];
  for (let i = 0; i < 32; i++) hex.push(rng.int(0, 15).toString(16));
  hex[12] = '4';
  hex[16] = ((rng.int(0, 15) & 0x3) | 0x8).toString(16);
  const s = hex.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

/** One HTTP attempt: resolves with the answer or the error; never rejects. */
function send(port, key, payload, timeoutMs) {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    // A fresh connection per attempt (agent: false): no keep-alive socket outlives a restart.
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/op',
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          'idempotency-key': key,
        },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          finish({
            status: res.statusCode,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', (error) => finish({ error: `response: ${error.code ?? error.message}` }));
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish({ error: `timeout after ${timeoutMs} ms` });
    }, timeoutMs);
    req.on('error', (error) => finish({ error: error.code ?? error.message }));
    req.end(payload);
  });
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Seconds of a Retry-After header, in ms (1 s when absent or odd). */
function retryAfterMs(headers) {
  const s = Number(headers?.['retry-after']);
  return Number.isFinite(s) && s >= 0 && s <= 30 ? s * 1_000 : 1_000;
}

class Fleet {
  /**
   * @param {object} options
   * @param {import('./random').Random} options.rng
   * @param {() => { id: string, port: number }[]} options.instances every instance, up or not
   * @param {object} options.limits see profiles.js `fleet`
   */
  constructor({ rng, instances, limits }) {
    this.rng = rng;
    this.instances = instances;
    this.limits = limits;
    /** @type {Attempt[]} */
    this.history = [];
    /** @type {{ op: number, key: string, body: object, lanes: number, result: string }[]} */
    this.ops = [];
    /** Attempts waiting for an answer, per instance id. */
    this.inFlight = new Map();
  }

  /** How many attempts are waiting for `instance` right now. */
  waitingOn(instance) {
    return this.inFlight.get(instance) ?? 0;
  }

  /**
   * Starts operations while `running()` (and fewer than `maxOps` started), `workers` at a time;
   * resolves when every started operation has ended.
   */
  async load(running) {
    const { workers, maxOps } = this.limits;
    const worker = async (w) => {
      const rng = this.rng.fork(`worker-${w}`);
      while (running() && this.ops.length < maxOps) {
        await this.#operation(rng);
      }
    };
    await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  }

  /**
   * After the faults: one more request for every operation that got a 2xx, as a final read. It must
   * replay the same body; a store that lost the result runs the key again, which the checker sees.
   */
  async verify() {
    const rng = this.rng.fork('verify');
    const done = this.ops.filter((op) => op.result === 'ok');
    // A seeded sample when there are many (the long profile): each read costs a request, and on a
    // MemoryStore after restarts a whole execution.
    while (done.length > this.limits.verifyMax) done.splice(rng.int(0, done.length - 1), 1);
    let next = 0;
    const worker = async () => {
      while (next < done.length) {
        const op = done[next++];
        await this.#lane(rng, op, 0, 'verify');
      }
    };
    await Promise.all(Array.from({ length: this.limits.workers }, () => worker()));
  }

  async #operation(rng) {
    const { delayMaxMs, duplicateChance } = this.limits;
    const id = this.ops.length + 1;
    const body = { op: id, delayMs: rng.int(0, delayMaxMs) };
    const lanes = rng.chance(duplicateChance) ? rng.int(2, 3) : 1;
    const op = { op: id, key: seededUuid(rng), body, lanes, result: 'pending' };
    this.ops.push(op);
    const laneRngs = Array.from({ length: lanes }, (_, i) => rng.fork(`op-${id}-lane-${i}`));
    const results = await Promise.all(laneRngs.map((laneRng, i) => this.#lane(laneRng, op, i + 1, 'load')));
    op.result = results.includes('ok') ? 'ok' : results.includes('fail') ? 'failed' : 'gave-up';
  }

  /** One lane: attempts with retries until a 2xx, a definite refusal, or the bound. */
  async #lane(rng, op, lane, phase) {
    const { maxAttempts, giveUpMs, attemptTimeoutMs } = this.limits;
    const payload = JSON.stringify(op.body);
    const started = Date.now();
    for (let n = 1; n <= maxAttempts && Date.now() - started < giveUpMs; n++) {
      const all = this.instances();
      const target = all[rng.int(0, all.length - 1)];
      const timeoutMs = rng.int(attemptTimeoutMs[0], attemptTimeoutMs[1]);
      const start = Date.now();
      this.inFlight.set(target.id, this.waitingOn(target.id) + 1);
      const answer = await send(target.port, op.key, payload, timeoutMs);
      this.inFlight.set(target.id, this.waitingOn(target.id) - 1);
      const end = Date.now();
      /** @type {Attempt} */
      const attempt = { op: op.op, key: op.key, lane, n, phase, instance: target.id, start, end };
      let pause;
      if (answer.error !== undefined) {
        Object.assign(attempt, { outcome: 'info', status: null, replayed: false, body: null, error: answer.error });
        // Backs off while the instance stays unreachable (a restart takes a second or more).
        pause = rng.int(50, 150) * 2 ** Math.min(n - 1, 4);
      } else {
        const status = answer.status;
        const outcome =
          status >= 200 && status < 300 ? 'ok' : status >= 400 && status < 500 && status !== 409 ? 'fail' : 'info';
        Object.assign(attempt, {
          outcome,
          status,
          replayed: answer.headers['idempotent-replayed'] === 'true',
          body: outcome === 'ok' ? parse(answer.text) : null,
          ...(outcome === 'fail' ? { error: answer.text.slice(0, 300) } : {}),
        });
        pause = status === 409 || status === 503 ? retryAfterMs(answer.headers) : rng.int(100, 300);
      }
      this.history.push(attempt);
      if (attempt.outcome !== 'info') return attempt.outcome;
      await sleep(pause);
    }
    return 'gave-up';
  }
}

module.exports = { Fleet, seededUuid, send };
