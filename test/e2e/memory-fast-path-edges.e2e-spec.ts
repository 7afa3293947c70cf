/**
 * Edges of the memory hot path through the public API: per-request headers on one route (the
 * shared metadata of consecutive responses), a full store, a lease that runs out while a handler
 * blocks, the replay window ending, a handler that sends its own response, and an
 * `IdempotencyInterceptor` subclass registered app-wide. Each is played on a plain MemoryStore and
 * on one whose methods are awaited; the answers and events must be the same.
 */
import { Controller, Headers, Injectable, Post, Res } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import {
  CompletedEntry,
  FencedOutcome,
  FencingToken,
  type IdempotencyEvent,
  IdempotencyInterceptor,
  IdempotencyKey,
  Idempotent,
  InsertResult,
  MemoryStore,
  type MemoryStoreOptions,
  ProcessingEntry,
} from '../../lib';
import { Executions, type Platform, startApp, type TestApp } from './http-app';
import type { HttpResponse } from './http-client';

class AwaitedMemoryStore extends MemoryStore {
  override async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    return super.tryInsert(key, entry);
  }
  override async complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    token: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    return super.complete(key, entry, token, ttlMs);
  }
}

/** The stores' clock, which handlers can move. */
const clock = { now: 1_000_000 };

type AnyResponse = {
  status(code: number): unknown;
  header(name: string, value: string): unknown;
  send(body?: unknown): unknown;
};

@Controller('edge')
class EdgeController {
  constructor(private readonly executions: Executions) {}

  /** Location and result kind chosen by the request: consecutive responses differ or not. */
  @Post('varying')
  @Idempotent({ replayHeaders: ['X-Variant', 'Link'] })
  varying(
    @Res({ passthrough: true }) res: AnyResponse,
    @Headers('idempotency-key') key: string,
    @Headers('x-where') where: string,
    @Headers('x-kind') kind: string,
  ) {
    const n = this.executions.hit(key);
    res.header('Location', `/edge/${where}`);
    if (where !== 'none') res.header('X-Variant', where);
    if (where === 'links') {
      res.header('Link', '</a>; rel="a"');
    }
    if (kind === 'text') return `text ${where} é`;
    if (kind === 'none') return undefined;
    if (kind === 'bytes') return Buffer.from(`bytes ${where}`);
    return { n, where };
  }

  /** Blocks (moves the stores' clock) past its lease before it answers. */
  @Post('blocking')
  @Idempotent({ leaseMs: 1_000 })
  blocking(@Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    clock.now += 5_000;
    return { n };
  }

