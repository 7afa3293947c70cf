/**
 * Errors the Nest way (problemBody, throwProblems with the app's exception filters), the three
 * forms of forRootAsync, and OpenAPI docs that show the module-wide key header. Real apps over
 * real HTTP, on Express and Fastify.
 */
import {
  ArgumentsHost,
  Catch,
  Controller,
  ExceptionFilter,
  Get,
  Headers,
  Injectable,
  Module,
  Post,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { randomUUID } from 'node:crypto';
import {
  Fingerprint,
  IDEMPOTENCY_PROBLEM_TYPES,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyInFlightException,
  IdempotencyKeyInvalidException,
  IdempotencyKeyMissingException,
  IdempotencyKeyReusedException,
  IdempotencyModule,
  type IdempotencyModuleConfig,
  type IdempotencyOptionsFactory,
  IdempotencyProblemException,
  IdempotencyStore,
  IdempotencyStoreUnavailableException,
  Idempotent,
  MemoryStore,
  type ProblemDetails,
} from '../../lib';
import { FaultyStore } from '../../lib/testing';
import { eventually } from '../support/eventually';
import { Executions, type Platform, startApp, type TestApp } from './http-app';

const PLATFORMS: Platform[] = ['express', 'fastify'];

/** An error body shaped like Stripe's (and many APIs'): `{ error: { type, code, message } }`. */
const stripeShape = (problem: ProblemDetails) => ({
  error: {
    type: 'idempotency_error',
    code: problem.type.split(':').pop(),
    message: problem.detail,
    status: problem.status,
  },
});

@Controller('orders')
class OrdersController {
  constructor(private readonly executions: Executions) {}

  @Post()
  @Idempotent({ required: true })
  async create(@Headers('idempotency-key') key: string, @Headers('x-hold') hold?: string) {
    const n = this.executions.hit(key);
    await this.executions.pause(undefined, hold);
    return { n };
  }
}

/** The app's own exception filter: every HttpException as a Stripe-shaped body, idempotency ones from their problem. */
@Catch(IdempotencyProblemException)
class StripeShapedFilter implements ExceptionFilter {
  readonly seen: string[] = [];
  catch(exception: IdempotencyProblemException, host: ArgumentsHost): void {
    this.seen.push(exception.constructor.name);
    const res = host.switchToHttp().getResponse();
    const body = JSON.stringify({ ...stripeShape(exception.problem), kind: exception.constructor.name });
    if (typeof res.code === 'function')
      res.code(exception.getStatus()).header('content-type', 'application/json').send(body);
    else res.status(exception.getStatus()).type('application/json').send(body);
  }
}

describe.each(PLATFORMS)('errors the Nest way on %s', (platform) => {
  const apps: TestApp[] = [];
  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  async function start(options: Parameters<typeof startApp>[1]) {
    const app = await startApp(platform, options);
    apps.push(app);
    return app;
  }

  it("problemBody renders every problem answer in the app's own shape; statuses and Retry-After stay", async () => {
    const store = new FaultyStore(new MemoryStore());
    const t = await start({
      store,
      moduleOptions: { problemBody: stripeShape },
      controllers: [OrdersController],
    });
    const key = randomUUID();
    const missing = await t.client.post('/orders');
    const invalid = await t.client.post('/orders', { headers: { 'idempotency-key': 'a:b' } });
    const slow = t.client.post('/orders', { headers: { 'idempotency-key': key, 'x-hold': key }, body: { a: 1 } });
    await eventually(() => t.executions.count(key) === 1, 'the first handler to start');
    const inFlight = await t.client.post('/orders', { headers: { 'idempotency-key': key }, body: { a: 1 } });
    t.executions.open(key);
    await slow;
    const reused = await t.client.post('/orders', { headers: { 'idempotency-key': key }, body: { a: 2 } });
    store.failNext('tryInsert', new Error('down'));
    const down = await t.client.post('/orders', { headers: { 'idempotency-key': randomUUID() } });
    const expected: [typeof missing, number, string][] = [
      [missing, 400, 'key-missing'],
      [invalid, 400, 'key-invalid'],
      [inFlight, 409, 'in-flight'],
      [reused, 422, 'key-reused'],
      [down, 503, 'store-unavailable'],
    ];
    for (const [res, status, code] of expected) {
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.json()).toEqual({
        error: { type: 'idempotency_error', code, message: expect.any(String), status },
      });
    }
    expect(inFlight.headers['retry-after']).toBe('1');
    expect(down.headers['retry-after']).toBe('1');
    t.logger.clear();
  });

  it("throwProblems hands HttpExceptions carrying the problem to the app's exception filters", async () => {
    const store = new FaultyStore(new MemoryStore());
    const filter = new StripeShapedFilter();
    const t = await start({
      store,
      moduleOptions: { throwProblems: true },
      controllers: [OrdersController],
      globalFilters: [filter],
    });
    const key = randomUUID();
    const missing = await t.client.post('/orders');
    const invalid = await t.client.post('/orders', { headers: { 'idempotency-key': '' } });
    const slow = t.client.post('/orders', { headers: { 'idempotency-key': key, 'x-hold': key }, body: { a: 1 } });
    await eventually(() => t.executions.count(key) === 1, 'the first handler to start');
    const inFlight = await t.client.post('/orders', { headers: { 'idempotency-key': key }, body: { a: 1 } });
    t.executions.open(key);
    const first = await slow;
    const reused = await t.client.post('/orders', { headers: { 'idempotency-key': key }, body: { a: 2 } });
    store.failNext('tryInsert', new Error('down'));
    const down = await t.client.post('/orders', { headers: { 'idempotency-key': randomUUID() } });
    expect(first.status).toBe(201);
    expect(filter.seen).toEqual([
      IdempotencyKeyMissingException.name,
      IdempotencyKeyInvalidException.name,
      IdempotencyInFlightException.name,
      IdempotencyKeyReusedException.name,
      IdempotencyStoreUnavailableException.name,
    ]);
    expect([missing, invalid, inFlight, reused, down].map((r) => r.status)).toEqual([400, 400, 409, 422, 503]);
    expect(reused.json()).toMatchObject({
      error: { code: 'key-reused', status: 422 },
      kind: 'IdempotencyKeyReusedException',
    });
    expect(inFlight.headers['retry-after']).toBe('1');
    expect(down.headers['retry-after']).toBe('1');
    // A replay is not a problem: it is sent as stored.
    const replay = await t.client.post('/orders', { headers: { 'idempotency-key': key }, body: { a: 1 } });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    t.logger.clear();
  });

  it('without a filter of the app, thrown problems are answered by Nest with the problem as JSON', async () => {
    const t = await start({
      store: new MemoryStore(),
      moduleOptions: { throwProblems: true },
      controllers: [OrdersController],
    });
    const res = await t.client.post('/orders');
    expect(res.status).toBe(400);
    expect(res.json()).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.keyMissing, status: 400 });
  });
});

