/**
 * The docs' recipe for fencing a downstream write with the claim's token, run exactly as
 * printed (the SQL is read from docs/claims.md) against a real Postgres (PGlite, in a worker thread), and the
 * `@IdempotencyClaim()` parameter behind it, over real HTTP on Express and Fastify, on the memory
 * store and a real Valkey.
 */
import { Body, ConflictException, Controller, Headers, Inject, Post, Req } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import {
  FencingToken,
  IdempotencyClaim,
  type IdempotencyStore,
  Idempotent,
  LeaseLostError,
  MemoryStore,
  ValkeyStore,
} from '../../lib';
import { FaultyStore } from '../../lib/testing';
import { Postgres } from '../support/pglite';
import { startStandalone, type StandaloneServer, valkeyAvailable } from '../support/valkey-server';
import { freshPrefix } from '../valkey/helpers';
import { Executions, type Platform, startApp, type TestApp } from './http-app';

/** The SQL of the docs/claims.md block marked `<!-- recipe: fencing-sql -->`, as its statements. */
function recipeStatements(): { schema: string; fence: string } {
  const readme = readFileSync(join(__dirname, '../../docs/claims.md'), 'utf8');
  const marker = readme.indexOf('<!-- recipe: fencing-sql -->');
  expect(marker).toBeGreaterThan(-1);
  const block = /```sql\n([\s\S]*?)```/.exec(readme.slice(marker));
  expect(block).not.toBeNull();
  const statements = block![1]
    .split(/;\s*(?:--[^\n]*\n?)*/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0 && !s.split('\n').every((line) => line.trim().startsWith('--')));
  expect(statements).toHaveLength(2);
  const [schema, fence] = statements;
  expect(schema).toMatch(/^CREATE TABLE idempotency_fences/);
  expect(fence).toMatch(/^INSERT INTO idempotency_fences/);
  return { schema, fence };
}

const PLATFORMS: Platform[] = ['express', 'fastify'];
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const DB = Symbol('db');
const { schema, fence: FENCE_SQL } = recipeStatements();

// One Postgres for the file (it takes seconds to start): the recipe's table and a payments table.
let db: Postgres;

beforeAll(async () => {
  db = await Postgres.start();
  await db.exec(schema);
  await db.exec('CREATE TABLE payments (id serial PRIMARY KEY, amount integer NOT NULL)');
}, 60_000);

afterAll(async () => {
  await db?.close();
});

describe('the fencing recipe (docs/claims.md), on a real Postgres', () => {
  const write = async (storeKey: string, token: bigint | number) =>
    (await db.query(FENCE_SQL, [storeKey, String(token)])).affectedRows;

  it('lets the newest claim of a key write, refuses older and equal tokens of that key', async () => {
    expect(await write('key-a', 5)).toBe(1);
    expect(await write('key-a', 4)).toBe(0);
    expect(await write('key-a', 5)).toBe(0);
    expect(await write('key-a', 6)).toBe(1);
  });

  it('fences per key: a first claim (token 1) of other keys always writes', async () => {
    for (const key of ['key-b', 'key-c', 'key-d', 'key-e', 'key-f']) expect(await write(key, 1)).toBe(1);
  });

  it('holds every unsigned 64-bit token', async () => {
    expect(await write('key-max', (1n << 64n) - 2n)).toBe(1);
    expect(await write('key-max', (1n << 64n) - 1n)).toBe(1);
    expect(await write('key-max', (1n << 64n) - 2n)).toBe(0);
  });
});

interface Seen {
  token: FencingToken;
  signal: AbortSignal;
  /** Whether the signal had aborted when the handler started. */
  abortedAtStart: boolean;
}

@Controller('charges')
class ChargesController {
  static seen: Seen[] = [];
  static unguarded: unknown[] = [];

  constructor(
    @Inject(DB) private readonly db: Postgres,
    private readonly executions: Executions,
  ) {}

  @Post()
  @Idempotent({ required: true })
  async charge(
    @Body() dto: { amount: number },
    @IdempotencyClaim() claim: IdempotencyClaim,
    @Req() req: { headers: Record<string, string> },
    @Headers('x-ms') ms?: string,
  ) {
    this.executions.hit(claim.key.toString());
    ChargesController.seen.push({
      token: claim.fencingToken,
      signal: claim.signal,
      abortedAtStart: claim.signal.aborted,
    });
    expect(req.headers['idempotency-key']).toBe(claim.key.toString());
    await sleep(Number(ms ?? 0));
    // The README's handler, as printed.
    return this.db.transaction(async (tx) => {
      const fenced = await tx.query(FENCE_SQL, [claim.storeKey.toString(), claim.fencingToken.toString()]);
      if (fenced.affectedRows === 0) throw new ConflictException('superseded by a newer attempt');
      return tx.query('INSERT INTO payments (amount) VALUES ($1) RETURNING id', [dto.amount]);
    });
  }

