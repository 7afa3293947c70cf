/**
 * The memory hot path (a handler that answers at once, on MemoryStore, is claimed, run and stored
 * without a promise) against the awaited path, through the public API on real ports: every
 * observable answer (status, headers, body bytes, replay marker, executions, onEvent events) must
 * be the same on a plain MemoryStore as on a MemoryStore whose methods are awaited, and a replay
 * must equal the first response byte for byte.
 */
import {
  BadRequestException,
  CallHandler,
  Controller,
  ExecutionContext,
  Header,
  Headers,
  HttpCode,
  Injectable,
  NestInterceptor,
  Param,
  ParseIntPipe,
  Post,
  Res,
  StreamableFile,
} from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { map, Observable, of, timeout } from 'rxjs';
import {
  CompletedEntry,
  FencedOutcome,
  FencingToken,
  IdempotencyClaim,
  type IdempotencyClaim as IdempotencyClaimType,
  type IdempotencyEvent,
  IdempotencyKey,
  Idempotent,
  InsertResult,
  MemoryStore,
  ProcessingEntry,
} from '../../lib';
import { Executions, type Platform, startApp, type TestApp } from './http-app';
import type { HttpResponse } from './http-client';

/** A MemoryStore whose claims and completions are awaited (the path any other store takes). */
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

/** Overrides that must run (not be skipped by the immediate path). */
class CountingMemoryStore extends MemoryStore {
  inserts = 0;
  completes = 0;
  override tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    this.inserts++;
    return super.tryInsert(key, entry);
  }
  override complete(key: IdempotencyKey, entry: CompletedEntry, token: FencingToken, ttlMs: number) {
    this.completes++;
    return super.complete(key, entry, token, ttlMs);
  }
}

const TEXT = 'héllo <wörld> & 😀 lone:\uD800 rev:\uDC00\uD800 nul:\u0000 end';

type AnyResponse = { status(code: number): unknown; header(name: string, value: string): unknown };

@Controller('probe')
class ProbeController {
  constructor(private readonly executions: Executions) {}

  @Post('value')
  @Idempotent()
  value(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key), text: TEXT };
  }

  @Post('text')
  @Idempotent()
  text(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return TEXT;
  }

  @Post('text-typed')
  @Idempotent()
  @Header('Content-Type', 'text/plain; charset=utf-8')
  textTyped(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return TEXT.repeat(50);
  }

  @Post('undefined')
  @Idempotent()
  undef(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return undefined;
  }

  @Post('null')
  @Idempotent()
  nul(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return null;
  }

  @Post('buffer')
  @Idempotent()
  buffer(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80]);
  }

  @Post('file')
  @Idempotent()
  file(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    return new StreamableFile(Readable.from([Buffer.from('streamed')]));
  }

  @Post('resolved')
  @Idempotent()
  resolved(@Headers('idempotency-key') key: string) {
    return Promise.resolve({ n: this.executions.hit(key) });
  }

  @Post('async')
  @Idempotent()
  async asyncValue(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('of')
  @Idempotent()
  observable(@Headers('idempotency-key') key: string): Observable<unknown> {
    return of({ n: this.executions.hit(key) });
  }

  @Post('of-many')
  @Idempotent()
  observableMany(@Headers('idempotency-key') key: string): Observable<unknown> {
    const n = this.executions.hit(key);
    return of({ first: n }, { last: n });
  }

  @Post('resolved-of')
  @Idempotent()
  resolvedOf(@Headers('idempotency-key') key: string) {
    return Promise.resolve(of({ n: this.executions.hit(key) }));
  }

  @Post('decorated')
  @Idempotent()
  @HttpCode(202)
  @Header('Location', '/probe/1')
  @Header('Cache-Control', 'no-store')
  @Header('X-Unlisted', 'first only')
  decorated(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('passthrough')
  @Idempotent()
  passthrough(@Res({ passthrough: true }) res: AnyResponse, @Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    res.status(203);
    res.header('Location', `/probe/${n}`);
    res.header('ETag', '"v1"');
    res.header('Set-Cookie', 'run=1');
    return { n };
  }

  @Post('throw')
  @Idempotent()
  throws(@Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    throw new BadRequestException({ message: 'rejected', n });
  }

  @Post('throw-cached')
  @Idempotent({ cacheErrors: true })
  throwsCached(@Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    throw new BadRequestException({ message: `rejected ${TEXT}`, n });
  }

  @Post('throw-plain-cached')
  @Idempotent({ cacheErrors: [500] })
  throwsPlainCached(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    throw new Error('boom');
  }

  @Post('large')
  @Idempotent({ maxResponseBytes: 64 })
  large(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    // 40 characters, more than 64 bytes in UTF-8.
    return 'é'.repeat(40);
  }

  @Post('large-error')
  @Idempotent({ maxResponseBytes: 64, cacheErrors: true })
  largeError(@Headers('idempotency-key') key: string) {
    this.executions.hit(key);
    throw new BadRequestException('x'.repeat(200));
  }

  @Post('claim')
  @Idempotent()
  claim(@IdempotencyClaim() claim: IdempotencyClaimType, @Headers('idempotency-key') key: string) {
    const n = this.executions.hit(key);
    return {
      n,
      keyMatches: claim.key.toString() === key,
      aborted: claim.signal.aborted,
      token: typeof claim.fencingToken.toString(),
    };
  }

  @Post('pipe/:id')
  @Idempotent()
  piped(@Param('id', ParseIntPipe) id: number, @Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key), id };
  }

  @Post('user')
  @Idempotent()
  user(@Headers('idempotency-key') key: string, @Headers('x-user') user: string) {
    return { n: this.executions.hit(`${user}:${key}`), user };
  }

  @Post('wait')
  @Idempotent({ waitMs: 2_000 })
  wait(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }
}

