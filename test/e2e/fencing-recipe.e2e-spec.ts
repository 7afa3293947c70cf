/**
 * The docs' recipe for fencing a downstream write with the claim's token, run exactly as printed
 * in docs/claims.md (its table read from the SQL block, its handler and FENCE_SQL compiled from the
 * TypeScript block) with node-postgres against a real PostgreSQL (test/support/postgres-server.ts),
 * and the `@IdempotencyClaim()` parameter behind it, over real HTTP on Express and Fastify, on the
 * memory store and a real Valkey.
 */
import { Body, ConflictException, Controller, Headers, Post, Req } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import {
  FencingToken,
  IdempotencyClaim,
  type IdempotencyStore,
  Idempotent,
  IdempotencyKey,
  LeaseLostError,
  MemoryStore,
  storeKeyFor,
  ValkeyStore,
} from '../../lib';
import { FaultyStore } from '../../lib/testing';
import { materialize } from '../docs/snippets';
import { eventually } from '../support/eventually';
import { describePostgres, type PostgresServer, startPostgres } from '../support/postgres-server';
import { startStandalone, type StandaloneServer, valkeyAvailable } from '../support/valkey-server';
import { freshPrefix } from '../valkey/helpers';
import { Executions, type Platform, startApp, type TestApp } from './http-app';

/** What docs/claims.md's `fencing-handler` block exports. */
interface FencingRecipe {
  FENCE_SQL: string;
  ChargesController: new (pool: Pool) => {
    charge(dto: { amount: number }, claim: IdempotencyClaim): Promise<{ id: number }>;
  };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const recipe = require(materialize('fencing-handler')) as FencingRecipe;

/** The table of the docs/claims.md block marked `<!-- recipe: fencing-sql -->`. */
function recipeSchema(): string {
  const doc = readFileSync(join(__dirname, '../../docs/claims.md'), 'utf8');
  const marker = doc.indexOf('<!-- recipe: fencing-sql -->');
  expect(marker).toBeGreaterThan(-1);
  const block = /```sql\n([\s\S]*?)```/.exec(doc.slice(marker));
  expect(block).not.toBeNull();
  const schema = block![1].trim();
  expect(schema).toMatch(/^CREATE TABLE idempotency_fences \([\s\S]*\);$/);
  return schema;
}

const PLATFORMS: Platform[] = ['express', 'fastify'];

interface Seen {
  key: IdempotencyKey;
  storeKey: IdempotencyKey;
  token: FencingToken;
  signal: AbortSignal;
  /** Whether the signal had aborted when the handler started. */
  abortedAtStart: boolean;
  /** What the docs' handler answered or threw, once it has. */
  outcome?: { id: number } | Error;
}

/**
 * The docs' handler (a `ChargesController` of the recipe, its `charge` as printed) behind a gate:
 * with `x-hold: <label>` it waits for `executions.open(label)` before the recipe runs, as a holder
 * paused (a long GC, a stalled VM) after its claim.
 */
@Controller('held-charges')
class HeldChargesController {
  static seen: Seen[] = [];
  private readonly recipe: InstanceType<FencingRecipe['ChargesController']>;

  constructor(
    pool: Pool,
    private readonly executions: Executions,
  ) {
    this.recipe = new recipe.ChargesController(pool);
  }

  @Post()
  @Idempotent({ required: true, leaseMs: 300 })
  async charge(
    @Body() dto: { amount: number },
    @IdempotencyClaim() claim: IdempotencyClaim,
    @Req() req: { headers: Record<string, string> },
    @Headers('x-hold') hold?: string,
  ) {
    const seen: Seen = {
      key: claim.key,
      storeKey: claim.storeKey,
      token: claim.fencingToken,
      signal: claim.signal,
      abortedAtStart: claim.signal.aborted,
    };
    HeldChargesController.seen.push(seen);
    expect(req.headers['idempotency-key']).toBe(claim.key.toString());
    if (hold !== undefined) await this.executions.gate(hold);
    try {
      return (seen.outcome = await this.recipe.charge(dto, claim));
    } catch (error) {
      seen.outcome = error as Error;
      throw error;
    }
  }
}

@Controller('unguarded')
class UnguardedController {
  static claims: unknown[] = [];