  @Post('plain')
  @Idempotent({ ttlMs: 60_000 })
  plain(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  /** Sends its own answer, then returns a value too. */
  @Post('self-send')
  @Idempotent()
  selfSend(@Res({ passthrough: true }) res: AnyResponse, @Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    res.status(200);
    res.send(`sent by the handler ${n}`);
    return { n };
  }
}

@Injectable()
class TenantInterceptor extends IdempotencyInterceptor {
  protected override getScope(context: import('@nestjs/common').ExecutionContext) {
    return context.switchToHttp().getRequest().headers['x-tenant'] as string | undefined;
  }
}

type StoreKind = 'memory' | 'awaited';
const KINDS: StoreKind[] = ['memory', 'awaited'];

function observed(r: HttpResponse) {
  const headers = { ...r.headers };
  delete headers.date;
  delete headers.connection;
  delete headers['keep-alive'];
  return { status: r.status, headers, body: r.body.toString('hex') };
}

const eventShape = (e: IdempotencyEvent) => ({
  type: e.type,
  terminal: e.terminal,
  route: e.route,
  statusCode: e.statusCode,
  error: e.error === undefined ? undefined : String((e.error as Error)?.message ?? e.error),
});

describe.each<Platform>(['express', 'fastify'])('memory hot path edges on %s', (platform) => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  async function pair(
    storeOptions: MemoryStoreOptions = {},
    extra: Omit<Parameters<typeof startApp>[1], 'store'> = {},
  ): Promise<Record<StoreKind, { t: TestApp; events: IdempotencyEvent[]; store: MemoryStore }>> {
    const out = {} as Record<StoreKind, { t: TestApp; events: IdempotencyEvent[]; store: MemoryStore }>;
    for (const kind of KINDS) {
      const events: IdempotencyEvent[] = [];
      const store = kind === 'memory' ? new MemoryStore(storeOptions) : new AwaitedMemoryStore(storeOptions);
      const t = await startApp(platform, {
        controllers: [EdgeController],
        ...extra,
        store,
        moduleOptions: { ...extra.moduleOptions, onEvent: (e) => events.push(e) },
      });
      apps.push(t);
      out[kind] = { t, events, store };
    }
    return out;
  }

  /** Plays `script` on both apps; answers what the memory app observed, after checking both alike. */
  async function sameOnBoth(
    a: Awaited<ReturnType<typeof pair>>,
    script: (t: TestApp, key: (name: string) => string) => Promise<HttpResponse[]>,
    before?: () => void,
  ) {
    const seen = {} as Record<StoreKind, unknown>;
    const raw = {} as Record<StoreKind, { responses: HttpResponse[]; executions: Record<string, number> }>;
    for (const kind of KINDS) {
      before?.();
      const { t, events } = a[kind];
      events.length = 0;
      const keys = new Map<string, string>();
      const key = (name: string) => {
        if (!keys.has(name)) keys.set(name, randomUUID());
        return keys.get(name)!;
      };
      const responses = await script(t, key);
      const executions = Object.fromEntries([...keys].map(([name, k]) => [name, t.executions.count(k)]));
      raw[kind] = { responses, executions };
      seen[kind] = { responses: responses.map(observed), executions, events: events.map(eventShape) };
    }
    expect(seen.memory).toEqual(seen.awaited);
    return raw.memory;
  }

  it('one route, per-request headers and result kinds: each key replays its own headers and body', async () => {
    const a = await pair();
    const variants: [string, string][] = [
      ['x', 'json'],
      ['x', 'json'],
      ['y', 'json'],
      ['y', 'text'],
      ['y', 'text'],
      ['none', 'text'],
      ['none', 'none'],
      ['links', 'bytes'],
      ['links', 'json'],
      ['x', 'json'],
    ];
    const { responses, executions } = await sameOnBoth(a, async (t, key) => {
      const send = (i: number) =>
        t.client.post('/edge/varying', {
          headers: { 'idempotency-key': key(`k${i}`), 'x-where': variants[i][0], 'x-kind': variants[i][1] },
        });
      const out: HttpResponse[] = [];
      for (let i = 0; i < variants.length; i++) out.push(await send(i));
      // Replays, in another order.
      for (let i = variants.length - 1; i >= 0; i--) out.push(await send(i));
      return out;
    });
    expect(Object.values(executions)).toEqual(variants.map(() => 1));
    const n = variants.length;
    for (let i = 0; i < n; i++) {
      const first = responses[i];
      const replay = responses[2 * n - 1 - i];
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.status).toBe(first.status);
      expect(replay.body.equals(first.body)).toBe(true);
      for (const name of ['content-type', 'location', 'x-variant', 'link', 'content-length']) {
        expect([i, name, replay.headers[name]]).toEqual([i, name, first.headers[name]]);
      }
    }
  });

