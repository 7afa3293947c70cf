// The nemesis: a seeded schedule of faults, run one at a time while the fleet keeps sending. Each
// fault is logged with Date.now() start and end (events.js), and heals itself in a `finally`, so
// a failing step never leaves an app stopped or the link cut for the rest of the run.
//
// The kinds (a scenario lists the ones it runs, see profiles.js):
//   app-kill              SIGKILL an app process, restart it on the same port
//   app-graceful          SIGTERM an app process, wait for its drain and exit, start it again
//   app-pause             SIGSTOP an app process for well over the lease, then SIGCONT
//   app-pause-slow-link   the same, while the proxy delays every chunk (so claims are in flight
//                         when the process stops: a claim answered while it sleeps, on a lease
//                         that runs out before it wakes)
//   valkey-pause          SIGSTOP the Valkey primary for longer than the lease, then SIGCONT
//   proxy-delay           the proxy delays each chunk by 20-250 ms for a while (slow, not down)
//   proxy-delay-outage    each chunk delayed past the store's command time limit, for longer than
//                         the lease (the store is unreachable)
//   proxy-drop            for a time shorter than the lease, a chunk is lost with its connection
//                         with probability 0.1-0.5 (a fault the library must ride out)
//   proxy-drop-outage     every chunk is lost with its connection, for longer than the lease
//   proxy-blackhole       nothing passes (sockets stay open) for longer than the lease
//   failover-demote       promote the replica, point the proxy at it, the old primary replicates it
//   failover-replace      promote the replica, point the proxy at it, kill the old primary and
//                         start a fresh replica
//   pg-terminate          Postgres: for a while, every 100-400 ms pg_terminate_backend of 1-3 app
//                         connections picked by the seed (those in a transaction first, when the
//                         draw says so): claims, handlers' transactions and commits lose their
//                         connection midway
'use strict';
const { setTimeout: sleep } = require('node:timers/promises');

/**
 * @typedef {object} NemesisContext
 * @property {import('./apps').Apps} apps
 * @property {import('./valkey').ValkeyPair | undefined} pair
 * @property {import('./proxy').ChaosProxy | undefined} proxy
 * @property {import('./postgres').PostgresServer | undefined} postgres
 * @property {import('./events').EventLog} log
 * @property {import('./fleet').Fleet} fleet
 * @property {{ leaseMs: number, commandTimeoutMs: number, nemesis: Record<string, number[]> }} profile
 * @property {{ durability?: object }} scenario
 */

/**
 * The app instance to hit: the one with the most requests in flight (ties broken by the seed), so
 * that a kill or a stop lands on executions under way rather than on an idle process.
 */
function target(ctx, rng) {
  const candidates = ctx.apps.instances.filter((i) => i.up);
  const most = Math.max(...candidates.map((i) => ctx.fleet.waitingOn(i.id)));
  return rng.pick(candidates.filter((i) => ctx.fleet.waitingOn(i.id) === most));
}

/** How long an outage lasts: past the lease by a seeded margin. */
function pastLease(ctx, rng) {
  const [min, max] = ctx.profile.nemesis.pastLeaseMs;
  return ctx.profile.leaseMs + rng.int(min, max);
}

async function pauseApp(ctx, rng, slowLink) {
  let endDelay;
  if (slowLink) {
    const delayMs = rng.int(100, 300);
    endDelay = ctx.log.begin('proxy-delay', { delayMs });
    ctx.proxy.setDelay(delayMs);
    // Let claims pile up in the slow link before the stop.
    await sleep(rng.int(200, 600));
  }
  const instance = target(ctx, rng);
  // Longer past the lease than the store outages: room for another instance to take a held key
  // over, and for a client still waiting on the stopped process to hear what it says on waking.
  const [min, max] = ctx.profile.nemesis.appPauseMs;
  const ms = ctx.profile.leaseMs + rng.int(min, max);
  const end = ctx.log.begin('app-pause', { instance: instance.id, pid: instance.pid, plannedMs: ms });
  instance.pause();
  try {
    await sleep(ms);
  } finally {
    instance.resume();
    end();
    if (slowLink) {
      ctx.proxy.setDelay(0);
      endDelay();
    }
  }
}

/** Proxy settings held for a while, then undone. */
async function proxyWindow(ctx, kind, fields, ms, apply, undo) {
  const end = ctx.log.begin(kind, { ...fields, plannedMs: ms });
  apply();
  try {
    await sleep(ms);
  } finally {
    undo();
    end();
  }
}

async function failover(ctx, rng, mode) {
  const { pair, proxy, log } = ctx;
  const durable = ctx.scenario.durability !== undefined;
  const end = log.begin('failover', {
    mode,
    durable,
    from: { port: pair.primary.port, pid: pair.primary.pid },
    to: { port: pair.replica.port, pid: pair.replica.pid },
  });
  try {
    await pair.promote();
    // Writes still reaching the old primary until the proxy moves are the ones a failover loses.
    await sleep(rng.int(0, 50));
    proxy.switchTo(pair.replica.port);
    end({ switchedAt: Date.now() });
  } catch (error) {
    end({ error: error.message });
    throw error;
  }
  const rejoin = log.begin('replica-rejoin', { mode });
  try {
    await pair.rejoin(mode);
  } finally {
    rejoin({ replica: { port: pair.replica.port, pid: pair.replica.pid } });
  }
}

/**
 * Terminates app connections to PostgreSQL for a while. Which ones is up to the seed among those
 * open at that moment; half of the rounds pick among connections inside a transaction only (a
 * handler's, or a commit), when there are some.
 */
