/**
 * Observability over real HTTP: OpenTelemetry spans and metrics captured with the SDK's
 * in-memory tools, the onEvent hook, logs without raw keys, Swagger docs and the health indicator.
 */
import { Controller, Get, Injectable, LoggerService, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { DataPointType, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import {
  IdempotencyEvent,
  IdempotencyHealthIndicator,
  IdempotencyModule,
  IdempotencyStore,
  Idempotent,
  MemoryStore,
} from '../../lib';
import { eventually } from '../support/eventually';
import { Executions, FaultyStore, ItemsController, Platform, startApp, TestApp } from './http-app';

class TestMetricReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** Every log line at every level, to check that no raw key is ever logged. */
class EverythingLogger implements LoggerService {
  readonly lines: string[] = [];
  private push(level: string, args: unknown[]) {
    this.lines.push(`${level} ${args.map(String).join(' ')}`);
  }
  log(...args: unknown[]) {
    this.push('log', args);
  }
  error(...args: unknown[]) {
    this.push('error', args);
  }
  warn(...args: unknown[]) {
    this.push('warn', args);
  }
  debug(...args: unknown[]) {
    this.push('debug', args);
  }
  verbose(...args: unknown[]) {
    this.push('verbose', args);
  }
}

const exporter = new InMemorySpanExporter();
const reader = new TestMetricReader();
const contextManager = new AsyncLocalStorageContextManager().enable();

beforeAll(() => {
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
});

afterAll(() => {
  trace.disable();
  metrics.disable();
  context.disable();
});

const attr = (span: ReadableSpan, name: string) => span.attributes[name];
const spansNamed = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);
const parentOf = (span: ReadableSpan) =>
  (span as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId ??
  (span as unknown as { parentSpanId?: string }).parentSpanId;

describe.each<Platform>(['express', 'fastify'])('observability on %s', (platform) => {
  let store: FaultyStore;
  let events: IdempotencyEvent[];
  let t: TestApp;
  let throwFromHook = false;

  beforeEach(async () => {
    exporter.reset();
    events = [];
    throwFromHook = false;
    store = new FaultyStore(new MemoryStore());
    t = await startApp(platform, {
      store,
      controllers: [ItemsController],
      module: IdempotencyModule.forRoot({
        store,
        onEvent: (event) => {
          events.push(event);
          if (throwFromHook) throw new Error('hook exploded');
        },
      }),
    });
  });

  afterEach(async () => {
    await t.close();
    await store.inner.close();
  });

  const post = (key: string, body: unknown = { a: 1 }) =>
    t.client.request('POST', '/items', { headers: { 'idempotency-key': key }, body });

  it('records a request span per outcome, with store spans as its children', async () => {
    const key = `trace-${platform}-1`;
    expect((await post(key)).status).toBe(201);
    expect((await post(key)).headers['idempotent-replayed']).toBe('true');
    expect((await post(key, { a: 2 })).status).toBe(422);

    const requests = spansNamed('idempotency.request');
    expect(requests.map((s) => attr(s, 'idempotency.outcome'))).toEqual([
      'executed',
      'replayed',
      'fingerprint-mismatch',
    ]);
    for (const span of requests) {
      expect(attr(span, 'idempotency.store')).toBe('faulty-memory');
      expect(attr(span, 'http.route')).toBe('POST /items');
      expect(attr(span, 'idempotency.key_hash')).toMatch(/^[0-9a-f]{12}$/);
      expect(JSON.stringify(span.attributes)).not.toContain(key);
    }
    expect(attr(requests[0], 'idempotency.fencing_token')).toBe('1');

    const claims = spansNamed('idempotency.store.claim');
    const completes = spansNamed('idempotency.store.complete');
    expect(claims.map((s) => attr(s, 'idempotency.outcome'))).toEqual(['claimed', 'exists', 'exists']);
    expect(completes.map((s) => attr(s, 'idempotency.outcome'))).toEqual(['applied']);
    expect(parentOf(claims[0])).toBe(requests[0].spanContext().spanId);
    expect(parentOf(completes[0])).toBe(requests[0].spanContext().spanId);
    expect(parentOf(claims[1])).toBe(requests[1].spanContext().spanId);
  });

  it('marks store errors on the spans and records the exception', async () => {
    store.failTryInsert = true;
    expect((await post(`trace-${platform}-down`)).status).toBe(503);
    const [request] = spansNamed('idempotency.request');
    expect(attr(request, 'idempotency.outcome')).toBe('store-error');
    expect(request.status.code).toBe(2); // SpanStatusCode.ERROR
    expect(request.events.some((e) => e.name === 'exception')).toBe(true);
    const [claim] = spansNamed('idempotency.store.claim');
    expect(attr(claim, 'idempotency.outcome')).toBe('store-error');
    expect(claim.status.code).toBe(2);
  });

  it('counts requests per outcome and measures store latency', async () => {
    const key = `metrics-${platform}`;
    await post(key);
    await post(key);
    const { resourceMetrics } = await reader.collect();
    const all = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const requests = all.find((m) => m.descriptor.name === 'idempotency.requests');
    const duration = all.find((m) => m.descriptor.name === 'idempotency.store.duration');
    expect(requests?.dataPointType).toBe(DataPointType.SUM);
    const countOf = (outcome: string) =>
      requests!.dataPoints
        .filter(
          (p) =>
            p.attributes['idempotency.outcome'] === outcome && p.attributes['idempotency.store'] === 'faulty-memory',
        )
        .reduce((n, p) => n + (p.value as number), 0);
    expect(countOf('executed')).toBeGreaterThanOrEqual(1);
    expect(countOf('replayed')).toBeGreaterThanOrEqual(1);
    expect(duration?.dataPointType).toBe(DataPointType.HISTOGRAM);
    expect(duration?.descriptor.unit).toBe('ms');
    expect(duration!.dataPoints.some((p) => p.attributes['idempotency.operation'] === 'claim')).toBe(true);
  });

  it('calls onEvent once per outcome with the right type', async () => {
    const key = `events-${platform}`;
    await post(key);
    await post(key);
    await post(key, { a: 3 });
    const gated = `events-gated-${platform}`;
    const first = t.client.request('POST', '/items/gated', { headers: { 'idempotency-key': gated } });
    await eventually(() => t.executions.count(gated) === 1, 'the first handler to start');
    expect((await t.client.request('POST', '/items/gated', { headers: { 'idempotency-key': gated } })).status).toBe(
      409,
    );
    t.executions.open(gated);
    await first;
    store.failTryInsert = true;
    await post(`events-down-${platform}`);
    expect(events.map((e) => e.type)).toEqual([
      'executed',
      'replayed',
      'fingerprint-mismatch',
      'in-flight',
      'executed',
      'store-error',
    ]);
    expect(events.every((e) => e.terminal)).toBe(true);
    expect(events[0]).toMatchObject({
      store: 'faulty-memory',
      route: 'POST /items',
      fencingToken: '1',
      statusCode: 201,
    });
    expect(events[0].keyHash).toMatch(/^[0-9a-f]{12}$/);
    expect(events[1].keyHash).toBe(events[0].keyHash);
    expect(events[3]).toMatchObject({ route: 'POST /items/gated', statusCode: 409 });
    expect(events[5].error).toBeInstanceOf(Error);
  });

  it('a throwing onEvent hook changes no response and is logged', async () => {
    throwFromHook = true;
    const key = `throwing-${platform}`;
    const first = await post(key);
    const again = await post(key);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(t.executions.count(key)).toBe(1);
    expect(t.logger.errors.join('\n')).toMatch(/onEvent hook threw on "executed": hook exploded/);
  });
});

describe('logs', () => {
  it('never contain a raw key, at any level', async () => {
    const logger = new EverythingLogger();
    const store = new FaultyStore(new MemoryStore());
    @Module({ imports: [IdempotencyModule.forRoot(store)], controllers: [ItemsController], providers: [Executions] })
    class LogModule {}
    // Every log level on, then our logger.
    const app = await NestFactory.create(LogModule, new ExpressAdapter(), {
      logger: ['log', 'error', 'warn', 'debug', 'verbose'],
    });
    app.useLogger(logger);
    await app.listen(0, '127.0.0.1');
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    const key = 'secret-key-7f3a9c';
    const send = (body: unknown, path = '/items', k = key) =>
      fetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': k },
        body: JSON.stringify(body),
      });
    await send({ a: 1 });
    await send({ a: 1 });
    await send({ a: 2 });
    store.failTryInsert = true;
    await send({ a: 1 }, '/items', `${key}-down`);
    store.failTryInsert = false;
    store.failCompletes = 1000;
    await send({ a: 1 }, '/items', `${key}-unrecorded`);
    store.failCompletes = 0; // the background completion then stores the result
    await app.close();
    await store.inner.close();
    const text = logger.lines.join('\n');
    expect(text).toMatch(/the idempotency store failed on POST \/items \(key [0-9a-f]{12}\)/); // warnings are there...
    expect(text).toMatch(/could not be recorded yet/);
    expect(text).not.toContain(key); // ...but never a key itself
    // Normal traffic writes no line per request, at any level.
    expect(text).not.toMatch(/replayed|executed on/);
  });
});