  it('a full store: a new key gets 503, a done key still replays (maxEntries)', async () => {
    const a = await pair({ maxEntries: 1, onWarning: () => undefined });
    const { responses } = await sameOnBoth(a, async (t, key) => {
      const r1 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('a') } });
      const r2 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('b') } });
      const r3 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('a') } });
      return [r1, r2, r3];
    });
    expect(responses.map((r) => r.status)).toEqual([201, 503, 201]);
    expect(responses[2].headers['idempotent-replayed']).toBe('true');
  });

  it('a full store with failOpen: a new key runs unguarded, with the same events', async () => {
    const a = await pair({ maxEntries: 1, onWarning: () => undefined }, { moduleOptions: { failOpen: true } });
    const { responses } = await sameOnBoth(a, async (t, key) => {
      const r1 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('a') } });
      const r2 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('b') } });
      const r3 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('b') } });
      return [r1, r2, r3];
    });
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201]);
    expect(responses.map((r) => r.json().n)).toEqual([1, 1, 2]);
  });

  it('a handler that blocks past its lease: stored late (key-expired), run once, replayed', async () => {
    const a = await pair({ now: () => clock.now });
    const { responses } = await sameOnBoth(a, async (t, key) => {
      const out: HttpResponse[] = [];
      for (let i = 0; i < 3; i++) {
        out.push(await t.client.post('/edge/blocking', { headers: { 'idempotency-key': key('a') } }));
      }
      return out;
    });
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201]);
    expect(responses.map((r) => r.json().n)).toEqual([1, 1, 1]);
    expect(responses[1].headers['idempotent-replayed']).toBe('true');
    expect(a.memory.events.map((e) => e.type)).toEqual(['key-expired', 'executed', 'replayed', 'replayed']);
  });

  it('the replay window ends: the handler runs again, on both paths alike', async () => {
    const a = await pair({ now: () => clock.now });
    const { responses } = await sameOnBoth(a, async (t, key) => {
      const r1 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('a') } });
      const r2 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('a') } });
      clock.now += 60_001;
      const r3 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('a') } });
      const r4 = await t.client.post('/edge/plain', { headers: { 'idempotency-key': key('a') } });
      return [r1, r2, r3, r4];
    });
    expect(responses.map((r) => r.json().n)).toEqual([1, 1, 2, 2]);
    expect(responses.map((r) => r.headers['idempotent-replayed'])).toEqual([undefined, 'true', undefined, 'true']);
  });

  it('a handler that sends its own answer: the client gets it once; retries get the stored 500, no rerun', async () => {
    const a = await pair({}, { moduleOptions: {} });
    const { responses } = await sameOnBoth(a, async (t, key) => {
      const out: HttpResponse[] = [];
      for (let i = 0; i < 3; i++) {
        out.push(await t.client.post('/edge/self-send', { headers: { 'idempotency-key': key('a') } }));
      }
      return out;
    });
    expect(responses[0].status).toBe(200);
    expect(responses[0].text).toBe('sent by the handler 1');
    expect(responses.slice(1).map((r) => r.status)).toEqual([500, 500]);
  });

  it('an IdempotencyInterceptor subclass registered with APP_INTERCEPTOR, with sync handlers', async () => {
    const a = await pair({}, { providers: [{ provide: APP_INTERCEPTOR, useClass: TenantInterceptor }] });
    const { responses } = await sameOnBoth(a, async (t, key) => {
      const send = (tenant: string, where: string, kind: string) =>
        t.client.post('/edge/varying', {
          headers: { 'idempotency-key': key('shared'), 'x-tenant': tenant, 'x-where': where, 'x-kind': kind },
        });
      return [
        await send('t1', 'one', 'text'),
        await send('t2', 'two', 'json'),
        await send('t1', 'one', 'text'),
        await send('t2', 'two', 'json'),
      ];
    });
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    expect(responses[2].body.equals(responses[0].body)).toBe(true);
    expect(responses[3].body.equals(responses[1].body)).toBe(true);
    expect(responses[2].headers.location).toBe('/edge/one');
    expect(responses[3].headers.location).toBe('/edge/two');
    expect(responses.map((r) => r.headers['idempotent-replayed'])).toEqual([undefined, undefined, 'true', 'true']);
  });
});
