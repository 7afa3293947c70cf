/**
 * The sample app with DATABASE_URL, run as `npm run start:sample` runs it (a process of its own),
 * driven like the curl session in CONTRIBUTING.md: the payment is a row written in the same
 * transaction as the stored response, so it exists exactly once per key, even when the process
 * is killed while the charge runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { eventually } from '../support/eventually';
import { describePostgres, startPostgres, type PostgresServer } from '../support/postgres-server';
import { tsChildCommand } from '../support/ts-child';
import { getFreePort } from '../support/valkey-server';

const ROOT = path.resolve(__dirname, '../..');

interface Sample {
  url: string;
  /** What the sample printed so far. */
  output(): string;
  process: ChildProcess;
  stop(): Promise<void>;
}

async function startSample(databaseUrl: string, env: Record<string, string> = {}): Promise<Sample> {
  const port = await getFreePort();
  const [command, args] = tsChildCommand(path.join(ROOT, 'sample/main.ts'));
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), VALKEY_URL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`the sample exited: ${output}`);
      return output.includes('payments sample on');
    },
    'the sample to listen',
    60_000,
  );
  return {
    url,
    output: () => output,
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

describePostgres('sample app on PostgreSQL (DATABASE_URL)', () => {
  let server: PostgresServer;
  let databaseUrl: string;

  beforeAll(async () => {
    server = await startPostgres();
    databaseUrl = await server.createDatabase('sample');
  });

  afterAll(async () => {
    await server?.stop();
  });

  const pay = (url: string, key: string | undefined, body: object) =>
    fetch(`${url}/payments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
      body: JSON.stringify(body),
    });

  it('charges once: first call, concurrent duplicate, replay, changed body, and the row in the table', async () => {
    const sample = await startSample(databaseUrl, { CHARGE_DELAY_MS: '1500' });
    try {
      const key = randomUUID();
      const body = { amount: 4200, currency: 'EUR' };
      const first = pay(sample.url, key, body);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const duplicate = await pay(sample.url, key, body);
      expect({ status: duplicate.status, output: duplicate.status === 409 ? '' : sample.output() }).toEqual({
        status: 409,
        output: '',
      });
      const created = await first;
      expect(created.status).toBe(201);
      const payment = (await created.json()) as { id: string };

      const replay = await pay(sample.url, key, body);
      expect(replay.status).toBe(201);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.json()).toEqual(payment);
      expect((await pay(sample.url, key, { amount: 9900, currency: 'EUR' })).status).toBe(422);

      // The payment is a row of the database, written once.
      expect(await (await fetch(`${sample.url}/payments/stats`)).json()).toEqual({ charges: 1 });
      expect(await (await fetch(`${sample.url}/payments/${payment.id}`)).json()).toEqual(payment);
    } finally {
      await sample.stop();
    }
  });

  it('a charge killed with its process leaves no payment; the retry after the lease charges once', async () => {
    const pool = server.pool({ connectionString: databaseUrl });
    const before = Number((await pool.query('SELECT count(*) AS n FROM payments')).rows[0].n);
    const key = randomUUID();
    const body = { amount: 100, currency: 'EUR' };
    const sample = await startSample(databaseUrl, { CHARGE_DELAY_MS: '60000' });
    const dying = pay(sample.url, key, body).catch(() => undefined);
    await eventually(async () => {
      const { rows } = await pool.query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = 'sample' AND state = 'idle in transaction'",
      );
      return Number(rows[0].n) > 0;
    }, 'the charge to have written its payment, uncommitted');
    sample.process.kill('SIGKILL');
    await dying;
    await sample.stop();

    const again = await startSample(databaseUrl, { CHARGE_DELAY_MS: '0' });
    try {
      let response = await pay(again.url, key, body);
      // The dead process's claim holds the key until its lease (10 s by default) ends.
      while (response.status === 409) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        response = await pay(again.url, key, body);
      }
      expect(response.status).toBe(201);
      expect(Number((await pool.query('SELECT count(*) AS n FROM payments')).rows[0].n)).toBe(before + 1);
    } finally {
      await again.stop();
    }
  }, 60_000);
});