  @Post('optional')
  @Idempotent()
  optional(@IdempotencyClaim() claim: IdempotencyClaim | undefined) {
    UnguardedController.claims.push(claim);
    return { guarded: claim !== undefined };
  }

  @Post('bare')
  bare(@IdempotencyClaim() claim: IdempotencyClaim | undefined) {
    UnguardedController.claims.push(claim);
    return { guarded: claim !== undefined };
  }
}

describePostgres('the fencing recipe (docs/claims.md) with pg on a real PostgreSQL', () => {
  // One PostgreSQL for the file: the recipe's table and a payments table.
  let postgres: PostgresServer;
  let pool: Pool;

  beforeAll(async () => {
    postgres = await startPostgres();
    pool = postgres.pool();
    await pool.query(recipeSchema());
    await pool.query('CREATE TABLE payments (id serial PRIMARY KEY, amount integer NOT NULL)');
  }, 60_000);

  afterAll(async () => {
    await postgres?.stop();
  });

  const payments = async () => (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM payments')).rows[0].n;
  const fenceOf = async (storeKey: string) =>
    (await pool.query<{ fence: string }>('SELECT fence FROM idempotency_fences WHERE store_key = $1', [storeKey]))
      .rows[0]?.fence;

  describe('FENCE_SQL, as printed, through pool.query', () => {
    const write = async (storeKey: string, token: bigint | number) =>
      (await pool.query(recipe.FENCE_SQL, [storeKey, String(token)])).rowCount;

    it('lets the newest claim of a key write, refuses older and equal tokens of that key (rowCount 0)', async () => {
      expect(await write('key-a', 5)).toBe(1);
      expect(await write('key-a', 4)).toBe(0);
      expect(await write('key-a', 5)).toBe(0);
      expect(await write('key-a', 6)).toBe(1);
      expect(await fenceOf('key-a')).toBe('6');
    });

    it('answers rowCount, and no affectedRows (a fence that tested affectedRows would never fire with pg)', async () => {
      await write('key-g', 2);
      const refused = await pool.query(recipe.FENCE_SQL, ['key-g', '1']);
      expect(refused.rowCount).toBe(0);
      expect('affectedRows' in refused).toBe(false);
    });

    it('fences per key: a first claim (token 1) of other keys always writes', async () => {
      for (const key of ['key-b', 'key-c', 'key-d', 'key-e', 'key-f']) expect(await write(key, 1)).toBe(1);
    });

    it('holds every unsigned 64-bit token', async () => {
      expect(await write('key-max', (1n << 64n) - 2n)).toBe(1);
      expect(await write('key-max', (1n << 64n) - 1n)).toBe(1);
      expect(await write('key-max', (1n << 64n) - 2n)).toBe(0);
      expect(await fenceOf('key-max')).toBe(String((1n << 64n) - 1n));
    });
  });

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
    'the docs handler and @IdempotencyClaim() over HTTP on %s, %s store',
    (platform, storeKind) => {
      let store: FaultyStore;
      let t: TestApp;

      beforeAll(async () => {
        store = new FaultyStore(await storeOf(storeKind));
        t = await startApp(platform, {
          store,
          controllers: [recipe.ChargesController, HeldChargesController, UnguardedController],
          providers: [{ provide: Pool, useValue: pool }],
        });
      }, 60_000);

      afterAll(async () => {
        await t?.close();
        await store?.close();
      });

      beforeEach(() => {
        HeldChargesController.seen = [];
        UnguardedController.claims = [];
        store.heal();
      });

      it("runs as printed: one payment, the fence at the token the store issued under the principal's key, a replay pays nothing", async () => {
        const key = randomUUID();
        const before = await payments();
        const send = () =>
          t.client.post('/charges', { headers: { 'idempotency-key': key, 'x-user': 'alice' }, body: { amount: 10 } });
        const res = await send();
        expect(res.status).toBe(201);
        expect(res.json()).toEqual({ id: expect.any(Number) });
        expect(await payments()).toBe(before + 1);
        // The store key is the client key scoped to the principal, and the fence holds its token.
        const { rows } = await pool.query<{ store_key: string; fence: string }>(
          'SELECT store_key, fence FROM idempotency_fences WHERE store_key LIKE $1',
          [`${key}/%`],
        );
        expect(rows).toHaveLength(1);
        expect(rows[0].store_key).toBe(storeKeyFor(new IdempotencyKey(key), 'alice').toString());
        expect((await store.get(storeKeyFor(new IdempotencyKey(key), 'alice')))?.isCompleted()).toBe(true);
        expect(BigInt(rows[0].fence)).toBeGreaterThanOrEqual(1n);
        const replay = await send();
        expect(replay.status).toBe(201);
        expect(replay.headers['idempotent-replayed']).toBe('true');
        expect(replay.body.equals(res.body)).toBe(true);
        expect(await payments()).toBe(before + 1);
      });

      it('hands the handler its claim: the client key, the scoped store key, the token the store issued', async () => {
        const key = randomUUID();
        const res = await t.client.post('/held-charges', {
          headers: { 'idempotency-key': key, 'x-user': 'alice' },
          body: { amount: 10 },
        });
        expect(res.status).toBe(201);
        const [seen] = HeldChargesController.seen;
        expect(seen.key.toString()).toBe(key);
        expect(seen.storeKey.toString()).not.toBe(key);
        expect(seen.storeKey.toString().startsWith(`${key}/`)).toBe(true);
        expect(seen.token.value).toBeGreaterThanOrEqual(1n);
        expect(seen.signal).toBeInstanceOf(AbortSignal);
        expect(seen.abortedAtStart).toBe(false);
        expect(await fenceOf(seen.storeKey.toString())).toBe(seen.token.toString());
      });

      it("a stale holder (lease lost, taken over) is fenced off: its write is refused, one payment, its signal aborted, its client gets the taker's answer", async () => {
        const key = randomUUID();
        const hold = `hold-${key}`;
        const before = await payments();
        store.failNext('touch', undefined, Number.POSITIVE_INFINITY); // no renewals: the first lease runs out
        const slow = t.client.post('/held-charges', {
          headers: { 'idempotency-key': key, 'x-hold': hold },
          body: { amount: 10 },
        });
        // The first request holds its claim, paused before its write, until its lease is gone.
        await eventually(() => HeldChargesController.seen.length === 1, 'the first handler to start');
        const [stale] = HeldChargesController.seen;
        await eventually(() => stale.signal.aborted, "the first holder's lease to be lost");
        await eventually(async () => (await store.get(stale.storeKey)) === undefined, 'its key to expire in the store');
        store.heal();
        const taker = await t.client.post('/held-charges', {
          headers: { 'idempotency-key': key },
          body: { amount: 10 },
        });
        expect(taker.status).toBe(201);
        const newer = HeldChargesController.seen[1];
        expect(newer.token.isNewerThan(stale.token)).toBe(true);
        expect(newer.abortedAtStart).toBe(false);
        expect(await fenceOf(stale.storeKey.toString())).toBe(newer.token.toString());
        // The stale holder resumes and runs the docs' handler: the fence refuses its write.
        t.executions.open(hold);
        const first = await slow;
        expect(stale.outcome).toBeInstanceOf(ConflictException);
        expect((stale.outcome as Error).message).toBe('superseded by a newer attempt');
        expect(stale.signal.reason).toBeInstanceOf(LeaseLostError);
        // Its client gets the taker's stored answer; one payment was made.
        expect(first.status).toBe(201);
        expect(first.headers['idempotent-replayed']).toBe('true');
        expect(first.body.equals(taker.body)).toBe(true);
        expect(await payments()).toBe(before + 1);
        expect(await fenceOf(stale.storeKey.toString())).toBe(newer.token.toString());
      });

      it('is undefined when the request runs unguarded (no key on a route that does not require one, or no @Idempotent())', async () => {
        expect((await t.client.post('/unguarded/optional')).json()).toEqual({ guarded: false });
        expect((await t.client.post('/unguarded/bare')).json()).toEqual({ guarded: false });
        expect(
          (await t.client.post('/unguarded/optional', { headers: { 'idempotency-key': randomUUID() } })).json(),
        ).toEqual({ guarded: true });
        expect(UnguardedController.claims.map((c) => c === undefined)).toEqual([true, true, false]);
      });
    },
  );
});
