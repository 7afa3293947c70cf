// What each scenario runs, and how long and hard each profile pushes. Durations are ms.
'use strict';

// The app processes that share the Valkey store: two Express and one Fastify (the short profile
// runs the first two, one of each: three Nest start-ups per scenario cost seconds on 2 cores).
const VALKEY_APPS = [
  { id: 'e1', platform: 'express' },
  { id: 'f1', platform: 'fastify' },
  { id: 'e2', platform: 'express' },
];

// The Postgres scenarios' apps: the same mix, on one PostgreSQL (PostgresStore, handlers writing
// their effect row through @IdempotencyTransaction()).
const POSTGRES_APPS = VALKEY_APPS;

/**
 * Each scenario: the store, the apps, and the nemeses its schedule cycles through (in a seeded
 * order, each kind once before any repeats). See nemesis.js for what each nemesis does.
 */
const SCENARIOS = {
  memory: {
    describe: 'one Fastify app on a MemoryStore with waitMs; graceful and SIGKILL restarts',
    store: 'memory',
    apps: [{ id: 'm1', platform: 'fastify' }],
    waitMs: 1_500,
    nemeses: ['app-graceful', 'app-kill'],
  },
  'valkey-kill': {
    describe: 'SIGKILL of an app process mid-load, restarted on the same port',
    store: 'valkey',
    apps: VALKEY_APPS,
    nemeses: ['app-kill'],
  },
  'valkey-graceful': {
    describe: 'graceful restarts (SIGTERM, drain, start again) of app processes under load',
    store: 'valkey',
    apps: VALKEY_APPS,
    nemeses: ['app-graceful'],
  },
  'valkey-pause-app': {
    describe: 'SIGSTOP of an app process past the lease, then SIGCONT; half of them with a slow link',
    store: 'valkey',
    apps: VALKEY_APPS,
    nemeses: ['app-pause', 'app-pause-slow-link'],
  },
  'valkey-pause-store': {
    describe: 'SIGSTOP of the Valkey primary past the lease, then SIGCONT',
    store: 'valkey',
    apps: VALKEY_APPS,
    nemeses: ['valkey-pause'],
  },
  'valkey-proxy': {
    describe: 'the link to Valkey: delays (short and past the time limit), drops mid-command, blackholes',
    store: 'valkey',
    apps: VALKEY_APPS,
    nemeses: ['proxy-delay', 'proxy-delay-outage', 'proxy-drop', 'proxy-drop-outage', 'proxy-blackhole'],
  },
  'valkey-failover': {
    describe: 'failover to the replica (promote, move the proxy, old primary rejoins or is replaced)',
    store: 'valkey',
    apps: VALKEY_APPS,
    nemeses: ['failover-demote', 'failover-replace'],
  },
  'valkey-failover-durable': {
    describe: 'the same failovers with durability: { replicas: 1 }',
    store: 'valkey',
    apps: VALKEY_APPS,
    durability: { replicas: 1, timeoutMs: 300 },
    nemeses: ['failover-demote', 'failover-replace'],
  },
  'pg-kill': {
    describe:
      'PostgresStore, handlers writing an effect row in their transaction: SIGKILL of apps mid-transaction, pg_terminate_backend of app connections',
    store: 'postgres',
    apps: POSTGRES_APPS,
    nemeses: ['app-kill', 'pg-terminate'],
  },
  'pg-pause-app': {
    describe: 'PostgresStore, handlers in their transaction: SIGSTOP of an app process past the lease, then SIGCONT',
    store: 'postgres',
    apps: POSTGRES_APPS,
    nemeses: ['app-pause'],
  },
};

/**
 * `loadMs`: how long operations keep starting (at least until every nemesis kind ran once).
 * `maxApps`: how many of a scenario's app processes run.
 * `fleet`: see fleet.js. `nemesis`: the pause before the first fault and between faults, how far
 * past the lease store outages and app stops last, and how long the faults that are not outages
 * last.
 */
const PROFILES = {
  short: {
    leaseMs: 2_000,
    commandTimeoutMs: 1_000,
    loadMs: 2_500,
    maxApps: 2,
    fleet: {
      workers: 8,
      maxOps: 250,
      maxAttempts: 25,
      giveUpMs: 12_000,
      attemptTimeoutMs: [1_500, 8_000],
      delayMaxMs: 400,
      duplicateChance: 0.35,
      verifyMax: 250,
    },
    nemesis: {
      firstMs: [200, 500],
      gapMs: [100, 300],
      pastLeaseMs: [200, 500],
      appPauseMs: [700, 1_200],
      mildMs: [500, 1_500],
    },
  },
  long: {
    leaseMs: 2_000,
    commandTimeoutMs: 1_000,
    loadMs: 55_000,
    maxApps: 3,
    fleet: {
      workers: 8,
      maxOps: 2_500,
      maxAttempts: 40,
      giveUpMs: 20_000,
      attemptTimeoutMs: [1_500, 8_000],
      delayMaxMs: 400,
      duplicateChance: 0.35,
      verifyMax: 400,
    },
    nemesis: {
      firstMs: [500, 1_500],
      gapMs: [500, 2_000],
      pastLeaseMs: [400, 1_500],
      appPauseMs: [800, 2_500],
      mildMs: [1_000, 3_000],
    },
  },
};

module.exports = { SCENARIOS, PROFILES };
