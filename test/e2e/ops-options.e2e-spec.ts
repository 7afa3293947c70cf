import { Body, Controller, Headers, Post, Res } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Executions, Platform, startApp, TestApp } from './http-app';
import { Idempotent, IdempotencyModule, MemoryStore, IdempotencyService } from '../../lib';
import { Module } from '@nestjs/common';

/*
 * The peer options of issue 20: `replayHeaders: false` (module-wide and per route: a replay is the
 * status, the body and `Idempotent-Replayed: true`, no stored header) and `maxKeyLength`.
 */

/** Express `Response` and Fastify `FastifyReply` both have a chainable `header()`. */
interface Reply {
  header(name: string, value: string): Reply;
}

@Controller('opts')
class OptionsController {
  constructor(private readonly executions: Executions) {}

  // Headers set by the handler itself: `@Header()` ones are the route's own, sent on every answer.
  @Post('plain')
  @Idempotent()
  plain(@Body() body: unknown, @Headers('idempotency-key') key: string, @Res({ passthrough: true }) res: Reply) {
    res.header('Location', '/opts/1').header('Cache-Control', 'no-store');
    return { n: this.executions.hit(key), echo: body ?? null };
  }

  @Post('bare')
  @Idempotent({ replayHeaders: false })
  bare(@Body() body: unknown, @Headers('idempotency-key') key: string, @Res({ passthrough: true }) res: Reply) {
    res.header('Location', '/opts/2').header('Cache-Control', 'no-store');
    return { n: this.executions.hit(key), echo: body ?? null };
  }

  @Post('listed')
  @Idempotent({ replayHeaders: ['X-Listed'] })
  listed(@Headers('idempotency-key') key: string, @Res({ passthrough: true }) res: Reply) {
    res.header('X-Listed', 'yes');
    return { n: this.executions.hit(key) };
  }
}

