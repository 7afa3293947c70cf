/**
 * Issue 17, defects 1 and 9 (DESIGN 7.1): no cross-principal replay, ever. A `request.user` id
 * that is a bigint scopes keys like a string or number does; a `request.user` without a usable id,
 * and a `scope` function answering something other than an id, refuse the request (500 problem,
 * one log line naming the fix) instead of running it unscoped. Over real HTTP on Express and
 * Fastify.
 */
import { CanActivate, Controller, ExecutionContext, Headers, Injectable, Post, UseGuards } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { IDEMPOTENCY_PROBLEM_TYPES, Idempotent, MemoryStore } from '../../lib';
import { Executions, type Platform, startApp, type TestApp } from '../e2e/http-app';

/** Sets `request.user` from the `x-as` header, the way an auth guard would (see `userOf`). */
@Injectable()
class UserGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest();
    const as = req.headers['x-as'];
    if (typeof as === 'string') req.user = userOf(as);
    return true;
  }
}

function userOf(as: string): unknown {
  const [kind, value] = as.split('=', 2);
  switch (kind) {
    case 'bigint': // Prisma and TypeORM bigint primary keys
      return { id: BigInt(value), name: 'big' };
    case 'empty-id':
      return { id: '', email: 'x@example.com' };
    case 'nan':
      return { id: Number.NaN };
    case 'no-id':
      return { email: 'x@example.com' };
    case 'string-user':
      return value;
    default:
      return undefined;
  }
}

/** A Mongo `ObjectId`-like value: an object, not an id. */
class ObjectIdLike {
  constructor(readonly hex: string) {}
  toString(): string {
    return this.hex;
  }
}

@Controller('scoped')
@UseGuards(UserGuard)
class ScopedController {
  constructor(private readonly executions: Executions) {}

  @Post('default')
  @Idempotent()
  byDefault(@Headers('idempotency-key') key: string, @Headers('x-as') as: string) {
    return { n: this.executions.hit(key), as };
  }

  @Post('object')
  @Idempotent({ scope: (req) => new ObjectIdLike(String(req.headers['x-org'])) as never })
  object(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('query')
  @Idempotent({ scope: (req) => req.query.tenant })
  query(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }

  @Post('off')
  @Idempotent({ scope: false })
  off(@Headers('idempotency-key') key: string) {
    return { n: this.executions.hit(key) };
  }
}

describe.each<Platform>(['express', 'fastify'])('scoping at the edges (%s)', (platform) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp(platform, { store: new MemoryStore(), controllers: [ScopedController] });
  });
  afterAll(() => t?.close());

  const post = (path: string, key: string, headers: Record<string, string | string[]> = {}) =>
    t.client.post(path, { headers: { 'idempotency-key': key, ...headers } });

  it('bigint ids scope keys: user 2 never gets user 1 replayed; user 1 does', async () => {
    const key = randomUUID();
    const one = await post('/scoped/default', key, { 'x-as': 'bigint=1' });
    const two = await post('/scoped/default', key, { 'x-as': 'bigint=2' });
    expect(one.status).toBe(201);
    expect(two.status).toBe(201);
    expect(two.headers['idempotent-replayed']).toBeUndefined();
    expect(two.json()).toEqual({ n: 2, as: 'bigint=2' });
    const again = await post('/scoped/default', key, { 'x-as': 'bigint=1' });
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json()).toEqual(one.json());
    expect(t.executions.count(key)).toBe(2);
  });

  it.each(['no-id', 'empty-id', 'nan', 'string-user=alice'])(
    'a request.user without a usable id (%s) is refused with a 500 problem, never run unscoped',
    async (as) => {
      const keys = [randomUUID(), randomUUID()];
      for (const key of keys) {
        const res = await post('/scoped/default', key, { 'x-as': as });
        expect(res.status).toBe(500);
        expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
        expect(res.json()).toEqual({
          type: IDEMPOTENCY_PROBLEM_TYPES.scopeInvalid,
          title: 'Idempotency scope unknown',
          status: 500,
          detail:
            'The server could not tell which principal this request belongs to, so it did not process it under its idempotency key.',
        });
        expect(t.executions.count(key)).toBe(0);
      }
    },
  );

  it('says why, with the fix, in one log line per route', async () => {
    const logged = t.logger.errors.filter((line) => /ScopedController\.byDefault\(\)/.test(line));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/request\.user has no usable id/);
    expect(logged[0]).toMatch(/"scope" option/);
  });

  it('a scope function that answers an object (an ObjectId) refuses the request; org B never gets org A replayed', async () => {
    const key = randomUUID();
    const a = await post('/scoped/object', key, { 'x-org': 'aaaa' });
    const b = await post('/scoped/object', key, { 'x-org': 'bbbb' });
    expect([a.status, b.status]).toEqual([500, 500]);
    expect(b.json().type).toBe(IDEMPOTENCY_PROBLEM_TYPES.scopeInvalid);
    expect(t.executions.count(key)).toBe(0);
    expect(t.logger.errors.some((line) => /returned an object \(ObjectIdLike\)/.test(line))).toBe(true);
  });

  it('a scope parameter sent twice (an array) refuses the request; an empty one too', async () => {
    const key = randomUUID();
    const twice = await post('/scoped/query?tenant=t1&tenant=t2', key);
    expect(twice.status).toBe(500);
    expect(twice.json().type).toBe(IDEMPOTENCY_PROBLEM_TYPES.scopeInvalid);
    const empty = await post('/scoped/query?tenant=', key);
    expect(empty.status).toBe(500);
    expect(t.executions.count(key)).toBe(0);
    expect(t.logger.errors.some((line) => /returned an array/.test(line))).toBe(true);
    // One tenant is a scope; no tenant at all is "no principal".
    expect((await post('/scoped/query?tenant=t1', key)).status).toBe(201);
    expect((await post('/scoped/query', randomUUID())).status).toBe(201);
  });

  it('scope: false stays unscoped on purpose, whatever request.user holds', async () => {
    const key = randomUUID();
    const first = await post('/scoped/off', key, { 'x-as': 'no-id' });
    const other = await post('/scoped/off', key, { 'x-as': 'bigint=7' });
    expect(first.status).toBe(201);
    expect(other.headers['idempotent-replayed']).toBe('true');
    expect(t.executions.count(key)).toBe(1);
  });
});