describe('Swagger', () => {
  @Controller('payments')
  class PaymentsController {
    @Post()
    @Idempotent({ required: true })
    create() {
      return { ok: true };
    }

    @Get()
    list() {
      return [];
    }
  }

  it('documents the key header and the idempotency answers on @Idempotent() routes only', async () => {
    @Module({ imports: [IdempotencyModule.forRoot(new MemoryStore())], controllers: [PaymentsController] })
    class SwaggerAppModule {}
    const app = await NestFactory.create(SwaggerAppModule, new FastifyAdapter(), { logger: false });
    await app.init();
    const document = SwaggerModule.createDocument(app, new DocumentBuilder().setTitle('t').build());
    await app.close();
    const post = document.paths['/payments'].post!;
    const header = post.parameters?.find((p) => 'name' in p && p.name === 'Idempotency-Key');
    expect(header).toMatchObject({ in: 'header', required: true, schema: { type: 'string', maxLength: 255 } });
    expect(Object.keys(post.responses)).toEqual(expect.arrayContaining(['400', '409', '413', '422', '503']));
    expect(post.responses['409']).toMatchObject({ content: { 'application/problem+json': expect.any(Object) } });
    const get = document.paths['/payments'].get!;
    expect(get.parameters?.some((p) => 'name' in p && p.name === 'Idempotency-Key') ?? false).toBe(false);
  });

  it("shows the longest key maxKeyLength allows: the module's, or the route's own", async () => {
    @Controller('refunds')
    class RefundsController {
      @Post()
      @Idempotent()
      create() {
        return { ok: true };
      }

      @Post('bulk')
      @Idempotent({ maxKeyLength: 64 })
      bulk() {
        return { ok: true };
      }
    }
    @Module({
      imports: [IdempotencyModule.forRoot({ store: new MemoryStore(), maxKeyLength: 1024 })],
      controllers: [RefundsController],
    })
    class LongKeysModule {}
    const app = await NestFactory.create(LongKeysModule, new FastifyAdapter(), { logger: false });
    await app.init();
    const document = SwaggerModule.createDocument(app, new DocumentBuilder().setTitle('t').build());
    await app.close();
    const headerOf = (path: string) =>
      document.paths[path].post!.parameters?.find((p) => 'name' in p && p.name === 'Idempotency-Key');
    expect(headerOf('/refunds')).toMatchObject({
      schema: { type: 'string', maxLength: 1024 },
      description: expect.stringContaining('1-1024 bytes'),
    });
    expect(headerOf('/refunds/bulk')).toMatchObject({ schema: { maxLength: 64 } });
  });
});

describe('IdempotencyHealthIndicator', () => {
  @Injectable()
  class SlowStore extends MemoryStore {
    delayMs = 0;
    override async ping(): Promise<void> {
      await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    }
  }

  it('reports up when the store answers in time and down otherwise', async () => {
    const store = new SlowStore();
    @Module({ imports: [IdempotencyModule.forRoot(store)] })
    class HealthModule {}
    const app = await NestFactory.createApplicationContext(HealthModule, { logger: false });
    const health = app.get(IdempotencyHealthIndicator);
    expect(app.get(IdempotencyStore)).toBe(store);
    const up = await health.isHealthy('idempotency', { timeoutMs: 200 });
    expect(up.idempotency).toMatchObject({ status: 'up', store: 'memory', latencyMs: expect.any(Number) });
    store.delayMs = 300;
    const down = await health.isHealthy('store', { timeoutMs: 50 });
    expect(down.store).toMatchObject({ status: 'down', store: 'memory', message: expect.stringMatching(/50 ms/) });
    await app.close();
    await store.close();
  });
});