async function terminateBackends(ctx, rng) {
  const [min, max] = ctx.profile.nemesis.mildMs;
  const ms = rng.int(min, max);
  const end = ctx.log.begin('pg-terminate', { plannedMs: ms });
  const until = Date.now() + ms;
  const terminated = [];
  try {
    while (Date.now() < until) {
      const inTransaction = rng.chance(0.5);
      const { rows } = await ctx.postgres.query(
        `SELECT pid, application_name AS app, state FROM pg_stat_activity
         WHERE application_name LIKE 'chaos-%' AND pid <> pg_backend_pid() ORDER BY pid`,
      );
      const open = rows.filter((r) => r.state === 'idle in transaction' || r.state === 'active');
      const pool = inTransaction && open.length > 0 ? open : rows;
      const count = Math.min(pool.length, rng.int(1, 3));
      const picked = [];
      const left = [...pool];
      for (let i = 0; i < count; i++) picked.push(left.splice(rng.int(0, left.length - 1), 1)[0]);
      if (picked.length > 0) {
        await ctx.postgres.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [
          picked.map((r) => r.pid),
        ]);
        for (const r of picked) terminated.push(`${r.app.slice('chaos-'.length)}:${r.pid}:${r.state}`);
      }
      await sleep(rng.int(100, 400));
    }
  } finally {
    end({ terminated: terminated.length, backends: terminated.join(' ') });
  }
}

/** @type {Record<string, (ctx: NemesisContext, rng: import('./random').Random) => Promise<void>>} */
const ACTIONS = {
  'app-kill': async (ctx, rng) => {
    const instance = target(ctx, rng);
    await instance.kill();
    await sleep(rng.int(0, 500));
    await instance.start();
  },
  'app-graceful': async (ctx, rng) => {
    const instance = target(ctx, rng);
    await instance.terminate();
    await instance.start();
  },
  'app-pause': (ctx, rng) => pauseApp(ctx, rng, false),
  'app-pause-slow-link': (ctx, rng) => pauseApp(ctx, rng, true),
  'valkey-pause': async (ctx, rng) => {
    const server = ctx.pair.primary;
    const ms = pastLease(ctx, rng);
    const end = ctx.log.begin('valkey-pause', { server: server.name, pid: server.pid, plannedMs: ms });
    server.pause();
    try {
      await sleep(ms);
    } finally {
      server.resume();
      end();
    }
  },
  'proxy-delay': (ctx, rng) => {
    const delayMs = rng.int(20, 250);
    return proxyWindow(
      ctx,
      'proxy-delay',
      { delayMs },
      rng.int(ctx.profile.nemesis.mildMs[0], ctx.profile.nemesis.mildMs[1]),
      () => ctx.proxy.setDelay(delayMs),
      () => ctx.proxy.setDelay(0),
    );
  },
  'proxy-delay-outage': (ctx, rng) => {
    const delayMs = ctx.profile.commandTimeoutMs + rng.int(200, 800);
    return proxyWindow(
      ctx,
      'proxy-delay',
      { delayMs },
      pastLease(ctx, rng),
      () => ctx.proxy.setDelay(delayMs),
      () => ctx.proxy.setDelay(0),
    );
  },
  'proxy-drop': (ctx, rng) => {
    const rate = rng.int(10, 50) / 100;
    return proxyWindow(
      ctx,
      'proxy-drop',
      { rate },
      rng.int(500, ctx.profile.leaseMs - 300),
      () => ctx.proxy.setDrop(rate),
      () => ctx.proxy.setDrop(0),
    );
  },
  'proxy-drop-outage': (ctx, rng) =>
    proxyWindow(
      ctx,
      'proxy-drop',
      { rate: 1 },
      pastLease(ctx, rng),
      () => ctx.proxy.setDrop(1),
      () => ctx.proxy.setDrop(0),
    ),
  'proxy-blackhole': (ctx, rng) =>
    proxyWindow(
      ctx,
      'proxy-blackhole',
      {},
      pastLease(ctx, rng),
      () => ctx.proxy.setBlackhole(true),
      () => ctx.proxy.setBlackhole(false),
    ),
  'failover-demote': (ctx, rng) => failover(ctx, rng, 'demote'),
  'failover-replace': (ctx, rng) => failover(ctx, rng, 'replace'),
  'pg-terminate': (ctx, rng) => terminateBackends(ctx, rng),
};

/** `items` in a seeded order. */
function shuffled(rng, items) {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * Runs faults one after another until `loadDeadline`, and at least until each of the scenario's
 * kinds ran once (and two faults ran). Resolves with the number of faults run.
 * @param {NemesisContext} ctx
 * @param {import('./random').Random} rng
 */
async function runNemesis(ctx, rng, kinds, loadDeadline) {
  for (const kind of kinds) if (!ACTIONS[kind]) throw new Error(`unknown nemesis ${kind}`);
  const { firstMs, gapMs } = ctx.profile.nemesis;
  await sleep(rng.int(firstMs[0], firstMs[1]));
  const least = Math.max(kinds.length, 2);
  let order = [];
  let count = 0;
  while (count < least || Date.now() < loadDeadline) {
    if (order.length === 0) order = shuffled(rng, kinds);
    const kind = order.shift();
    await ACTIONS[kind](ctx, rng);
    count++;
    if (count >= least && Date.now() >= loadDeadline) break;
    await sleep(rng.int(gapMs[0], gapMs[1]));
  }
  return count;
}

module.exports = { runNemesis, ACTIONS };