describe.each<Platform>(['express', 'fastify'])('issue 20 options on %s', (platform) => {
  describe('replayHeaders: false per route', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(platform, { store: new MemoryStore(), controllers: [OptionsController] });
    });
    afterAll(() => t.close());

    it('replays status and body with Idempotent-Replayed, no stored header', async () => {
      const headers = { 'idempotency-key': `bare-${platform}` };
      const first = await t.client.post('/opts/bare', { headers, body: { a: 1 } });
      expect(first.status).toBe(201);
      expect(first.headers.location).toBe('/opts/2');
      const again = await t.client.post('/opts/bare', { headers, body: { a: 1 } });
      expect(again.status).toBe(201);
      expect(again.text).toBe(first.text);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers.location).toBeUndefined();
      expect(again.headers['cache-control']).toBeUndefined();
      expect(t.executions.count(headers['idempotency-key'])).toBe(1);
    });

    it('leaves other routes with the default allowlist, and an allowlist adds to it', async () => {
      const headers = { 'idempotency-key': `plain-${platform}` };
      await t.client.post('/opts/plain', { headers, body: { a: 1 } });
      const again = await t.client.post('/opts/plain', { headers, body: { a: 1 } });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers.location).toBe('/opts/1');
      expect(again.headers['cache-control']).toBe('no-store');
      const listed = { 'idempotency-key': `listed-${platform}` };
      await t.client.post('/opts/listed', { headers: listed });
      expect((await t.client.post('/opts/listed', { headers: listed })).headers['x-listed']).toBe('yes');
    });
  });

  describe('replayHeaders: false module-wide, maxKeyLength raised', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(platform, {
        store: new MemoryStore(),
        controllers: [OptionsController],
        moduleOptions: { replayHeaders: false, maxKeyLength: 300 },
      });
    });
    afterAll(() => t.close());

    it('replays no stored header on any route that does not say otherwise', async () => {
      const headers = { 'idempotency-key': `module-${platform}` };
      await t.client.post('/opts/plain', { headers, body: { a: 1 } });
      const again = await t.client.post('/opts/plain', { headers, body: { a: 1 } });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers.location).toBeUndefined();
      // A route's own allowlist overrides the module's `false`.
      const listed = { 'idempotency-key': `module-listed-${platform}` };
      await t.client.post('/opts/listed', { headers: listed });
      expect((await t.client.post('/opts/listed', { headers: listed })).headers['x-listed']).toBe('yes');
    });

    it('accepts keys up to maxKeyLength bytes, replays them, and refuses longer ones with 400', async () => {
      const long = `${platform}-`.padEnd(300, 'k');
      const first = await t.client.post('/opts/plain', { headers: { 'idempotency-key': long }, body: { b: 1 } });
      expect(first.status).toBe(201);
      const again = await t.client.post('/opts/plain', {
        headers: { 'idempotency-key': long, 'x-user': 'u1' },
        body: { b: 1 },
      });
      // Another principal: an unrelated key, runs again.
      expect(again.headers['idempotent-replayed']).toBeUndefined();
      const replay = await t.client.post('/opts/plain', { headers: { 'idempotency-key': long }, body: { b: 1 } });
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.text).toBe(first.text);
      expect(t.executions.count(long)).toBe(2);
      // A key of 300 bytes differing only at the end is a different key.
      const other = long.slice(0, -1) + 'x';
      expect(
        (await t.client.post('/opts/plain', { headers: { 'idempotency-key': other }, body: { b: 1 } })).headers[
          'idempotent-replayed'
        ],
      ).toBeUndefined();
      const tooLong = await t.client.post('/opts/plain', { headers: { 'idempotency-key': long + 'k' } });
      expect(tooLong.status).toBe(400);
      expect(tooLong.json().detail).toContain('longer than 300 bytes');
      const bad = await t.client.post('/opts/plain', { headers: { 'idempotency-key': long.slice(0, 280) + ':' } });
      expect(bad.status).toBe(400);
    });
  });

  describe('maxKeyLength lowered', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(platform, {
        store: new MemoryStore(),
        controllers: [OptionsController],
        moduleOptions: { maxKeyLength: 16 },
      });
    });
    afterAll(() => t.close());

    it('refuses a key over the limit with 400 and runs nothing', async () => {
      const ok = await t.client.post('/opts/plain', { headers: { 'idempotency-key': 'k'.repeat(16) } });
      expect(ok.status).toBe(201);
      const res = await t.client.post('/opts/plain', { headers: { 'idempotency-key': 'k'.repeat(17) } });
      expect(res.status).toBe(400);
      expect(t.executions.count('k'.repeat(17))).toBe(0);
    });
  });
});

describe('issue 20 options are checked at start-up', () => {
  it.each([0, -1, 1.5, 8193, '255'])('maxKeyLength %p is refused with a clear error', (value) => {
    expect(() => IdempotencyModule.forRoot({ store: new MemoryStore(), maxKeyLength: value as number })).toThrow(
      /maxKeyLength must be a whole number of bytes from 1 to 8192/,
    );
  });

  it('replayHeaders accepts false and refuses true', () => {
    expect(() => IdempotencyModule.forRoot({ store: new MemoryStore(), replayHeaders: false })).not.toThrow();
    expect(() => IdempotencyModule.forRoot({ store: new MemoryStore(), replayHeaders: true as never })).toThrow(
      /replayHeaders must be a list of HTTP header names, or false/,
    );
    expect(() => Idempotent({ maxKeyLength: 0 })).toThrow(/maxKeyLength/);
  });

  it('IdempotencyService.run keeps maxKeyLength too', async () => {
    @Module({ imports: [IdempotencyModule.forRoot({ store: new MemoryStore(), maxKeyLength: 8 })] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      const service = app.get(IdempotencyService);
      await expect(service.run('123456789', () => 1)).rejects.toThrow(/longer than 8 bytes/);
      expect(await service.run('12345678', () => 1)).toEqual({ value: 1, replayed: false });
    } finally {
      await app.close();
    }
  });
});