type StoreKind = 'memory' | 'awaited';

interface Started {
  t: TestApp;
  events: IdempotencyEvent[];
}

/** What a client can observe of a response, minus what changes per connection or second. */
function observed(r: HttpResponse) {
  const headers = { ...r.headers };
  delete headers.date;
  delete headers.connection;
  delete headers['keep-alive'];
  return { status: r.status, headers, body: r.body.toString('hex') };
}

/** The first response as a replay should repeat it: its allowlisted headers and body bytes. */
function asReplayed(first: HttpResponse) {
  const o = observed(first);
  const headers: Record<string, unknown> = {};
  for (const name of ['content-type', 'content-length', 'location', 'etag', 'cache-control', 'link']) {
    if (o.headers[name] !== undefined) headers[name] = o.headers[name];
  }
  return { status: o.status, headers, body: o.body };
}

function replayedPart(replay: HttpResponse) {
  const o = observed(replay);
  const headers: Record<string, unknown> = {};
  for (const name of ['content-type', 'content-length', 'location', 'etag', 'cache-control', 'link']) {
    if (o.headers[name] !== undefined) headers[name] = o.headers[name];
  }
  return { status: o.status, headers, body: o.body };
}

const eventShape = (e: IdempotencyEvent) => ({
  type: e.type,
  terminal: e.terminal,
  route: e.route,
  statusCode: e.statusCode,
  store: e.store,
  error: e.error === undefined ? undefined : String((e.error as Error)?.message ?? e.error),
});

@Injectable()
class TimeoutInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(timeout(5_000));
  }
}

@Injectable()
class TagInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((value) => ({ wrapped: value })));
  }
}

