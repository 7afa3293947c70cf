// Measures how soon a waiter on another store instance wakes after a completion (LISTEN/NOTIFY).
import { CachedResponse, Fingerprint, IdempotencyEntry, IdempotencyKey, PostgresStore } from '../lib';
import { startPostgres } from '../test/support/postgres-server';

async function main() {
  const server = await startPostgres({ settings: { synchronous_commit: 'on' } });
  const a = new PostgresStore(server.pool(), { table: 'wake', onWarning: () => undefined });
  const b = new PostgresStore(server.pool(), { table: 'wake', onWarning: () => undefined });
  await a.migrate();
  const times: number[] = [];
  for (let i = 0; i < 300; i++) {
    const key = IdempotencyKey.default();
    const fp = Fingerprint.fromBytes(Buffer.alloc(16, 7));
    const claimed = await a.tryInsert(key, new IdempotencyEntry(fp, 10_000));
    if (claimed.kind !== 'claimed') throw new Error('not claimed');
    const waiting = b.waitForChange(key, 5_000);
    await new Promise((r) => setTimeout(r, 5));
    const t0 = process.hrtime.bigint();
    const done = a.complete(
      key,
      claimed.entry.complete(new CachedResponse({ statusCode: 200, body: 'ok' })),
      claimed.fencingToken,
      60_000,
    );
    await waiting;
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await done;
  }
  times.sort((x, y) => x - y);
  const q = (p: number) => times[Math.floor(p * (times.length - 1))].toFixed(2);
  console.log(`wake after completion (ms), n=${times.length}: p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)}`);
  await a.close();
  await b.close();
  await server.stop();
}
void main();
