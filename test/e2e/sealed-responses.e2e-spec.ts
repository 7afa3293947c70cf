import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import {
  CachedResponse,
  IDEMPOTENCY_PROBLEM_TYPES,
  IdempotencyEncryptionKey,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyService,
  IdempotencyStore,
  MemoryStore,
  SealedRecordError,
  ValkeyStore,
} from '../../lib';
import { Fingerprint } from '../../lib';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { freshPrefix, keysOf } from '../valkey/helpers';
import { ItemsController, Platform, startApp, TestApp } from './http-app';

/*
 * Sealed responses (issue 20, DESIGN 7.4): with `encryption`, the store holds only sealed
 * responses; the raw record shows no plaintext of body or headers; old keys open after rotation;
 * a record that cannot be opened answers 500 and never runs the handler again.
 */

const k1: IdempotencyEncryptionKey = { id: 'k1', key: randomBytes(32) };
const k2: IdempotencyEncryptionKey = { id: 'k2', key: randomBytes(32) };
const SECRET = 'card-4242-4242-secret';

function plaintextIn(raw: Buffer | string, ...needles: string[]): string[] {
  const text = Buffer.isBuffer(raw) ? raw.toString('latin1') : raw;
  return needles.filter((n) => text.includes(n));
}

describeValkey('sealed responses on ValkeyStore', () => {
  let server: StandaloneServer;
  let client: Redis;
  beforeAll(async () => {
    server = await startStandalone();
    client = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await client.connect();
  }, 30_000);
  afterAll(async () => {
    client?.disconnect();
    await server?.stop();
  }, 30_000);

  describe.each<Platform>(['express', 'fastify'])('on %s', (platform) => {
    let prefix: string;
    const apps: TestApp[] = [];
    const start = async (keys: IdempotencyEncryptionKey[]) => {
      const app = await startApp(platform, {
        store: new ValkeyStore(client, { prefix }),
        controllers: [ItemsController],
        moduleOptions: { encryption: { keys } },
      });
      apps.push(app);
      return app;
    };
    beforeEach(() => {
      prefix = freshPrefix(`seal-${platform}`);
    });
    afterEach(async () => {
      await Promise.all(apps.splice(0).map((a) => a.close()));
    });

    it('stores no plaintext of body or headers, and replays the original byte for byte', async () => {
      const t = await start([k1]);
      const key = `seal-plain-${platform}`;
      const headers = { 'idempotency-key': key };
      const first = await t.client.post('/items', { headers, body: { card: SECRET } });
      expect(first.status).toBe(201);
      expect(first.text).toContain(SECRET);
      const raw = (await client.getBuffer(keysOf(prefix, key).entry))!;
      expect(raw).not.toBeNull();
      expect(plaintextIn(raw, SECRET, '/items/1', 'no-store', 'application/json', 'location', 'echo')).toEqual([]);
      // The key id is stored in clear, so the right key can be found.
      expect(raw.toString('latin1')).toContain('k1');
      const again = await t.client.post('/items', { headers, body: { card: SECRET } });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.status).toBe(201);
      expect(again.body.equals(first.body)).toBe(true);
      expect(again.headers.location).toBe('/items/1');
      expect(again.headers['content-type']).toBe(first.headers['content-type']);
      expect(t.executions.count(key)).toBe(1);
    });

    it('opens records of the old key after rotation (new key first), and seals new ones with the new key', async () => {
      const old = await start([k1]);
      const key = `seal-rotate-${platform}`;
      const headers = { 'idempotency-key': key };
      const first = await old.client.post('/items', { headers, body: { card: SECRET } });
      await old.close();
      apps.splice(apps.indexOf(old), 1);
      const rotated = await start([k2, k1]);
      const again = await rotated.client.post('/items', { headers, body: { card: SECRET } });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.text).toBe(first.text);
      const fresh = `seal-rotate-new-${platform}`;
      await rotated.client.post('/items', { headers: { 'idempotency-key': fresh }, body: {} });
      expect((await client.getBuffer(keysOf(prefix, fresh).entry))!.toString('latin1')).toContain('k2');
      expect(rotated.executions.count(key)).toBe(0);
    });

    it('answers 500 record-unreadable for an unknown key id, and never runs the handler again', async () => {
      const old = await start([k1]);
      const key = `seal-unknown-${platform}`;
      const headers = { 'idempotency-key': key };
      await old.client.post('/items', { headers, body: {} });
      const other = await start([k2]);
      const res = await other.client.post('/items', { headers, body: {} });
      expect(res.status).toBe(500);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().type).toBe(IDEMPOTENCY_PROBLEM_TYPES.recordUnreadable);
      expect(res.text).not.toContain('k1');
      expect(other.executions.count(key)).toBe(0);
      // Logged without its contents: the warning names the route and the key's hash only.
      const lines = [...other.logger.warnings, ...other.logger.errors].join('\n');
      expect(lines).toContain('not configured');
      expect(lines).not.toContain(key);
    });

    it('answers 500 for a tampered record and for one copied to another key, never re-running', async () => {
      const t = await start([k1]);
      const key = `seal-tamper-${platform}`;
      const headers = { 'idempotency-key': key };
      await t.client.post('/items', { headers, body: { card: SECRET } });
      const { entry } = keysOf(prefix, key);
      const raw = (await client.getBuffer(entry))!;
      const tampered = Buffer.from(raw);
      tampered[tampered.length - 3] ^= 0x01;
      await client.set(entry, tampered, 'KEEPTTL');
      const res = await t.client.post('/items', { headers, body: { card: SECRET } });
      expect(res.status).toBe(500);
      expect(res.json().type).toBe(IDEMPOTENCY_PROBLEM_TYPES.recordUnreadable);
      expect(t.executions.count(key)).toBe(1);
      // Still refused: the key is never claimed again while the record lives.
      expect((await t.client.post('/items', { headers, body: { card: SECRET } })).status).toBe(500);
      expect(t.executions.count(key)).toBe(1);

      // The intact record, copied under another key: its associated data (the store key) differs.
      const copy = `seal-copy-${platform}`;
      await client.set(keysOf(prefix, copy).entry, raw, 'PX', 60_000);
      const copied = await t.client.post('/items', { headers: { 'idempotency-key': copy }, body: { card: SECRET } });
      expect(copied.status).toBe(500);
      expect(t.executions.count(copy)).toBe(0);
    });
  });

  it('seals IdempotencyService.run values too', async () => {
    const prefix = freshPrefix('seal-svc');
    @Module({
      imports: [IdempotencyModule.forRoot({ store: new ValkeyStore(client, { prefix }), encryption: { keys: [k1] } })],
    })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      const service = app.get(IdempotencyService);
      expect(await service.run('job-sealed', () => ({ card: SECRET }))).toEqual({
        value: { card: SECRET },
        replayed: false,
      });
      const raw = (await client.getBuffer(keysOf(prefix, 'job-sealed').entry))!;
      expect(plaintextIn(raw, SECRET, 'card')).toEqual([]);
      expect(await service.run('job-sealed', () => ({ card: 'other' }))).toEqual({
        value: { card: SECRET },
        replayed: true,
      });
      // Tampered: the service throws SealedRecordError and does not run the work.
      const tampered = Buffer.from(raw);
      tampered[tampered.length - 1] ^= 0x80;
      await client.set(keysOf(prefix, 'job-sealed').entry, tampered, 'KEEPTTL');
      let ran = false;
      await expect(service.run('job-sealed', () => (ran = true))).rejects.toBeInstanceOf(SealedRecordError);
      expect(ran).toBe(false);
    } finally {
      await app.close();
    }
  });
});