describe.each<Platform>(['express', 'fastify'])('memory hot path vs awaited path on %s', (platform) => {
  const apps = {} as Record<StoreKind, Started>;
  beforeAll(async () => {
    for (const kind of ['memory', 'awaited'] as StoreKind[]) {
      const events: IdempotencyEvent[] = [];
      const t = await startApp(platform, {
        store: kind === 'memory' ? new MemoryStore() : new AwaitedMemoryStore(),
        moduleOptions: { onEvent: (e) => events.push(e) },
        controllers: [ProbeController],
      });
      apps[kind] = { t, events };
    }
  });
  afterAll(async () => {
    for (const s of Object.values(apps)) await s.t.close();
  });

  /**
   * Sends `count` requests with one key, one after the other, to both apps: answers what each
   * observed (responses, executions, events of the key's route).
   */
  async function both(path: string, count = 3, headers: Record<string, string> = {}) {
    const out = {} as Record<StoreKind, { responses: HttpResponse[]; executions: number; events: unknown[] }>;
    for (const kind of ['memory', 'awaited'] as StoreKind[]) {
      const { t, events } = apps[kind];
      const key = randomUUID();
      events.length = 0;
      const responses: HttpResponse[] = [];
      for (let i = 0; i < count; i++) {
        responses.push(await t.client.post(path, { headers: { 'idempotency-key': key, ...headers } }));
      }
      const label = headers['x-user'] === undefined ? key : `${headers['x-user']}:${key}`;
      out[kind] = { responses, executions: t.executions.count(label), events: events.map(eventShape) };
    }
    // The two paths answer alike.
    const view = (kind: StoreKind) => ({
      responses: out[kind].responses.map(observed),
      executions: out[kind].executions,
      events: out[kind].events,
    });
    expect(view('memory')).toEqual(view('awaited'));
    return out.memory;
  }

  function expectReplays(responses: HttpResponse[]) {
    const [first, ...replays] = responses;
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    for (const replay of replays) {
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replayedPart(replay)).toEqual(asReplayed(first));
      expect(Buffer.compare(replay.body, first.body)).toBe(0);
    }
  }

  it.each([
    ['value', 201],
    ['text', 201],
    ['text-typed', 201],
    ['undefined', 201],
    ['null', 201],
    ['buffer', 201],
    ['resolved', 201],
    ['async', 201],
    ['of', 201],
    ['of-many', 201],
    ['resolved-of', 201],
    ['decorated', 202],
    ['passthrough', 203],
    ['pipe/7', 201],
  ])('/probe/%s runs once and replays byte for byte', async (path, status) => {
    const { responses, executions, events } = await both(`/probe/${path}`);
    expect(executions).toBe(1);
    expect(responses[0].status).toBe(status);
    expectReplays(responses);
    expect(events.map((e) => (e as { type: string }).type)).toEqual(['executed', 'replayed', 'replayed']);
  });

  it('text with non-ASCII, NUL and lone surrogates: the bytes are those of its UTF-8 encoding, replayed the same', async () => {
    const { responses } = await both('/probe/text');
    expect(responses[0].body.equals(Buffer.from(TEXT, 'utf8'))).toBe(true);
    expect(responses[2].body.equals(Buffer.from(TEXT, 'utf8'))).toBe(true);
  });

  it('a value at once in JSON keeps its text through the replay', async () => {
    const { responses } = await both('/probe/value');
    // JSON.stringify escapes lone surrogates, so the text comes back exactly.
    expect(responses[1].json()).toEqual({ n: 1, text: TEXT });
  });

  it('a handler that sets cookies: the cookie is not replayed, the rest is', async () => {
    const { responses } = await both('/probe/passthrough');
    expect(responses[0].headers['set-cookie']).toEqual(['run=1']);
    expect(responses[1].headers['set-cookie']).toBeUndefined();
    expect(responses[1].headers.location).toBe('/probe/1');
  });

  it('an @Header() not in the allowlist is set on the replay too (Nest sets it before the handler)', async () => {
    const { responses } = await both('/probe/decorated');
    expect(responses[0].headers['x-unlisted']).toBe('first only');
    expect(responses[1].headers['x-unlisted']).toBe('first only');
  });

  it('a StreamableFile: 500 stored, the handler does not run again', async () => {
    const { responses, executions } = await both('/probe/file');
    expect(executions).toBe(1);
    expect(responses.map((r) => r.status)).toEqual([500, 500, 500]);
    expectReplays(responses);
  });

  it('a sync throw without cacheErrors releases the key: each retry runs again', async () => {
    const { responses, executions, events } = await both('/probe/throw');
    expect(executions).toBe(3);
    expect(responses.map((r) => r.status)).toEqual([400, 400, 400]);
    expect(responses.map((r) => r.headers['idempotent-replayed'])).toEqual([undefined, undefined, undefined]);
    expect(responses.map((r) => r.json().n)).toEqual([1, 2, 3]);
    expect(events.map((e) => (e as { type: string }).type)).toEqual(['released', 'released', 'released']);
  });

  it('a sync throw with cacheErrors is stored once and replayed byte for byte', async () => {
    const { responses, executions, events } = await both('/probe/throw-cached');
    expect(executions).toBe(1);
    expect(responses.map((r) => r.status)).toEqual([400, 400, 400]);
    expectReplays(responses);
    expect(events.map((e) => (e as { type: string }).type)).toEqual(['executed', 'replayed', 'replayed']);
  });

  it('a sync plain Error cached as 500 is stored once and replayed', async () => {
    const { responses, executions } = await both('/probe/throw-plain-cached');
    expect(executions).toBe(1);
    expect(responses.map((r) => r.status)).toEqual([500, 500, 500]);
    expectReplays(responses);
  });

  it('a text body over maxResponseBytes reaches the first caller in full; retries get 413, no rerun', async () => {
    const { responses, executions } = await both('/probe/large');
    expect(executions).toBe(1);
    expect(responses[0].status).toBe(201);
    expect(responses[0].text).toBe('é'.repeat(40));
    expect(responses.slice(1).map((r) => r.status)).toEqual([413, 413]);
  });

  it('a cached error over maxResponseBytes: retries get 413, no rerun', async () => {
    const { responses, executions } = await both('/probe/large-error');
    expect(executions).toBe(1);
    expect(responses.map((r) => r.status)).toEqual([400, 413, 413]);
  });

  it('@IdempotencyClaim() with a sync handler: the claim is filled, its signal not aborted', async () => {
    const { responses, executions } = await both('/probe/claim');
    expect(executions).toBe(1);
    expect(responses[0].json()).toEqual({ n: 1, keyMatches: true, aborted: false, token: 'string' });
    expectReplays(responses);
  });

  it('a pipe that rejects the request: no claim is made (400, the handler never runs, key still free)', async () => {
    for (const kind of ['memory', 'awaited'] as StoreKind[]) {
      const { t } = apps[kind];
      const key = randomUUID();
      const bad = await t.client.post('/probe/pipe/abc', { headers: { 'idempotency-key': key } });
      expect(bad.status).toBe(400);
      expect(t.executions.count(key)).toBe(0);
    }
  });

  it('two principals with one key: each runs once and replays only its own', async () => {
    for (const kind of ['memory', 'awaited'] as StoreKind[]) {
      const { t } = apps[kind];
      const key = randomUUID();
      const a1 = await t.client.post('/probe/user', { headers: { 'idempotency-key': key, 'x-user': 'alice' } });
      const b1 = await t.client.post('/probe/user', { headers: { 'idempotency-key': key, 'x-user': 'bob' } });
      const a2 = await t.client.post('/probe/user', { headers: { 'idempotency-key': key, 'x-user': 'alice' } });
      const b2 = await t.client.post('/probe/user', { headers: { 'idempotency-key': key, 'x-user': 'bob' } });
      expect([a1.json(), b1.json(), a2.json(), b2.json()]).toEqual([
        { n: 1, user: 'alice' },
        { n: 1, user: 'bob' },
        { n: 1, user: 'alice' },
        { n: 1, user: 'bob' },
      ]);
      expect([a2.headers['idempotent-replayed'], b2.headers['idempotent-replayed']]).toEqual(['true', 'true']);
      expect(b1.headers['idempotent-replayed']).toBeUndefined();
    }
  });

  it('many concurrent duplicates of a sync handler (waitMs and not): one run, every answer the same bytes', async () => {
    for (const kind of ['memory', 'awaited'] as StoreKind[]) {
      const { t } = apps[kind];
      for (const path of ['/probe/value', '/probe/wait', '/probe/of', '/probe/resolved']) {
        const key = randomUUID();
        const answers = await Promise.all(
          Array.from({ length: 40 }, () => t.client.post(path, { headers: { 'idempotency-key': key } })),
        );
        expect(t.executions.count(key)).toBe(1);
        const first = answers.find((r) => r.headers['idempotent-replayed'] === undefined && r.status === 201)!;
        expect(first).toBeDefined();
        for (const r of answers) {
          // Without waitMs a duplicate may find the key in flight (409) on the awaited path only
          // while the handler runs; a sync one on the memory store never does.
          if (r.status === 409) {
            expect(kind === 'awaited' || path !== '/probe/value').toBe(true);
            continue;
          }
          expect(r.body.equals(first.body)).toBe(true);
        }
      }
    }
  });

  it('a different body with the same key answers 422 on both paths', async () => {
    for (const kind of ['memory', 'awaited'] as StoreKind[]) {
      const { t } = apps[kind];
      const key = randomUUID();
      const a = await t.client.post('/probe/value', { headers: { 'idempotency-key': key }, body: { a: 1 } });
      const b = await t.client.post('/probe/value', { headers: { 'idempotency-key': key }, body: { a: 2 } });
      expect([a.status, b.status]).toEqual([201, 422]);
      expect(t.executions.count(key)).toBe(1);
    }
  });
});

