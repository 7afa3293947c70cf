/**
 * The claim engine's transactional run (DESIGN 7.3) on PostgresStore and a real PostgreSQL: the
 * work writes through the transaction's pg client, and its rows and the stored result commit
 * together, or neither does (the in-memory version is lib/core/claim-engine.transaction.spec.ts).
 */
import type { Pool, PoolClient } from 'pg';
import { CachedResponse, DefaultFingerprintStrategy, IdempotencyKey, PostgresStore } from '../../lib';
import { type Claimed, type ClaimedWork, type ClaimRequest, claimKey, runClaimed } from '../../lib/core/claim-engine';
import { describePostgres, type PostgresServer, startPostgres } from '../support/postgres-server';

const FP = new DefaultFingerprintStrategy().compute('POST /charges', '{"amount":1}');

describePostgres('claim engine: work in a PostgresStore transaction with its result', () => {
  let server: PostgresServer;
  let pool: Pool;
  let store: PostgresStore;

  beforeAll(async () => {
    server = await startPostgres();
    pool = server.pool({ max: 10 });
    store = new PostgresStore(pool, { onWarning: () => undefined });
    await store.migrate();
    await pool.query('CREATE TABLE charges (id text PRIMARY KEY)');
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    await server?.stop();
  }, 30_000);

  const request = (key: string, leaseMs = 5_000): ClaimRequest => ({
    store,
    key: new IdempotencyKey(key),
    fingerprint: FP,
    leaseMs,
    ttlMs: 60_000,
  });
  const charges = async () => (await pool.query('SELECT id FROM charges ORDER BY id')).rows.map((r) => r.id);

  async function claimed(req: ClaimRequest): Promise<Claimed> {
    const decision = await claimKey(req);
    if (decision.kind !== 'claimed') throw new Error(`expected a claim, got ${decision.kind}`);
    return decision;
  }

  /** Work that inserts `id` through its transaction, then (optionally) waits or fails. */
  function work(id: string, options: { before?: () => Promise<void>; fail?: boolean } = {}): ClaimedWork<string> {
    return {
      transactional: true,
      run: async (_lease, transaction) => {
        await (transaction!.client as PoolClient).query('INSERT INTO charges (id) VALUES ($1)', [id]);
        await options.before?.();
        if (options.fail) throw new Error('work failed');
        return `paid ${id}`;
      },
      capture: (value) => new CachedResponse({ statusCode: 201, body: value }),
    };
  }

  it('commits the write and the result together; a retry replays it', async () => {
    const req = request('k-commit');
    const outcome = await runClaimed(req, await claimed(req), work('c-1'));
    expect(outcome).toMatchObject({ kind: 'executed', value: 'paid c-1' });
    expect(await charges()).toContain('c-1');
    const replay = await claimKey(req);
    expect(replay.kind === 'replayed' && Buffer.from(replay.response.body).toString()).toBe('paid c-1');
    expect(pool.totalCount - pool.idleCount).toBe(0);
  });

  it('the work throws: rolled back, the key released, and a retry runs cleanly', async () => {
    const req = request('k-throws');
    const outcome = await runClaimed(req, await claimed(req), work('c-2', { fail: true }));
    expect(outcome).toMatchObject({ kind: 'released' });
    expect(await charges()).not.toContain('c-2');
    expect((await claimKey(req)).kind).toBe('claimed');
  });

  it('the claim was taken over while the work ran: rolled back, the answer is what the key holds', async () => {
    const req = request('k-taken', 300);
    const first = await claimed(req);
    const outcome = await runClaimed(
      req,
      first,
      work('c-3', {
        before: async () => {
          // The lease runs out (no heartbeat can renew it past a purge) and another claim takes the key.
          await store.purge(req.key);
          await claimed({ ...req, leaseMs: 60_000 });
        },
      }),
    );
    expect(outcome.kind).toBe('in-flight');
    expect(await charges()).not.toContain('c-3');
    expect((await store.get(req.key))?.isProcessing()).toBe(true);
  });
});
