import {
  CallHandler,
  Controller,
  ExecutionContext,
  Injectable,
  Module,
  NestInterceptor,
  Post,
  RequestTimeoutException,
  Res,
  Sse,
} from '@nestjs/common';
import { APP_INTERCEPTOR, NestFactory } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { catchError, map, Observable, of, throwError, timeout, TimeoutError } from 'rxjs';
import {
  IDEMPOTENCY_PROBLEM_TYPES,
  IdempotencyInterceptor,
  IdempotencyKey,
  IdempotencyModule,
  IdempotencyStore,
  Idempotent,
  MemoryStore,
  ResolvedIdempotencyOptions,
  storeKeyFor,
} from '../../lib';
import { eventually } from '../support/eventually';
import { DrainGate, FaultyStore, type Platform, startApp, type TestApp, UsersController } from './http-app';
import { HttpClient, type HttpResponse } from './http-client';

export interface StoreUnderTest {
  store: IdempotencyStore;
  close: () => Promise<void>;
}

const PLATFORMS: Platform[] = ['express', 'fastify'];
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const newKey = () => randomUUID();

/**
 * Sends a request whose handler is held (`x-hold`) and waits until its lease is gone: the handler
 * started, then the store let the claim expire (the test has made the heartbeat fail). No sleep
 * guesses when: on a loaded machine the claim, the handler and the expiry can each come late.
 * `release()` lets the handler go on.
 */
async function heldPastLease(
  app: TestApp,
  s: FaultyStore,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<{ response: Promise<HttpResponse>; release: () => void }> {
  const key = headers['idempotency-key'];
  const hold = `hold-${key}-${app.executions.count(key)}`;
  const runs = app.executions.count(key);
  const response = app.client.post(path, { headers: { ...headers, 'x-hold': hold }, body });
  await eventually(() => app.executions.count(key) > runs, 'the held handler to start');
  await eventually(async () => (await s.get(new IdempotencyKey(key))) === undefined, 'its claim to expire');
  return { response, release: () => app.executions.open(hold) };
}

/** Answers 408 when the handler takes longer than `ms`, as a typical global timeout interceptor does. */
class TimeoutInterceptor implements NestInterceptor {
  constructor(private readonly ms: number) {}
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      timeout(this.ms),
      catchError((error) => throwError(() => (error instanceof TimeoutError ? new RequestTimeoutException() : error))),
    );
  }
}

/** Runs a full garbage collection (exposing `gc` for this process if needed), then lets finalizers run. */
async function collectGarbage(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 4; i++) {
    gc();
    await sleep(20);
  }
}

/** Headers a replay must reproduce: everything but those that change per response. */
function stableHeaders(response: HttpResponse): Record<string, unknown> {
  const { date: _date, connection: _connection, 'keep-alive': _keepAlive, ...rest } = response.headers;
  delete rest['idempotent-replayed'];
  return rest;
}

function expectProblem(response: HttpResponse, status: number, type: string): void {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = response.json();
  expect(body).toEqual(
    expect.objectContaining({ type, status, title: expect.any(String), detail: expect.any(String) }),
  );
}

function expectReplayOf(replay: HttpResponse, first: HttpResponse): void {
  expect(replay.status).toBe(first.status);
  expect(replay.body.equals(first.body)).toBe(true);
  expect(replay.headers['idempotent-replayed']).toBe('true');
  expect(first.headers['idempotent-replayed']).toBeUndefined();
}

/**
 * The HTTP behaviour of `@Idempotent()` (DESIGN.md section 3), on Express and Fastify, against
 * the store `makeStore` creates. Each app gets a fresh store, closed with `close`.
 */
/** What the app warned of while serving requests: all but the start-up warning about its GET route. */
function requestWarnings(app: { logger: { warnings: string[] } }): string[] {
  return app.logger.warnings.filter((w) => !/ItemsController\.read\(\), a GET route/.test(w));
}