describe.each<Platform>(['express', 'fastify'])('sync handlers inside app-wide enhancers on %s', (platform) => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  async function pair(options: Omit<Parameters<typeof startApp>[1], 'store'>) {
    const out: Record<StoreKind, { t: TestApp; events: IdempotencyEvent[] }> = {} as never;
    for (const kind of ['memory', 'awaited'] as StoreKind[]) {
      const events: IdempotencyEvent[] = [];
      const t = await startApp(platform, {
        ...options,
        store: kind === 'memory' ? new MemoryStore() : new AwaitedMemoryStore(),
        moduleOptions: { ...options.moduleOptions, onEvent: (e) => events.push(e) },
        controllers: [ProbeController],
      });
      apps.push(t);
      out[kind] = { t, events };
    }
    return out;
  }

  async function sameOnBoth(
    apps2: Record<StoreKind, { t: TestApp; events: IdempotencyEvent[] }>,
    path: string,
    count = 3,
    body?: (i: number) => unknown,
  ) {
    const seen = {} as Record<StoreKind, unknown>;
    const raw = {} as Record<StoreKind, HttpResponse[]>;
    for (const kind of ['memory', 'awaited'] as StoreKind[]) {
      const { t, events } = apps2[kind];
      events.length = 0;
      const key = randomUUID();
      const responses: HttpResponse[] = [];
      for (let i = 0; i < count; i++) {
        responses.push(await t.client.post(path, { headers: { 'idempotency-key': key }, body: body?.(i) }));
      }
      raw[kind] = responses;
      seen[kind] = {
        responses: responses.map(observed),
        executions: t.executions.count(key),
        events: events.map(eventShape),
      };
    }
    expect(seen.memory).toEqual(seen.awaited);
    return raw.memory;
  }

  it('a global timeout interceptor and a mapping interceptor', async () => {
    const a = await pair({ globalInterceptors: [new TimeoutInterceptor(), new TagInterceptor()] });
    for (const path of ['/probe/value', '/probe/text', '/probe/of', '/probe/resolved', '/probe/undefined']) {
      const rs = await sameOnBoth(a, path);
      expect(rs[0].status).toBe(201);
      expect(rs[1].body.equals(rs[0].body)).toBe(true);
      expect(rs[1].headers['idempotent-replayed']).toBe('true');
    }
    const thrown = await sameOnBoth(a, '/probe/throw-cached');
    expect(thrown.map((r) => r.status)).toEqual([400, 400, 400]);
  });

  it('a global ClassSerializerInterceptor', async () => {
    const a = await pair({ globalSerializer: true });
    for (const path of ['/probe/value', '/probe/buffer', '/probe/null']) {
      const rs = await sameOnBoth(a, path);
      expect(rs[1].body.equals(rs[0].body)).toBe(true);
    }
  });

  it('a global exception filter that renders its own body; throwProblems with problemBody', async () => {
    const { Catch, HttpException } = await import('@nestjs/common');
    @Catch()
    class Filter {
      catch(error: unknown, host: import('@nestjs/common').ArgumentsHost) {
        const res = host.switchToHttp().getResponse();
        const status = error instanceof HttpException ? error.getStatus() : 500;
        const body = { filtered: true, status, type: (error as { constructor: { name: string } }).constructor.name };
        if (typeof res.code === 'function') res.code(status).send(body);
        else res.status(status).json(body);
      }
    }
    const a = await pair({
      globalFilters: [new Filter()],
      moduleOptions: { throwProblems: true, problemBody: (p) => ({ oops: p.status }) },
    });
    const thrown = await sameOnBoth(a, '/probe/throw');
    expect(thrown.map((r) => r.status)).toEqual([400, 400, 400]);
    const cached = await sameOnBoth(a, '/probe/throw-cached');
    expect(cached[0].json()).toMatchObject({ filtered: true });
    expect(cached[1].headers['idempotent-replayed']).toBe('true');
    const mismatch = await sameOnBoth(a, '/probe/value', 2, (i) => ({ i }));
    expect(mismatch.map((r) => r.status)).toEqual([201, 422]);
    expect(mismatch[1].json()).toMatchObject({ filtered: true });
    const file = await sameOnBoth(a, '/probe/file');
    expect(file.map((r) => r.status)).toEqual([500, 500, 500]);
  });

  it('problemBody without throwProblems renders stored problems the same on both paths', async () => {
    const a = await pair({ moduleOptions: { problemBody: (p) => ({ oops: p.status, title: p.title }) } });
    const large = await sameOnBoth(a, '/probe/large');
    expect(large.map((r) => r.status)).toEqual([201, 413, 413]);
    expect(large[1].json()).toMatchObject({ oops: 413 });
    const mismatch = await sameOnBoth(a, '/probe/value', 2, (i) => ({ i }));
    expect(mismatch[1].json()).toMatchObject({ oops: 422 });
  });
});

