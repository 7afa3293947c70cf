import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  IDEMPOTENCY_DIAGNOSTICS_CHANNELS,
  IdempotencyEvent,
  IdempotencyModule,
  IdempotencyOutcome,
  IdempotencyService,
  MemoryStore,
} from '../../lib';
import { ItemsController, Platform, startApp, TestApp } from './http-app';

/*
 * Events on node:diagnostics_channel (issue 20): a subscriber gets them without any module
 * option, one channel per outcome, and a replay's message says it is a replay.
 */

function listen(outcomes: IdempotencyOutcome[]): { messages: IdempotencyEvent[]; stop(): void } {
  const messages: IdempotencyEvent[] = [];
  const handler = (message: unknown) => messages.push(message as IdempotencyEvent);
  for (const outcome of outcomes) subscribe(IDEMPOTENCY_DIAGNOSTICS_CHANNELS[outcome], handler);
  return {
    messages,
    stop: () => {
      for (const outcome of outcomes) unsubscribe(IDEMPOTENCY_DIAGNOSTICS_CHANNELS[outcome], handler);
    },
  };
}

describe('diagnostics channel names', () => {
  it('are nestjs-idempotent:<outcome>', () => {
    expect(IDEMPOTENCY_DIAGNOSTICS_CHANNELS.replayed).toBe('nestjs-idempotent:replayed');
    expect(IDEMPOTENCY_DIAGNOSTICS_CHANNELS['completion-deferred' as IdempotencyOutcome]).toBeUndefined();
    expect(IDEMPOTENCY_DIAGNOSTICS_CHANNELS.deferred).toBe('nestjs-idempotent:deferred');
    for (const name of Object.values(IDEMPOTENCY_DIAGNOSTICS_CHANNELS)) expect(name).toMatch(/^nestjs-idempotent:/);
  });
});

describe.each<Platform>(['express', 'fastify'])('diagnostics channels on %s', (platform) => {
  let t: TestApp;
  beforeAll(async () => {
    // No onEvent, no telemetry: the channels alone.
    t = await startApp(platform, {
      store: new MemoryStore(),
      controllers: [ItemsController],
      moduleOptions: { telemetry: false },
    });
  });
  afterAll(() => t.close());

  it('publishes executed, replayed and the refusals, with no key in clear', async () => {
    const sub = listen(['executed', 'replayed', 'fingerprint-mismatch', 'in-flight']);
    try {
      const key = `diag-${platform}-secret-key`;
      const headers = { 'idempotency-key': key };
      await t.client.post('/items', { headers, body: { a: 1 } });
      await t.client.post('/items', { headers, body: { a: 1 } });
      await t.client.post('/items', { headers, body: { a: 2 } });
      expect(sub.messages.map((m) => [m.type, m.replayed, m.terminal, m.statusCode])).toEqual([
        ['executed', false, true, 201],
        ['replayed', true, true, 201],
        ['fingerprint-mismatch', false, true, 422],
      ]);
      for (const m of sub.messages) {
        expect(m.route).toBe('POST /items');
        expect(m.store).toBe('memory');
        expect(m.keyHash).toMatch(/^[0-9a-f]{12}$/);
        expect(JSON.stringify(m)).not.toContain(key);
      }
      expect(sub.messages[0].fencingToken).toBe('1');
    } finally {
      sub.stop();
    }
  });

  it('publishes nothing on a channel once its subscriber is gone', async () => {
    const sub = listen(['executed']);
    sub.stop();
    await t.client.post('/items', { headers: { 'idempotency-key': `diag-none-${platform}` }, body: {} });
    expect(sub.messages).toEqual([]);
  });
});

describe('diagnostics channels for IdempotencyService', () => {
  it('say a replayed value is a replay', async () => {
    @Module({ imports: [IdempotencyModule.forRoot({ store: new MemoryStore(), telemetry: false })] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    const sub = listen(['executed', 'replayed', 'released']);
    try {
      const service = app.get(IdempotencyService);
      await service.run('job-1', () => ({ ok: true }));
      await service.run('job-1', () => ({ ok: false }));
      await expect(
        service.run('job-2', () => {
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(sub.messages.map((m) => [m.type, m.replayed, m.route])).toEqual([
        ['executed', false, 'IdempotencyService'],
        ['replayed', true, 'IdempotencyService'],
        ['released', false, 'IdempotencyService'],
      ]);
      expect((sub.messages[2].error as Error).message).toBe('boom');
    } finally {
      sub.stop();
      await app.close();
    }
  });
});