export function runHttpSuite(storeName: string, makeStore: () => Promise<StoreUnderTest>): void {
  describe.each(PLATFORMS)(`@Idempotent() over HTTP on %s (${storeName} store)`, (platform) => {
    let made: StoreUnderTest;
    let store: FaultyStore;
    let t: TestApp;
    const extraStores: StoreUnderTest[] = [];
    const extraApps: TestApp[] = [];

    /** A further app on a fresh store, closed after the suite. */
    async function startExtra(options: Omit<Parameters<typeof startApp>[1], 'store'> & { faulty?: boolean } = {}) {
      const fresh = await makeStore();
      extraStores.push(fresh);
      const wrapped = new FaultyStore(fresh.store);
      const started = await startApp(platform, { ...options, store: wrapped });
      extraApps.push(started);
      return { app: started, store: wrapped };
    }

    beforeAll(async () => {
      made = await makeStore();
      store = new FaultyStore(made.store);
      t = await startApp(platform, { store });
    });

    afterAll(async () => {
      for (const app of extraApps) await app.close();
      await t?.close();
      for (const s of extraStores) await s.close();
      await made?.close();
    });

    afterEach(() => {
      store.failTryInsert = false;
      store.failCompletes = 0;
      store.failTouch = false;
    });

    const stored = (key: string, principal?: string) => store.get(storeKeyFor(new IdempotencyKey(key), principal));

    describe('keys', () => {
      it('no key, route not required: the handler runs every time and nothing is stored', async () => {
        const a = await t.client.post('/items', { body: { x: 1 } });
        const b = await t.client.post('/items', { body: { x: 1 } });
        expect([a.status, b.status]).toEqual([201, 201]);
        expect(a.json().n + 1).toBe(b.json().n);
        expect(b.headers['idempotent-replayed']).toBeUndefined();
      });

      it('no key, route required: 400 problem and the handler does not run', async () => {
        const res = await t.client.post('/items/required');
        expectProblem(res, 400, IDEMPOTENCY_PROBLEM_TYPES.keyMissing);
        expect(t.executions.count('required-without-key')).toBe(0);
      });

      it.each([
        ['empty', ''],
        ['blank', '   '],
        ['256 bytes', 'k'.repeat(256)],
        ['a colon', 'a:b'],
        ['a slash', 'a/b'],
        ['a tab', 'a\tb'],
        ['an unterminated sf-string', '"abc'],
        ['an sf-string with a bad escape', '"a\\bc"'],
        ['an empty sf-string', '""'],
        ['an sf-string with junk after it', '"abc" x'],
        ['invalid UTF-8', Buffer.from([0x61, 0xff, 0x62]).toString('latin1')],
      ])('malformed key (%s): 400 problem, handler not run', async (_name, value) => {
        const res = await t.client.post('/items/required', { headers: { 'idempotency-key': value } });
        expectProblem(res, 400, IDEMPOTENCY_PROBLEM_TYPES.keyInvalid);
        expect(t.executions.count(value)).toBe(0);
      });

      it('the header sent twice is malformed (judged from raw header lines): 400', async () => {
        const key = newKey();
        const res = await t.client.post('/items', { headers: { 'idempotency-key': [key, key] } });
        expectProblem(res, 400, IDEMPOTENCY_PROBLEM_TYPES.keyInvalid);
        expect(res.json().detail).toMatch(/more than once/);
        expect(t.executions.count(`${key}, ${key}`)).toBe(0);
      });

      it('a bare value with commas and quotes is the key itself', async () => {
        const key = `${newKey()}, "x", y`;
        const a = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        const b = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        expect(a.status).toBe(201);
        expectReplayOf(b, a);
        expect((await stored(key))?.isCompleted()).toBe(true);
      });

      it('an sf-string and the bare form of the same text are the same key', async () => {
        const key = newKey();
        const a = await t.client.post('/items', { headers: { 'idempotency-key': `"${key}"` }, body: {} });
        const b = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        const c = await t.client.post('/items', { headers: { 'idempotency-key': `"${key}";v=1;ok` }, body: {} });
        expect(a.status).toBe(201);
        expectReplayOf(b, a);
        expectReplayOf(c, a);
        const escaped = await t.client.post('/items', { headers: { 'idempotency-key': `"${key}\\"q"` }, body: {} });
        const bare = await t.client.post('/items', { headers: { 'idempotency-key': `${key}"q` }, body: {} });
        expect(escaped.status).toBe(201);
        expectReplayOf(bare, escaped);
      });

      it('any valid key up to 255 bytes is accepted, with or without a principal scope', async () => {
        const ascii = 'k'.repeat(250) + newKey().slice(0, 5);
        // 85 three-byte characters: 255 bytes, sent as raw UTF-8 bytes.
        const utf8 = '€'.repeat(84) + String.fromCharCode(0x41 + Math.floor(Math.random() * 26)) + '¢';
        expect(Buffer.byteLength(ascii)).toBe(255);
        for (const key of [ascii, utf8]) {
          expect(Buffer.byteLength(key)).toBe(255);
          const wire = Buffer.from(key, 'utf8').toString('latin1');
          for (const user of [undefined, 'alice', 'u'.repeat(1000)]) {
            const headers = { 'idempotency-key': wire, 'x-user': user };
            const a = await t.client.post('/items', { headers, body: { user } });
            const b = await t.client.post('/items', { headers, body: { user } });
            expect(a.status).toBe(201);
            expectReplayOf(b, a);
          }
          expect(t.executions.count(wire)).toBe(3);
        }
      });

      it('the header name is configurable per route', async () => {
        const key = newKey();
        const a = await t.client.post('/items/custom-header', { headers: { 'x-request-id': key } });
        const b = await t.client.post('/items/custom-header', { headers: { 'x-request-id': key } });
        expectReplayOf(b, a);
        expect(t.executions.count(key)).toBe(1);
      });
    });

    describe('first request and replays', () => {
      it('runs once; status, body and allowlisted headers are stored before the response is sent', async () => {
        const key = newKey();
        const first = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: { amount: 5 } });
        // Stored by the time the client has the answer: a retry right now is a replay, not a 409.
        const entry = await stored(key);
        expect(entry?.isCompleted()).toBe(true);
        const retry = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: { amount: 5 } });
        expect(first.status).toBe(201);
        expect(first.json()).toEqual({ n: 1, echo: { amount: 5 } });
        expectReplayOf(retry, first);
        expect(stableHeaders(retry)).toEqual(stableHeaders(first));
        expect(retry.headers.location).toBe('/items/1');
        expect(retry.headers['cache-control']).toBe('no-store');
        expect(t.executions.count(key)).toBe(1);
        // Not on the allowlist: stored nowhere, yet set again by the route's own @Header().
        expect(entry?.isCompleted() && entry.response.metadata['x-unlisted']).toBeUndefined();
      });

      it('key order in a JSON body does not matter; a different body does (422)', async () => {
        const key = newKey();
        const a = await t.client.post('/items', {
          headers: { 'idempotency-key': key },
          body: { a: 1, b: { c: 2, d: 3 } },
        });
        const b = await t.client.post('/items', {
          headers: { 'idempotency-key': key, 'content-type': 'application/json' },
          body: '{"b":{"d":3,"c":2},"a":1}',
        });
        expect(a.status).toBe(201);
        expectReplayOf(b, a);
        const c = await t.client.post('/items', {
          headers: { 'idempotency-key': key },
          body: { a: 2, b: { c: 2, d: 3 } },
        });
        expectProblem(c, 422, IDEMPOTENCY_PROBLEM_TYPES.keyReused);
        expect(t.executions.count(key)).toBe(1);
      });

      it('same key with a different method, path or query: 422', async () => {
        const key = newKey();
        const headers = { 'idempotency-key': key };
        expect((await t.client.post('/items', { headers, body: {} })).status).toBe(201);
        expectProblem(
          await t.client.request('PUT', '/items/7', { headers, body: {} }),
          422,
          IDEMPOTENCY_PROBLEM_TYPES.keyReused,
        );
        expectProblem(await t.client.post('/items/http-code', { headers }), 422, IDEMPOTENCY_PROBLEM_TYPES.keyReused);
        expectProblem(
          await t.client.post('/items?x=1', { headers, body: {} }),
          422,
          IDEMPOTENCY_PROBLEM_TYPES.keyReused,
        );
        expect(t.executions.count(key)).toBe(1);
      });

      it('retry while the first is still running: 409 with Retry-After', async () => {
        const key = newKey();
        const headers = { 'idempotency-key': key };
        const first = t.client.post('/items/gated', { headers });
        while (t.executions.count(key) === 0) await sleep(2);
        const retry = await t.client.post('/items/gated', { headers });
        expectProblem(retry, 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
        expect(retry.headers['retry-after']).toBe('1');
        t.executions.open(key);
        const done = await first;
        expect(done.status).toBe(201);
        expectReplayOf(await t.client.post('/items/gated', { headers }), done);
        expect(t.executions.count(key)).toBe(1);
      });

      it('30 concurrent identical requests run the handler exactly once', async () => {
        const key = newKey();
        const responses = await Promise.all(
          Array.from({ length: 30 }, () =>
            t.client.post('/items/sleep?ms=50', { headers: { 'idempotency-key': key } }),
          ),
        );
        expect(t.executions.count(key)).toBe(1);
        const ok = responses.filter((r) => r.status === 201);
        const busy = responses.filter((r) => r.status === 409);
        expect(ok.length + busy.length).toBe(30);
        expect(ok.length).toBeGreaterThanOrEqual(1);
        for (const r of ok) expect(r.json()).toEqual({ n: 1 });
        expect(ok.filter((r) => r.headers['idempotent-replayed'] === undefined)).toHaveLength(1);
      });

      it('replays the status set with @HttpCode(), with @Res({ passthrough: true }) and 204', async () => {
        for (const [path, status] of [
          ['/items/http-code', 202],
          ['/items/passthrough', 207],
          ['/items/no-content', 204],
        ] as const) {
          const key = newKey();
          const first = await t.client.post(path, { headers: { 'idempotency-key': key } });
          const retry = await t.client.post(path, { headers: { 'idempotency-key': key } });
          expect(first.status).toBe(status);
          expectReplayOf(retry, first);
          expect(stableHeaders(retry)).toEqual(stableHeaders(first));
          expect(t.executions.count(key)).toBe(1);
        }
      });

      it('never stores or replays Set-Cookie, even when listed; replays listed extra headers', async () => {
        const key = newKey();
        const first = await t.client.post('/items/replay-headers', { headers: { 'idempotency-key': key } });
        expect(first.headers['set-cookie']).toEqual(['session=secret; HttpOnly']);
        const entry = await stored(key);
        expect(entry?.isCompleted()).toBe(true);
        const metadata = entry!.isCompleted() ? entry!.response.metadata : {};
        expect(Object.keys(metadata).map((k) => k.toLowerCase())).not.toContain('set-cookie');
        expect(metadata['x-extra']).toBe('extra');
        // The route sets the cookie again itself (@Header), but nothing stored brings it back.
        const retry = await t.client.post('/items/replay-headers', { headers: { 'idempotency-key': key } });
        expectReplayOf(retry, first);
        expect(retry.headers['x-extra']).toBe('extra');
      });

      it('a GET route works too, and conditional requests behave as on a bare route', async () => {
        const key = newKey();
        const first = await t.client.get('/items/read', { headers: { 'idempotency-key': key } });
        const retry = await t.client.get('/items/read', { headers: { 'idempotency-key': key } });
        expect(first.status).toBe(200);
        expectReplayOf(retry, first);
        expect(stableHeaders(retry)).toEqual(stableHeaders(first));
        if (first.headers.etag !== undefined) {
          const conditional = await t.client.get('/items/read', {
            headers: { 'idempotency-key': key, 'if-none-match': first.headers.etag },
          });
          expect(conditional.status).toBe(304);
        }
      });
    });

    describe('result kinds match a bare route byte for byte', () => {
      it.each([
        'object',
        'array',
        'string',
        'empty-string',
        'number',
        'boolean',
        'null',
        'undefined',
        'buffer',
        'promise',
        'observable',
        'promised-observable',
        'json-content-type',
        'text-content-type',
      ])('%s', async (kind) => {
        const bare = await t.client.post(`/kinds/${kind}`);
        const key = newKey();
        const first = await t.client.post(`/ikinds/${kind}`, { headers: { 'idempotency-key': key } });
        const replay = await t.client.post(`/ikinds/${kind}`, { headers: { 'idempotency-key': key } });
        expect(first.status).toBe(bare.status);
        expect(first.body.equals(bare.body)).toBe(true);
        expect(stableHeaders(first)).toEqual(stableHeaders(bare));
        expectReplayOf(replay, first);
        expect(stableHeaders(replay)).toEqual(stableHeaders(first));
        const entry = await stored(key);
        expect(entry?.isCompleted() && Buffer.from(entry.response.body).equals(first.body)).toBe(true);
      });

      it('@Idempotent() on the controller and on a method: method options win, and the route is claimed once', async () => {
        expectProblem(await t.client.post('/ikinds/strict'), 400, IDEMPOTENCY_PROBLEM_TYPES.keyMissing);
        expect(t.executions.count('strict-without-key')).toBe(0);
        const key = newKey();
        const first = await t.client.post('/ikinds/strict', { headers: { 'idempotency-key': key } });
        expect(first.status).toBe(201);
        expectReplayOf(await t.client.post('/ikinds/strict', { headers: { 'idempotency-key': key } }), first);
        expect(t.executions.count(key)).toBe(1);
      });

      it('an empty Observable releases the key and answers as Nest does (500)', async () => {
        const key = newKey();
        const first = await t.client.post('/ikinds/empty', { headers: { 'idempotency-key': key } });
        expect(first.status).toBe(500);
        expect(await stored(key)).toBeUndefined();
        await t.client.post('/ikinds/empty', { headers: { 'idempotency-key': key } });
        expect(t.executions.count(key)).toBe(2);
        t.logger.clear();
      });

      it.each(['streamable', 'readable'])(
        'a %s result: a clear 500 problem, kept for the key so a retry does not run the handler again',
        async (kind) => {
          const key = newKey();
          const first = await t.client.post(`/ikinds/${kind}`, { headers: { 'idempotency-key': key } });
          expectProblem(first, 500, IDEMPOTENCY_PROBLEM_TYPES.unsupportedResult);
          expect(first.json().detail).toMatch(/cannot store/);
          const entry = await stored(key);
          expect(entry?.isCompleted() && entry.response.statusCode).toBe(500);
          const retry = await t.client.post(`/ikinds/${kind}`, { headers: { 'idempotency-key': key } });
          expectProblem(retry, 500, IDEMPOTENCY_PROBLEM_TYPES.unsupportedResult);
          expect(retry.headers['idempotent-replayed']).toBe('true');
          expect(retry.text).toBe(first.text);
          expect(t.executions.count(key)).toBe(1);
          expect(t.logger.errors.join('\n')).toMatch(/@Idempotent\(\)/);
          t.logger.clear();
        },
      );

      it('a result that cannot be serialised: a clear 500 problem, kept for the key', async () => {
        const key = newKey();
        const first = await t.client.post('/ikinds/circular', { headers: { 'idempotency-key': key } });
        expectProblem(first, 500, IDEMPOTENCY_PROBLEM_TYPES.unsupportedResult);
        expect(first.json().detail).toMatch(/cannot be stored for replay/);
        const retry = await t.client.post('/ikinds/circular', { headers: { 'idempotency-key': key } });
        expect(retry.status).toBe(500);
        expect(retry.text).toBe(first.text);
        expect(t.executions.count(key)).toBe(1);
        t.logger.clear();
      });

      it('a response over maxResponseBytes reaches the first caller in full; retries get 413', async () => {
        const key = newKey();
        const first = await t.client.post('/items/large', { headers: { 'idempotency-key': key } });
        expect(first.status).toBe(201);
        expect(first.json().filler).toHaveLength(5000);
        const retry = await t.client.post('/items/large', { headers: { 'idempotency-key': key } });
        expectProblem(retry, 413, IDEMPOTENCY_PROBLEM_TYPES.responseTooLarge);
        expect(retry.headers['idempotent-replayed']).toBe('true');
        expect(t.executions.count(key)).toBe(1);
      });
    });

    describe('errors', () => {
      it('handler throws: the key is released and a retry runs again', async () => {
        const key = newKey();
        const a = await t.client.post('/items/fail', { headers: { 'idempotency-key': key } });
        expect(a.status).toBe(500);
        expect(await stored(key)).toBeUndefined();
        const b = await t.client.post('/items/fail', { headers: { 'idempotency-key': key } });
        expect(b.status).toBe(500);
        expect(t.executions.count(key)).toBe(2);
        t.logger.clear();
      });

      it('cacheErrors keeps selected errors: the retry replays the error as Nest rendered it', async () => {
        const key = newKey();
        const a = await t.client.post('/items/fail-cached', { headers: { 'idempotency-key': key } });
        expect(a.status).toBe(400);
        expect(a.json()).toEqual({ message: 'rejected', n: 1 });
        const b = await t.client.post('/items/fail-cached', { headers: { 'idempotency-key': key } });
        expectReplayOf(b, a);
        expect(stableHeaders(b)).toEqual(stableHeaders(a));
        expect(t.executions.count(key)).toBe(1);
      });

      it('cacheErrors leaves other errors alone: released', async () => {
        const key = newKey();
        expect((await t.client.post('/items/fail-uncached', { headers: { 'idempotency-key': key } })).status).toBe(500);
        expect((await t.client.post('/items/fail-uncached', { headers: { 'idempotency-key': key } })).status).toBe(500);
        expect(t.executions.count(key)).toBe(2);
        const all = newKey();
        const a = await t.client.post('/items/fail-cached-all', { headers: { 'idempotency-key': all } });
        const b = await t.client.post('/items/fail-cached-all', { headers: { 'idempotency-key': all } });
        expect(a.status).toBe(500);
        expectReplayOf(b, a);
        expect(t.executions.count(all)).toBe(1);
        t.logger.clear();
      });

      it('store unreachable: 503 with Retry-After, handler not run', async () => {
        const key = newKey();
        store.failTryInsert = true;
        const res = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        expectProblem(res, 503, IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
        expect(res.headers['retry-after']).toBe('1');
        expect(t.executions.count(key)).toBe(0);
        t.logger.clear();
      });

      it('store unreachable with failOpen: the handler runs without idempotency, with a warning', async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { failOpen: true } });
        s.failTryInsert = true;
        const key = newKey();
        const a = await app.client.post('/items', { headers: { 'idempotency-key': key }, body: { a: 1 } });
        const b = await app.client.post('/items', { headers: { 'idempotency-key': key }, body: { a: 1 } });
        expect([a.status, b.status]).toEqual([201, 201]);
        expect(app.executions.count(key)).toBe(2);
        expect(app.logger.warnings.join('\n')).toMatch(/failOpen/);
      });

      it('storing the completion fails for a while: retried with the same token, handler ran once', async () => {
        const key = newKey();
        store.failCompletes = 3;
        const first = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        expect(first.status).toBe(201);
        const retry = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        expectReplayOf(retry, first);
        expect(t.executions.count(key)).toBe(1);
      });

      it('storing the completion keeps failing: 503, the key stays held past its lease (409), and once the store takes the result in the background, retries replay it', async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { leaseMs: 300 } });
        const key = newKey();
        const post = () => app.client.post('/items', { headers: { 'idempotency-key': key }, body: { a: 1 } });
        s.failCompletes = Number.POSITIVE_INFINITY;
        const first = await post();
        expectProblem(first, 503, IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable);
        expect(first.headers['retry-after']).toBeDefined();
        expect((await s.get(new IdempotencyKey(key)))?.isProcessing()).toBe(true);
        expectProblem(await post(), 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
        // Past the lease: the key is still held, so a retry is a 409, never a second run.
        await sleep(450);
        expectProblem(await post(), 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
        expect(app.executions.count(key)).toBe(1);
        s.failCompletes = 0;
        await eventually(async () => (await s.get(new IdempotencyKey(key)))?.isCompleted() === true);
        const replay = await post();
        expect(replay.status).toBe(201);
        expect(replay.headers['idempotent-replayed']).toBe('true');
        expect(replay.json()).toEqual({ n: 1, echo: { a: 1 } });
        expect(app.executions.count(key)).toBe(1);
        expect(app.logger.errors.join('\n')).toMatch(/could not be recorded yet/);
      });

      it('a holder whose lease was taken over: its completion is refused and its client gets the stored answer', async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { leaseMs: 200 } });
        s.failTouch = true; // the heartbeat cannot renew: the lease runs out while the handler is held
        const key = newKey();
        const slow = await heldPastLease(app, s, '/items/sleep?ms=0', { 'idempotency-key': key });
        const taker = await app.client.post('/items/sleep?ms=0', { headers: { 'idempotency-key': key, 'x-ms': '20' } });
        expect(taker.status).toBe(201);
        expect(taker.json()).toEqual({ n: 2 });
        slow.release();
        const first = await slow.response;
        expectReplayOf(first, taker);
        expect(app.executions.count(key)).toBe(2);
        expect(app.logger.warnings.join('\n')).toMatch(/refused/);
      });

      it('a holder whose lease was taken over by one still running gets 409', async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { leaseMs: 200 } });
        s.failTouch = true;
        const key = newKey();
        const slow = await heldPastLease(app, s, '/items/sleep?ms=0', { 'idempotency-key': key });
        s.failTouch = false; // the taker's heartbeat works
        const taker = app.client.post('/items/sleep?ms=0', { headers: { 'idempotency-key': key, 'x-hold': 'taker' } });
        await eventually(() => app.executions.count(key) === 2, 'the taker to run');
        slow.release();
        const first = await slow.response;
        expectProblem(first, 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
        app.executions.open('taker');
        expect((await taker).status).toBe(201);
      });

      it('a holder whose lease ran out with nobody taking the key over: its result is stored after all', async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { leaseMs: 150 } });
        s.failTouch = true; // the lease runs out while the handler sleeps; nobody claims meanwhile
        const key = newKey();
        const headers = { 'idempotency-key': key, 'x-ms': '400' };
        const first = await app.client.post('/items/sleep?ms=0', { headers });
        expect(first.status).toBe(201);
        expect(first.headers['idempotent-replayed']).toBeUndefined();
        expectReplayOf(await app.client.post('/items/sleep?ms=0', { headers }), first);
        expect(app.executions.count(key)).toBe(1);
        expect(app.logger.warnings.join('\n')).toMatch(/ran out before its result was stored/);
      });
    });

    describe('at most once, whatever happens around the handler', () => {
      it("an outer timeout interceptor answered first (408): the handler's real result is stored, and retries replay it", async () => {
        const { app, store: s } = await startExtra({ globalInterceptors: [new TimeoutInterceptor(150)] });
        const key = newKey();
        const headers = { 'idempotency-key': key };
        const first = await app.client.post('/items/sleep?ms=350', { headers });
        expect(first.status).toBe(408);
        await eventually(async () => (await s.get(new IdempotencyKey(key)))?.isCompleted() === true);
        const retry = await app.client.post('/items/sleep?ms=350', { headers });
        expect(retry.status).toBe(201);
        expect(retry.headers['idempotent-replayed']).toBe('true');
        expect(retry.headers['content-type']).toMatch(/^application\/json/);
        expect(retry.json()).toEqual({ n: 1 });
        expect(app.executions.count(key)).toBe(1);
        t.logger.clear();
      });

      it('a cached error whose lease ran out with nobody on the key is stored late: the retry replays it', async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { leaseMs: 150 } });
        s.failTouch = true; // the lease runs out while the handler sleeps
        const key = newKey();
        const headers = { 'idempotency-key': key, 'x-ms': '400' };
        const first = await app.client.post('/items/fail-cached-slow', { headers });
        expect(first.status).toBe(400);
        expect(first.json()).toEqual({ message: 'rejected', n: 1 });
        expectReplayOf(await app.client.post('/items/fail-cached-slow', { headers }), first);
        expect(app.executions.count(key)).toBe(1);
      });

      it("a cached error whose lease was taken over: its client gets the taker's stored answer, not its own error", async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { leaseMs: 200 } });
        s.failTouch = true;
        const key = newKey();
        const slow = await heldPastLease(app, s, '/items/fail-cached-first', { 'idempotency-key': key });
        const taker = await app.client.post('/items/fail-cached-first', {
          headers: { 'idempotency-key': key, 'x-ms': '20' },
        });
        expect(taker.status).toBe(201);
        expect(taker.json()).toEqual({ n: 2 });
        slow.release();
        expectReplayOf(await slow.response, taker);
      });

      it('a holder whose key was taken over by a different request gets 422, not 409', async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { leaseMs: 200 } });
        s.failTouch = true;
        const key = newKey();
        const slow = await heldPastLease(app, s, '/items/sleep?ms=0', { 'idempotency-key': key }, { a: 1 });
        s.failTouch = false;
        const other = await app.client.post('/items/sleep?ms=0', {
          headers: { 'idempotency-key': key, 'x-ms': '20' },
          body: { a: 2 },
        });
        expect(other.status).toBe(201);
        slow.release();
        expectProblem(await slow.response, 422, IDEMPOTENCY_PROBLEM_TYPES.keyReused);
      });

      it("a stale holder answering with the taker's response keeps the headers middleware set (CORS) and drops its handler's own", async () => {
        const { app, store: s } = await startExtra({ moduleOptions: { leaseMs: 200 }, cors: true });
        s.failTouch = true;
        const key = newKey();
        const headers = { 'idempotency-key': key, origin: 'https://shop.example' };
        const slow = await heldPastLease(app, s, '/items/sleep-cookie', headers);
        const taker = await app.client.post('/items/sleep-cookie', { headers: { ...headers, 'x-ms': '20' } });
        expect(taker.json()).toEqual({ n: 2 });
        expect(taker.headers['access-control-allow-origin']).toBe('*');
        slow.release();
        const first = await slow.response;
        expectReplayOf(first, taker);
        expect(first.headers['access-control-allow-origin']).toBe('*');
        expect(first.headers['set-cookie']).toBeUndefined();
        expect(first.headers['x-handler']).toBeUndefined();
      });

      it('a handler that reuses its Buffer does not change earlier replays', async () => {
        const a = newKey();
        const first = await t.client.post('/items/shared-buffer', {
          headers: { 'idempotency-key': a },
          body: { fill: 'first' },
        });
        await t.client.post('/items/shared-buffer', {
          headers: { 'idempotency-key': newKey() },
          body: { fill: 'later' },
        });
        const replay = await t.client.post('/items/shared-buffer', {
          headers: { 'idempotency-key': a },
          body: { fill: 'first' },
        });
        expectReplayOf(replay, first);
      });

      it('graceful shutdown: during the drain the store stays open, so retries replay and duplicates get 409', async () => {
        const fresh = await makeStore();
        extraStores.push(fresh);
        // The module owns the store here, so it closes it, but only once the server has stopped.
        const drain = new DrainGate();
        const started = await startApp(platform, {
          store: fresh.store,
          drain,
          moduleOptions: { closeStoreOnShutdown: true },
        });
        const done = newKey();
        const first = await started.client.post('/items', { headers: { 'idempotency-key': done }, body: { a: 1 } });
        expect(first.status).toBe(201);
        const held = newKey();
        const inFlight = started.client.post('/items/gated', { headers: { 'idempotency-key': held } });
        while (started.executions.count(held) === 0) await sleep(2);
        const closing = started.app.close();
        await drain.started; // module destroy hooks have run; the server still listens until the drain ends
        const other = new HttpClient(started.client.baseUrl);
        try {
          expectReplayOf(await other.post('/items', { headers: { 'idempotency-key': done }, body: { a: 1 } }), first);
          expectProblem(
            await other.post('/items/gated', { headers: { 'idempotency-key': held } }),
            409,
            IDEMPOTENCY_PROBLEM_TYPES.inFlight,
          );
        } finally {
          other.close();
          started.executions.open(held);
        }
        try {
          expect((await inFlight).status).toBe(201);
        } finally {
          drain.open();
        }
        await closing;
        started.client.close();
        expect(started.executions.count(done)).toBe(1);
        expect(started.executions.count(held)).toBe(1);
        if (fresh.store instanceof MemoryStore) expect(fresh.store.size).toBe(0);
      });
    });

    describe('fingerprints', () => {
      it('requests a handler can tell apart never share a fingerprint: 1e400 (Infinity) is not null', async () => {
        const key = newKey();
        const headers = { 'idempotency-key': key, 'content-type': 'application/json' };
        expect((await t.client.post('/items', { headers, body: '{"amount":1e400}' })).status).toBe(201);
        expectProblem(
          await t.client.post('/items', { headers, body: '{"amount":null}' }),
          422,
          IDEMPOTENCY_PROBLEM_TYPES.keyReused,
        );
      });

      it('a JSON object, the same text as text/plain, and a JSON string of it are different requests', async () => {
        const key = newKey();
        const text = '{"a":1}';
        const first = await t.client.post('/items', {
          headers: { 'idempotency-key': key, 'content-type': 'application/json' },
          body: text,
        });
        expect(first.status).toBe(201);
        for (const [contentType, body] of [
          ['text/plain', text],
          ['application/json', JSON.stringify(text)],
        ]) {
          const other = await t.client.post('/items', {
            headers: { 'idempotency-key': key, 'content-type': contentType },
            body,
          });
          expect(other.headers['idempotent-replayed']).toBeUndefined();
          // 422, or on Express the JSON parser's own 400 for a top-level string (strict mode).
          expect([422, 400]).toContain(other.status);
          if (other.status === 400) expect(platform).toBe('express');
        }
        expect(t.executions.count(key)).toBe(1);
      });
    });

    describe('waitMs: wait for the first request instead of 409', () => {
      let w: TestApp;
      let ws: FaultyStore;
      beforeAll(async () => {
        ({ app: w, store: ws } = await startExtra({ moduleOptions: { waitMs: 5_000 } }));
      });

      it('20 concurrent duplicates of a 300 ms handler: one run, 19 replays of the same answer', async () => {
        const key = newKey();
        const responses = await Promise.all(
          Array.from({ length: 20 }, () =>
            w.client.post('/items/sleep?ms=300', { headers: { 'idempotency-key': key } }),
          ),
        );
        expect(w.executions.count(key)).toBe(1);
        expect(responses.map((r) => r.status)).toEqual(Array(20).fill(201));
        const originals = responses.filter((r) => r.headers['idempotent-replayed'] === undefined);
        expect(originals).toHaveLength(1);
        for (const r of responses) if (r !== originals[0]) expectReplayOf(r, originals[0]);
      });

      it('a waiter is woken by the end of the first request, not by its once-a-second re-check', async () => {
        const key = newKey();
        const hold = `hold-${key}`;
        const first = w.client.post('/items/sleep', { headers: { 'idempotency-key': key, 'x-hold': hold } });
        await eventually(() => w.executions.count(key) === 1, 'the first handler to start');
        const waits = ws.waits.length;
        const waited = w.client.post('/items/sleep', { headers: { 'idempotency-key': key } });
        await eventually(() => ws.waiting === 1, 'the duplicate to wait');
        w.executions.open(hold);
        expect((await waited).status).toBe(201);
        expectReplayOf(await waited, await first);
        // Its waits ended before their re-check timer (a timer never fires early): the store woke it.
        const itsWaits = ws.waits.slice(waits);
        expect(itsWaits.length).toBeGreaterThanOrEqual(1);
        expect(itsWaits).toEqual(itsWaits.map(() => ({ timeoutMs: 1_000, early: true })));
        expect(w.executions.count(key)).toBe(1);
      });

      it('the first handler throws: exactly one waiter runs next, the others replay its answer', async () => {
        const key = newKey();
        const responses = await Promise.all(
          Array.from({ length: 10 }, () =>
            w.client.post('/items/fail-first', { headers: { 'idempotency-key': key, 'x-ms': '200' } }),
          ),
        );
        expect(w.executions.count(key)).toBe(2);
        expect(responses.filter((r) => r.status === 500)).toHaveLength(1);
        const ok = responses.filter((r) => r.status === 201);
        expect(ok).toHaveLength(9);
        expect(ok.filter((r) => r.headers['idempotent-replayed'] === undefined)).toHaveLength(1);
        for (const r of ok) expect(r.json()).toEqual({ n: 2 });
        w.logger.clear();
      });

      it('still in flight at the bound: 409 with Retry-After, after about waitMs', async () => {
        const { app } = await startExtra({ moduleOptions: { waitMs: 250 } });
        const key = newKey();
        const hold = `hold-${key}`;
        const first = app.client.post('/items/sleep', { headers: { 'idempotency-key': key, 'x-hold': hold } });
        await eventually(() => app.executions.count(key) === 1, 'the first handler to start');
        const started = Date.now();
        const waited = await app.client.post('/items/sleep', { headers: { 'idempotency-key': key } });
        expect(Date.now() - started).toBeGreaterThanOrEqual(220);
        expectProblem(waited, 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
        expect(waited.headers['retry-after']).toBe('1');
        app.executions.open(hold);
        expect((await first).status).toBe(201);
        expect(app.executions.count(key)).toBe(1);
      });

      it('a different fingerprint is 422 at once, without waiting', async () => {
        const key = newKey();
        const hold = `hold-${key}`;
        const first = w.client.post('/items/sleep', {
          headers: { 'idempotency-key': key, 'x-hold': hold },
          body: { a: 1 },
        });
        await eventually(() => w.executions.count(key) === 1, 'the first handler to start');
        const waits = ws.waits.length;
        const other = await w.client.post('/items/sleep', { headers: { 'idempotency-key': key }, body: { a: 2 } });
        // Answered while the first is still held, and without a single wait on the key.
        expectProblem(other, 422, IDEMPOTENCY_PROBLEM_TYPES.keyReused);
        expect(ws.waits.length).toBe(waits);
        expect(ws.waiting).toBe(0);
        w.executions.open(hold);
        await first;
      });

      it('a waiter whose client disconnects stops waiting and runs nothing, even when the key frees later', async () => {
        const key = newKey();
        const hold = `hold-${key}`;
        const first = w.client.post('/items/fail-first', { headers: { 'idempotency-key': key, 'x-hold': hold } });
        await eventually(() => w.executions.count(key) === 1, 'the first handler to start');
        const abort = new AbortController();
        const gone = w.client
          .post('/items/fail-first', { headers: { 'idempotency-key': key }, signal: abort.signal })
          .catch((e) => e);
        await eventually(() => ws.waiting === 1, 'the duplicate to wait');
        abort.abort();
        expect(await gone).toHaveProperty('name', 'AbortError');
        await eventually(() => ws.waiting === 0, 'the aborted waiter to stop waiting');
        w.executions.open(hold);
        expect((await first).status).toBe(500); // released: a waiter still waiting would now claim and run
        // Longer than a waiter's re-check (1 s): one still waiting, woken or not, would have run by now.
        await sleep(1_300);
        expect(w.executions.count(key)).toBe(1);
        w.logger.clear();
      });
    });

    describe('lease heartbeat', () => {
      it('a handler running 3x the lease keeps its key: a concurrent retry gets 409, never a second run', async () => {
        // A lease long enough that a loaded machine's pauses do not eat it between two renewals.
        const leaseMs = 400;
        const { app } = await startExtra({ moduleOptions: { leaseMs } });
        const key = newKey();
        const headers = { 'idempotency-key': key };
        const hold = `hold-${key}`;
        const first = app.client.post('/items/sleep', { headers: { ...headers, 'x-hold': hold } });
        await eventually(() => app.executions.count(key) === 1, 'the handler to start');
        const held = Date.now();
        for (let i = 1; i <= 3; i++) {
          await sleep(leaseMs);
          expectProblem(await app.client.post('/items/sleep', { headers }), 409, IDEMPOTENCY_PROBLEM_TYPES.inFlight);
        }
        expect(Date.now() - held).toBeGreaterThanOrEqual(3 * leaseMs);
        app.executions.open(hold);
        const done = await first;
        expect(done.status).toBe(201);
        expectReplayOf(await app.client.post('/items/sleep', { headers }), done);
        expect(app.executions.count(key)).toBe(1);
        expect(requestWarnings(app)).toEqual([]);
      });
    });

    describe('client disconnect', () => {
      it.each(['sleep', 'sleep-observable'])(
        'does not stop the result of a %s handler from being recorded',
        async (route) => {
          const key = newKey();
          const headers = { 'idempotency-key': key };
          const abort = new AbortController();
          const gone = t.client.post(`/items/${route}?ms=250`, { headers, signal: abort.signal }).catch((e) => e);
          while (t.executions.count(key) === 0) await sleep(2);
          abort.abort();
          expect(await gone).toHaveProperty('name', 'AbortError');
          await eventually(async () => (await stored(key))?.isCompleted() === true, 'the result to be stored');
          const retry = await t.client.post(`/items/${route}?ms=250`, { headers });
          expect(retry.status).toBe(201);
          expect(retry.headers['idempotent-replayed']).toBe('true');
          expect(retry.json()).toEqual({ n: 1 });
          expect(t.executions.count(key)).toBe(1);
        },
      );
    });

    describe('principal scope', () => {
      it('the same key from another principal is an unrelated key: runs normally, never 409/422', async () => {
        const key = newKey();
        const alice = await t.client.post('/items', {
          headers: { 'idempotency-key': key, 'x-user': 'alice' },
          body: { a: 1 },
        });
        const bob = await t.client.post('/items', {
          headers: { 'idempotency-key': key, 'x-user': 'bob' },
          body: { b: 2 },
        });
        const anonymous = await t.client.post('/items', { headers: { 'idempotency-key': key }, body: { d: 4 } });
        for (const r of [alice, bob, anonymous]) {
          expect(r.status).toBe(201);
          expect(r.headers['idempotent-replayed']).toBeUndefined();
        }
        // `user.sub` is used when there is no `user.id`: the same text gives the same principal.
        const again = await t.client.post('/items', {
          headers: { 'idempotency-key': key, 'x-user': 'sub:alice' },
          body: { a: 1 },
        });
        expectReplayOf(again, alice);
        expect(t.executions.count(key)).toBe(3);
        expect((await stored(key, 'alice'))?.isCompleted()).toBe(true);
      });

      it('a key in flight for one principal is free for another', async () => {
        const key = newKey();
        const first = t.client.post('/items/gated', { headers: { 'idempotency-key': key, 'x-user': 'carol' } });
        while (t.executions.count(key) === 0) await sleep(2);
        const other = t.client.post('/items/gated', { headers: { 'idempotency-key': key, 'x-user': 'dave' } });
        while (t.executions.count(key) === 1) await sleep(2);
        t.executions.open(key);
        expect((await first).status).toBe(201);
        expect((await other).status).toBe(201);
      });

      it("request.user = { userId, username } (Nest's JWT guide) scopes keys: one user's key never replays to another", async () => {
        const key = newKey();
        const post = (user: string) =>
          t.client.post('/items', { headers: { 'idempotency-key': key, 'x-user': user }, body: { a: 1 } });
        const alice = await post('userId:1');
        const bob = await post('userId:2');
        expect(bob.status).toBe(201);
        expect(bob.headers['idempotent-replayed']).toBeUndefined();
        expect(bob.json().n).toBe(alice.json().n + 1);
        expectReplayOf(await post('userId:1'), alice);
        expect(t.executions.count(key)).toBe(2);
      });

      it('refuses (500) a key from a request.user with no id the default scope knows, and logs the fix once per route', async () => {
        const { app } = await startExtra();
        for (let i = 0; i < 3; i++) {
          const key = newKey();
          const res = await app.client.post('/items', { headers: { 'idempotency-key': key, 'x-user': 'name:eve' } });
          expect(res.status).toBe(500);
          expect(res.json()).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.scopeInvalid, status: 500 });
          expect(app.executions.count(key)).toBe(0);
        }
        const errors = app.logger.errors.filter((w) => /no usable id/.test(w));
        expect(errors).toHaveLength(1);
        expect(errors[0]).toMatch(/ItemsController\.create\(\).*"scope" option/);
        // Without a key nothing is stored, so nothing needs scoping: the handler runs.
        expect((await app.client.post('/items', { headers: { 'x-user': 'name:eve' } })).status).toBe(201);
      });

      it('scope can be a function of the request, or turned off per route', async () => {
        const key = newKey();
        const a = await t.client.post('/items/custom-scope', { headers: { 'idempotency-key': key, 'x-tenant': 't1' } });
        const b = await t.client.post('/items/custom-scope', { headers: { 'idempotency-key': key, 'x-tenant': 't2' } });
        const c = await t.client.post('/items/custom-scope', { headers: { 'idempotency-key': key, 'x-tenant': 't1' } });
        expect(b.headers['idempotent-replayed']).toBeUndefined();
        expectReplayOf(c, a);
        const shared = newKey();
        const d = await t.client.post('/items/unscoped', { headers: { 'idempotency-key': shared, 'x-user': 'alice' } });
        const e = await t.client.post('/items/unscoped', { headers: { 'idempotency-key': shared, 'x-user': 'bob' } });
        expectReplayOf(e, d);
      });
    });

    describe('ClassSerializerInterceptor', () => {
      let s: TestApp;
      beforeAll(async () => {
        s = (await startExtra({ globalSerializer: true })).app;
      });

      it('a global one: @Exclude() fields never reach the store, and replays are byte-identical', async () => {
        const key = newKey();
        const bare = await s.client.post('/users/bare');
        const first = await s.client.post('/users', { headers: { 'idempotency-key': key } });
        const replay = await s.client.post('/users', { headers: { 'idempotency-key': key } });
        expect(bare.json()).toEqual({ id: 1, name: 'ada' });
        expect(first.body.equals(bare.body)).toBe(true);
        expect(stableHeaders(first)).toEqual(stableHeaders(bare));
        expectReplayOf(replay, first);
        const entry = await s.app.get(IdempotencyStore).get(new IdempotencyKey(key));
        const body = entry?.isCompleted() ? Buffer.from(entry.response.body).toString() : '';
        expect(body).toContain('ada');
        expect(body).not.toContain('s3cret');
        expect(body).not.toContain('password');
        expect(s.executions.count(key)).toBe(1);
      });

      it('honours @SerializeOptions() of the route', async () => {
        const key = newKey();
        const first = await s.client.post('/users/admin', { headers: { 'idempotency-key': key } });
        expect(first.json()).toEqual([{ id: 1, name: 'ada', role: 'admin' }]);
        expectReplayOf(await s.client.post('/users/admin', { headers: { 'idempotency-key': key } }), first);
      });

      it('a controller-level one', async () => {
        const key = newKey();
        const first = await t.client.post('/serialized', { headers: { 'idempotency-key': key } });
        expect(first.json()).toEqual({ id: 1, name: 'ada' });
        expectReplayOf(await t.client.post('/serialized', { headers: { 'idempotency-key': key } }), first);
        const entry = await stored(key);
        expect(entry?.isCompleted() && Buffer.from(entry.response.body).toString()).not.toContain('s3cret');
      });
    });

    describe('raw bodies', () => {
      it('with rawBody, the raw bytes are fingerprinted', async () => {
        const { app } = await startExtra({ rawBody: true });
        const key = newKey();
        const headers = { 'idempotency-key': key, 'content-type': 'application/json' };
        const a = await app.client.post('/items', { headers, body: '{"a":1,"b":2}' });
        const b = await app.client.post('/items', { headers, body: '{"a":1,"b":2}' });
        expectReplayOf(b, a);
        const c = await app.client.post('/items', { headers, body: '{"b":2,"a":1}' });
        expectProblem(c, 422, IDEMPOTENCY_PROBLEM_TYPES.keyReused);
      });
    });

    describe('no double replies, no leaks', () => {
      it('2,000 replays (and fresh requests) log no error, and every interceptor chain completes', async () => {
        let completed = 0;
        let collected = 0;
        const responses = new FinalizationRegistry<number>(() => collected++);
        const counting = {
          intercept: (context: { getArgByIndex(i: number): object }, next: { handle(): Observable<unknown> }) => {
            responses.register(context.getArgByIndex(1), 0);
            return new Observable((subscriber) =>
              next.handle().subscribe({
                next: (v) => subscriber.next(v),
                error: (e) => subscriber.error(e),
                complete: () => {
                  completed++;
                  subscriber.complete();
                },
              }),
            );
          },
        };
        const { app } = await startExtra({ globalInterceptors: [counting] });
        const key = newKey();
        const headers = { 'idempotency-key': key };
        const first = await app.client.post('/items', { headers, body: { x: 1 } });
        await collectGarbage();
        const before = process.memoryUsage().heapUsed;
        for (let batch = 0; batch < 20; batch++) {
          const replies = await Promise.all(
            Array.from({ length: 100 }, () => app.client.post('/items', { headers, body: { x: 1 } })),
          );
          for (const r of replies) expectReplayOf(r, first);
        }
        for (let i = 0; i < 50; i++) {
          const fresh = await app.client.post('/items/sleep-observable?ms=0', {
            headers: { 'idempotency-key': newKey() },
          });
          expect(fresh.status).toBe(201);
        }
        // A second reply to a 204 would throw on Express (it strips headers already sent).
        const noContentKey = newKey();
        for (let i = 0; i < 50; i++) {
          const r = await app.client.post('/items/no-content', { headers: { 'idempotency-key': noContentKey } });
          expect(r.status).toBe(204);
        }
        const problems = await Promise.all(
          Array.from({ length: 50 }, () => app.client.post('/items', { headers, body: { x: 2 } })),
        );
        for (const p of problems) expect(p.status).toBe(422);
        expect(completed).toBe(1 + 2000 + 50 + 50 + 50);
        expect(app.logger.errors).toEqual([]);
        expect(requestWarnings(app)).toEqual([]);
        expect(app.platformLog.lines).toEqual([]);
        expect(app.executions.count(key)).toBe(1);
        // Nothing per request is kept: the responses are garbage once answered.
        app.client.close();
        await collectGarbage();
        expect(collected).toBeGreaterThan(0.95 * completed);
        expect(process.memoryUsage().heapUsed - before).toBeLessThan(16 * 1024 * 1024);
      });
      it('an outer interceptor that maps values does not cause a second reply (it is bypassed)', async () => {
        const wrapping = {
          intercept: (_context: unknown, next: { handle(): Observable<unknown> }) =>
            next.handle().pipe(map((data) => ({ data }))),
        };
        const { app } = await startExtra({ globalInterceptors: [wrapping] });
        const key = newKey();
        const first = await app.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        const replay = await app.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        expect(first.json()).toEqual({ n: 1, echo: {} });
        expectReplayOf(replay, first);
        // Routes without @Idempotent() keep the envelope.
        expect((await app.client.post('/kinds/array')).json()).toEqual({ data: [3, { b: 2, a: 1 }, 'x'] });
        expect(app.logger.errors).toEqual([]);
        expect(app.platformLog.lines).toEqual([]);
      });
    });

    describe('module and extension points', () => {
      it('forRootAsync builds the store from injected providers and closes it on shutdown', async () => {
        const closed: string[] = [];
        // A store without lifecycle hooks of its own, so only the module's ownership rule closes it.
        class ClosingStore extends FaultyStore {
          constructor() {
            super(new MemoryStore());
          }
          override async close() {
            closed.push('closed');
            await this.inner.close();
          }
        }
        @Injectable()
        class Config {
          readonly leaseMs = 5_000;
        }
        @Module({ providers: [Config], exports: [Config] })
        class ConfigModule {}
        const { app } = await startExtra({
          module: IdempotencyModule.forRootAsync({
            imports: [ConfigModule],
            inject: [Config],
            useFactory: (config: Config) => ({ store: new ClosingStore(), leaseMs: config.leaseMs, required: true }),
          }),
        });
        expect(app.app.get(IdempotencyStore)).toBeInstanceOf(ClosingStore);
        const res = await app.client.post('/items', { body: {} });
        expectProblem(res, 400, IDEMPOTENCY_PROBLEM_TYPES.keyMissing);
        await app.close();
        extraApps.splice(extraApps.indexOf(app), 1);
        expect(closed).toEqual(['closed']);
      });

      it('forRoot leaves a store it was handed open, unless closeStoreOnShutdown', async () => {
        for (const closeStoreOnShutdown of [undefined, true]) {
          let closed = false;
          // A store without lifecycle hooks of its own, so only the module's ownership rule closes it.
          const own = new (class extends FaultyStore {
            override async close() {
              closed = true;
            }
          })(new MemoryStore());
          const started = await startApp(platform, {
            store: own,
            module: IdempotencyModule.forRoot({ store: own, closeStoreOnShutdown }),
          });
          await started.close();
          expect(closed).toBe(closeStoreOnShutdown === true);
        }
      });

      it('a MemoryStore is closed with the application, whoever made it, unless closeStoreOnShutdown: false', async () => {
        const closed = new MemoryStore();
        const once = await startApp(platform, { store: closed, module: IdempotencyModule.forRoot(closed) });
        expect((await once.client.post('/items', { headers: { 'idempotency-key': newKey() } })).status).toBe(201);
        expect(closed.size).toBe(1);
        await once.close();
        expect(closed.size).toBe(0);

        // Kept: an app restarted on it replays.
        const memory = new MemoryStore();
        extraStores.push({ store: memory, close: () => memory.close() });
        const kept = IdempotencyModule.forRoot({ store: memory, closeStoreOnShutdown: false });
        const first = await startApp(platform, { store: memory, module: kept });
        const key = newKey();
        const answer = await first.client.post('/items', { headers: { 'idempotency-key': key } });
        expect(answer.status).toBe(201);
        await first.close();
        expect(memory.size).toBe(1);
        const restarted = await startApp(platform, {
          store: memory,
          module: IdempotencyModule.forRoot({ store: memory, closeStoreOnShutdown: false }),
        });
        try {
          expectReplayOf(await restarted.client.post('/items', { headers: { 'idempotency-key': key } }), answer);
          expect(restarted.executions.count(key)).toBe(0);
        } finally {
          await restarted.close();
        }
      });

      it('refuses @Sse() and @Res() routes at bootstrap with a clear error', async () => {
        @Controller('sse')
        class SseController {
          @Sse('events')
          @Idempotent()
          events() {
            return of({ data: 1 });
          }
        }
        @Controller('res')
        class ResController {
          @Post()
          @Idempotent()
          write(@Res() res: { send(body: string): void }) {
            res.send('x');
          }
        }
        for (const controller of [SseController, ResController]) {
          const app = await NestFactory.create(
            {
              module: class BadModule {},
              imports: [IdempotencyModule.forRoot(new MemoryStore())],
              controllers: [controller],
            },
            { logger: false },
          );
          await expect(app.init()).rejects.toThrow(/@Idempotent\(\) cannot guard/);
          await app.close().catch(() => undefined);
        }
        // Listed above @Sse(), @Idempotent() sees it at once (decorators apply bottom-up).
        expect(() => {
          class Decorated {
            @Idempotent()
            @Sse('x')
            events() {
              return of(1);
            }
          }
          return Decorated;
        }).toThrow(/cannot guard the @Sse\(\) route/);
      });

      it('a subclass registered with APP_INTERCEPTOR takes over every @Idempotent() route, hooks included', async () => {
        @Injectable()
        class TenantInterceptor extends IdempotencyInterceptor {
          protected override shouldSkip(context: Parameters<IdempotencyInterceptor['intercept']>[0]): boolean {
            return context.switchToHttp().getRequest().headers['x-skip'] === '1';
          }
          protected override getKey(
            context: Parameters<IdempotencyInterceptor['intercept']>[0],
            options: ResolvedIdempotencyOptions,
          ): string | undefined {
            const key = super.getKey(context, options);
            return key === undefined ? undefined : `tenant-${key}`;
          }
        }
        const { app, store: s } = await startExtra({
          providers: [{ provide: APP_INTERCEPTOR, useClass: TenantInterceptor }],
        });
        const key = newKey();
        const a = await app.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        const b = await app.client.post('/items', { headers: { 'idempotency-key': key }, body: {} });
        expectReplayOf(b, a);
        expect((await s.get(new IdempotencyKey(`tenant-${key}`)))?.isCompleted()).toBe(true);
        expect(await s.get(new IdempotencyKey(key))).toBeUndefined();
        const skipped = await app.client.post('/items', {
          headers: { 'idempotency-key': key, 'x-skip': '1' },
          body: {},
        });
        expect(skipped.headers['idempotent-replayed']).toBeUndefined();
        expect(app.executions.count(key)).toBe(2);
      });

      it('IdempotencyStore can be injected into services', async () => {
        expect(t.app.get(IdempotencyStore)).toBe(store);
        expect(t.app.get(UsersController)).toBeDefined();
      });
    });
  });
}