describe.each<Platform>(['express', 'fastify'])('MemoryStore subclasses and replaced methods on %s', (platform) => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  it("a subclass's tryInsert and complete run for a sync handler", async () => {
    const store = new CountingMemoryStore();
    const t = await startApp(platform, { store, controllers: [ProbeController] });
    apps.push(t);
    const key = randomUUID();
    const a = await t.client.post('/probe/value', { headers: { 'idempotency-key': key } });
    const b = await t.client.post('/probe/value', { headers: { 'idempotency-key': key } });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.headers['idempotent-replayed']).toBe('true');
    expect(store.inserts).toBe(2);
    expect(store.completes).toBe(1);
    expect(t.executions.count(key)).toBe(1);
  });

  it('methods replaced on the instance after the module started still run', async () => {
    const store = new MemoryStore();
    const t = await startApp(platform, { store, controllers: [ProbeController] });
    apps.push(t);
    // One request first, so the engine has set itself up with the store.
    await t.client.post('/probe/value', { headers: { 'idempotency-key': randomUUID() } });
    const calls: string[] = [];
    const tryInsert = store.tryInsert.bind(store);
    const complete = store.complete.bind(store);
    store.tryInsert = (k, e) => {
      calls.push('tryInsert');
      return tryInsert(k, e);
    };
    store.complete = (k, e, f, ttl) => {
      calls.push('complete');
      return complete(k, e, f, ttl);
    };
    const key = randomUUID();
    await t.client.post('/probe/value', { headers: { 'idempotency-key': key } });
    await t.client.post('/probe/value', { headers: { 'idempotency-key': key } });
    expect(calls).toEqual(['tryInsert', 'complete', 'tryInsert']);
    expect(t.executions.count(key)).toBe(1);
  });
});
