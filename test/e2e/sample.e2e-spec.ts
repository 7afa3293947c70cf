/** The sample payments app, booted as `npm run start:sample` does, and driven like the curl session in CONTRIBUTING.md. */
import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { randomUUID } from 'node:crypto';
import { AppModule, createStore } from '../../sample/app.module';
import { PaymentsService } from '../../sample/payments/payments.service';
import { describeValkey, startStandalone, StandaloneServer } from '../support/valkey-server';
import { IdempotencyKey, IdempotencyStore, MemoryStore, ValkeyStore } from '../../lib';
import { eventually } from '../support/eventually';

async function boot(): Promise<{ app: INestApplication; url: string }> {
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.listen(0, '127.0.0.1');
  return { app, url: (await app.getUrl()).replace('[::1]', '127.0.0.1') };
}

function runCurlSession(storeKind: 'memory' | 'valkey') {
  let app: INestApplication;
  let url: string;
  beforeAll(async () => {
    // Long enough that the duplicate surely arrives while the first charge runs, on a loaded machine too.
    process.env.CHARGE_DELAY_MS = '1500';
    ({ app, url } = await boot());
  });
  afterAll(async () => {
    delete process.env.CHARGE_DELAY_MS;
    await app?.close();
  });

  const pay = (key: string | undefined, body: object) =>
    fetch(`${url}/payments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
      body: JSON.stringify(body),
    });

  it(`charges once: first call, concurrent duplicate, replay, changed body, missing key (${storeKind})`, async () => {
    expect(app.get(IdempotencyStore)).toBeInstanceOf(storeKind === 'memory' ? MemoryStore : ValkeyStore);
    const key = randomUUID();
    const body = { amount: 4200, currency: 'EUR' };
    const first = pay(key, body);
    const store = app.get(IdempotencyStore);
    await eventually(
      async () => (await store.get(new IdempotencyKey(key)))?.isProcessing() === true,
      'the first charge to hold its key',
    );
    const duplicate = await pay(key, body);
    expect(duplicate.status).toBe(409);
    expect(duplicate.headers.get('retry-after')).toBe('1');
    const created = await first;
    expect(created.status).toBe(201);
    const payment = await created.text();
    expect(JSON.parse(payment)).toMatchObject({ amount: 4200, currency: 'EUR', status: 'captured' });

    const replay = await pay(key, body);
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.text()).toBe(payment);

    const changed = await pay(key, { amount: 9900, currency: 'EUR' });
    expect(changed.status).toBe(422);
    expect(changed.headers.get('content-type')).toMatch(/^application\/problem\+json/);

    expect((await pay(undefined, body)).status).toBe(400);
    expect(app.get(PaymentsService).charges).toBe(1);
  });

  it(`the refunds queue consumer refunds once per message, however often it is delivered (${storeKind})`, async () => {
    const before = app.get(PaymentsService).refunds;
    const requests = await Promise.all(
      [1, 2, 3].map(() =>
        fetch(`${url}/refunds`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ paymentId: 'pay_1', amount: 100 }),
        }),
      ),
    );
    expect(requests.map((r) => r.status)).toEqual([202, 202, 202]);
    const stats = (await (await fetch(`${url}/refunds/stats`)).json()) as { deliveries: number; refunds: number };
    // Three messages, each delivered twice at once: six deliveries, three refunds.
    expect(stats.deliveries).toBeGreaterThanOrEqual(6);
    expect(stats.refunds - before).toBe(3);
  });
}

describe('sample app on the memory store', () => {
  runCurlSession('memory');
});

describeValkey('sample app on Valkey (VALKEY_URL)', () => {
  let server: StandaloneServer;
  beforeAll(async () => {
    server = await startStandalone();
    process.env.VALKEY_URL = server.url;
  });
  afterAll(async () => {
    delete process.env.VALKEY_URL;
    await server?.stop();
  });

  it('createStore() picks the Valkey store when VALKEY_URL is set', async () => {
    const store = await createStore(server.url);
    expect(store).toBeInstanceOf(ValkeyStore);
    await store.close();
  });

  runCurlSession('valkey');
});