describe.each<Platform>(['express', 'fastify'])('sealed responses on MemoryStore (%s)', (platform) => {
  let store: MemoryStore;
  let t: TestApp;
  beforeAll(async () => {
    store = new MemoryStore();
    t = await startApp(platform, {
      store,
      controllers: [ItemsController],
      moduleOptions: { encryption: { keys: [k1] }, closeStoreOnShutdown: true },
    });
  });
  afterAll(() => t.close());

  it("the store's own get() hands back only the sealed response", async () => {
    const key = `mem-seal-${platform}`;
    const headers = { 'idempotency-key': key };
    const first = await t.client.post('/items', { headers, body: { card: SECRET } });
    const injected = t.app.get(IdempotencyStore) as IdempotencyStore;
    expect(injected).toBe(store);
    const entry = await store.get(new IdempotencyKey(key));
    expect(entry?.isCompleted()).toBe(true);
    const sealed = entry!.response!;
    expect(Object.keys(sealed.metadata)).toEqual([':sealed']);
    expect(sealed.statusCode).toBe(200);
    expect(plaintextIn(Buffer.from(sealed.body), SECRET, '/items/1', 'no-store')).toEqual([]);
    const again = await t.client.post('/items', { headers, body: { card: SECRET } });
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
  });

  it('a record stored unsealed (written around the module) is refused with 500, not trusted', async () => {
    const key = new IdempotencyKey(`mem-unsealed-${platform}`);
    const fingerprintOf = async () => {
      // The fingerprint the route computes: taken from a claim the route makes on another key.
      await t.client.post('/items', { headers: { 'idempotency-key': `probe-${platform}` }, body: {} });
      return (await store.get(new IdempotencyKey(`probe-${platform}`)))!.fingerprint;
    };
    const fingerprint: Fingerprint = await fingerprintOf();
    const claim = await store.tryInsert(key, new IdempotencyEntry(fingerprint, 10_000));
    if (claim.kind !== 'claimed') throw new Error('expected a claim');
    const forged = new CachedResponse({ statusCode: 201, body: '{"forged":true}' });
    await store.complete(key, claim.entry.complete(forged), claim.fencingToken, 60_000);
    const res = await t.client.post('/items', { headers: { 'idempotency-key': key.toString() }, body: {} });
    expect(res.status).toBe(500);
    expect(res.text).not.toContain('forged');
    expect(t.executions.count(key.toString())).toBe(0);
  });
});

describe('encryption is checked at start-up', () => {
  const store = () => new MemoryStore();
  it.each([
    [{ keys: [] }, /at least one key/],
    [{ keys: [{ id: 'a', key: randomBytes(16) }] }, /exactly 32 bytes/],
    [{ keys: [{ id: '', key: randomBytes(32) }] }, /id must be 1 to 64 printable ASCII/],
    [
      {
        keys: [
          { id: 'a', key: randomBytes(32) },
          { id: 'a', key: randomBytes(32) },
        ],
      },
      /listed twice/,
    ],
  ])('refuses %p', (encryption, message) => {
    expect(() => IdempotencyModule.forRoot({ store: store(), encryption: encryption as never })).toThrow(message);
  });
});