  @Post('optional')
  @Idempotent()
  optional(@IdempotencyClaim() claim: IdempotencyClaim | undefined) {
    ChargesController.unguarded.push(claim);
    return { guarded: claim !== undefined };
  }

  @Post('bare')
  bare(@IdempotencyClaim() claim: IdempotencyClaim | undefined) {
    ChargesController.unguarded.push(claim);
    return { guarded: claim !== undefined };
  }
}

// The memory store always; a standalone Valkey too where valkey-server is installed.
const STORES: ('memory' | 'valkey')[] = valkeyAvailable() ? ['memory', 'valkey'] : ['memory'];
let valkey: StandaloneServer | undefined;
const valkeyClients: Redis[] = [];

afterAll(async () => {
  for (const client of valkeyClients) client.disconnect();
  await valkey?.stop();
});

async function storeOf(kind: 'memory' | 'valkey'): Promise<IdempotencyStore> {
  if (kind === 'memory') return new MemoryStore();
  valkey ??= await startStandalone();
  const client = new Redis({ host: valkey.host, port: valkey.port });
  valkeyClients.push(client);
  return new ValkeyStore(client, { prefix: freshPrefix('fence'), onWarning: () => undefined });
}

describe.each(PLATFORMS.flatMap((p) => STORES.map((s) => [p, s] as const)))(
  '@IdempotencyClaim() and the fenced write over HTTP on %s, %s store',
  (platform, storeKind) => {
    let store: FaultyStore;
    let t: TestApp;

    beforeAll(async () => {
      store = new FaultyStore(await storeOf(storeKind));
      t = await startApp(platform, {
        store,
        moduleOptions: { leaseMs: 200 },
        controllers: [ChargesController],
        providers: [{ provide: DB, useValue: db }],
      });
    }, 60_000);

    afterAll(async () => {
      await t?.close();
      await store?.close();
    });

    beforeEach(() => {
      ChargesController.seen = [];
      ChargesController.unguarded = [];
      store.heal();
    });

    it('hands the handler its claim: the client key, the scoped store key, the token the store issued', async () => {
      const key = randomUUID();
      const res = await t.client.post('/charges', {
        headers: { 'idempotency-key': key, 'x-user': 'alice' },
        body: { amount: 10 },
      });
      expect(res.status).toBe(201);
      const [seen] = ChargesController.seen;
      expect(seen.token.value).toBeGreaterThanOrEqual(1n);
      expect(seen.signal).toBeInstanceOf(AbortSignal);
      expect(seen.abortedAtStart).toBe(false);
      const stored = await db.query<{ store_key: string; fence: string }>(
        'SELECT store_key, fence FROM idempotency_fences WHERE fence = $1 AND store_key LIKE $2',
        [seen.token.toString(), `${key}/%`],
      );
      // The store key is the client key scoped to the principal.
      expect(stored.rows).toHaveLength(1);
      expect(stored.rows[0].store_key).not.toBe(key);
    });

    it("a stale holder (lease lost, taken over) is fenced off: one payment, its signal aborted, its client gets the taker's answer", async () => {
      const key = randomUUID();
      const before = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM payments')).rows[0].n;
      store.failNext('touch', undefined, Number.POSITIVE_INFINITY); // no renewals: the first lease runs out
      const slow = t.client.post('/charges', {
        headers: { 'idempotency-key': key, 'x-ms': '600' },
        body: { amount: 10 },
      });
      await sleep(320);
      const taker = await t.client.post('/charges', { headers: { 'idempotency-key': key }, body: { amount: 10 } });
      expect(taker.status).toBe(201);
      const first = await slow;
      // The stale write was refused by the fence; its client gets the taker's stored answer.
      expect(first.status).toBe(201);
      expect(first.headers['idempotent-replayed']).toBe('true');
      expect(first.body.equals(taker.body)).toBe(true);
      const after = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM payments')).rows[0].n;
      expect(after - before).toBe(1);
      const [stale, newer] = ChargesController.seen;
      expect(newer.token.isNewerThan(stale.token)).toBe(true);
      expect(stale.signal.aborted).toBe(true);
      expect(stale.signal.reason).toBeInstanceOf(LeaseLostError);
      expect(newer.abortedAtStart).toBe(false);
    });

    it('is undefined when the request runs unguarded (no key on a route that does not require one, or no @Idempotent())', async () => {
      expect((await t.client.post('/charges/optional')).json()).toEqual({ guarded: false });
      expect((await t.client.post('/charges/bare')).json()).toEqual({ guarded: false });
      expect(
        (await t.client.post('/charges/optional', { headers: { 'idempotency-key': randomUUID() } })).json(),
      ).toEqual({ guarded: true });
      expect(ChargesController.unguarded.map((c) => c === undefined)).toEqual([true, true, false]);
    });
  },
);