@Injectable()
class IdempotencyConfig implements IdempotencyOptionsFactory {
  static made = 0;
  readonly store = new MemoryStore();
  createIdempotencyOptions(): IdempotencyModuleConfig {
    IdempotencyConfig.made++;
    return { store: this.store, ttlMs: 1234 };
  }
}

@Module({ providers: [IdempotencyConfig], exports: [IdempotencyConfig] })
class ConfigModule {}

describe('IdempotencyModule.forRootAsync', () => {
  async function context(imports: unknown[]) {
    @Module({ imports: imports as never[] })
    class AppModule {}
    return NestFactory.createApplicationContext(AppModule, { logger: false });
  }

  it('useClass: the module makes the factory class and asks it; the store it returns is closed on shutdown', async () => {
    const app = await context([IdempotencyModule.forRootAsync({ useClass: IdempotencyConfig })]);
    const store = app.get(IdempotencyStore) as MemoryStore;
    expect(store).toBeInstanceOf(MemoryStore);
    await store.tryInsert(IdempotencyKey.default(), new IdempotencyEntry(Fingerprint.fromBigInt(1n), 60_000));
    expect(store.size).toBe(1);
    await app.close();
    expect(store.size).toBe(0);
  });

  it('useExisting: a provider of an imported module makes the configuration', async () => {
    const before = IdempotencyConfig.made;
    const app = await context([
      IdempotencyModule.forRootAsync({ imports: [ConfigModule], useExisting: IdempotencyConfig }),
    ]);
    expect(IdempotencyConfig.made).toBe(before + 1);
    expect(app.get(IdempotencyStore)).toBe(app.get(IdempotencyConfig).store);
    await app.close();
  });

  it('refuses none or several of useFactory, useClass, useExisting with a clear error', () => {
    expect(() => IdempotencyModule.forRootAsync({})).toThrow(/exactly one of useFactory, useClass or useExisting/);
    expect(() =>
      IdempotencyModule.forRootAsync({ useClass: IdempotencyConfig, useFactory: () => new MemoryStore() }),
    ).toThrow(/exactly one/);
  });
});

describe('OpenAPI docs', () => {
  @Controller('payments')
  class PaymentsController {
    @Post()
    @Idempotent()
    create() {
      return { ok: true };
    }

    @Post('optional')
    @Idempotent({ required: false })
    optional() {
      return { ok: true };
    }

    @Get()
    list() {
      return [];
    }
  }

  it('show the module-wide header name and required-ness unless the route sets its own', async () => {
    @Module({
      imports: [IdempotencyModule.forRoot({ store: new MemoryStore(), headerName: 'X-Idem-Key', required: true })],
      controllers: [PaymentsController],
    })
    class DocsModule {}
    const app = await NestFactory.create(DocsModule, new FastifyAdapter(), { logger: false });
    const document = SwaggerModule.createDocument(app, new DocumentBuilder().setTitle('t').build());
    await app.close();
    const header = (path: string) => document.paths[path].post!.parameters?.find((p) => 'in' in p && p.in === 'header');
    expect(header('/payments')).toMatchObject({ name: 'X-Idem-Key', required: true });
    expect(header('/payments/optional')).toMatchObject({ name: 'X-Idem-Key', required: false });
    expect(document.paths['/payments'].get!.parameters?.some((p) => 'in' in p && p.in === 'header') ?? false).toBe(
      false,
    );
  });
});
