/**
 * docs/stores.md (MemoryStore `onWarning`) and docs/observability.md: a bounded MemoryStore warns
 * at 80% of a bound, on refusals and on evictions, each also counted by the
 * `idempotency.store.capacity_events` counter (attributes `idempotency.store`,
 * `idempotency.capacity_event`: `high-water`, `refused`, `evicted`). The warnings go to the Nest
 * logger inside the module. A real Nest HTTP app on a real port; metrics read with an
 * OpenTelemetry in-memory metric reader.
 */
import { Body, Controller, type LoggerService, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { metrics } from '@opentelemetry/api';
import { DataPointType, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { randomUUID } from 'node:crypto';
import { IDEMPOTENCY_PROBLEM_TYPES, IdempotencyModule, Idempotent, MemoryStore, TELEMETRY_NAMES } from '../../lib';

class TestMetricReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** The MemoryStore's own warnings the Nest logger gets (not the per-request store-error lines). */
class CapturingLogger implements LoggerService {
  readonly warnings: string[] = [];
  log(): void {}
  error(): void {}
  warn(message: unknown): void {
    if (String(message).startsWith('MemoryStore')) this.warnings.push(String(message));
  }
}

const reader = new TestMetricReader();
let runs = 0;

@Controller('things')
class ThingsController {
  @Post()
  @Idempotent()
  create(@Body() body: { name: string }) {
    runs++;
    return { name: body.name };
  }
}

type CapacityEvent = 'high-water' | 'refused' | 'evicted';

/** The counter's value per capacity event, for the `memory` store, now. */
async function capacityCounts(): Promise<Record<CapacityEvent, number>> {
  const { resourceMetrics } = await reader.collect();
  const metric = resourceMetrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === TELEMETRY_NAMES.storeCapacity);
  const counts: Record<CapacityEvent, number> = { 'high-water': 0, refused: 0, evicted: 0 };
  if (metric === undefined) return counts;
  expect(metric.dataPointType).toBe(DataPointType.SUM);
  for (const point of metric.dataPoints) {
    expect(point.attributes['idempotency.store']).toBe('memory');
    counts[point.attributes['idempotency.capacity_event'] as CapacityEvent] += point.value as number;
  }
  return counts;
}

const delta = (before: Record<CapacityEvent, number>, after: Record<CapacityEvent, number>) => ({
  'high-water': after['high-water'] - before['high-water'],
  refused: after.refused - before.refused,
  evicted: after.evicted - before.evicted,
});

async function startApp(store: MemoryStore, logger: LoggerService) {
  @Module({ imports: [IdempotencyModule.forRoot({ store })], controllers: [ThingsController] })
  class AppModule {}
  const app = await NestFactory.create(AppModule, { logger });
  await app.listen(0, '127.0.0.1');
  const url = `${await app.getUrl()}/things`.replace('[::1]', '127.0.0.1');
  const post = (key: string) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ name: key }),
    });
  return { post, close: () => app.close() };
}

beforeAll(() => {
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
});

afterAll(() => {
  metrics.disable();
});

describe('docs/stores.md: idempotency.store.capacity_events counts MemoryStore warnings', () => {
  it("whenFull 'refuse' (maxEntries: 5): one high-water warning at 80%, then one per refused claim (503), each counted", async () => {
    const logger = new CapturingLogger();
    const store = new MemoryStore({ maxEntries: 5 });
    const app = await startApp(store, logger);
    try {
      const before = await capacityCounts();
      // 4 entries: not over 80% of 5.
      for (let i = 0; i < 4; i++) expect((await app.post(randomUUID())).status).toBe(201);
      expect(delta(before, await capacityCounts())).toEqual({ 'high-water': 0, refused: 0, evicted: 0 });
      expect(logger.warnings).toEqual([]);
      // The 5th passes 80%: one warning, counted once.
      expect((await app.post(randomUUID())).status).toBe(201);
      expect(delta(before, await capacityCounts())).toEqual({ 'high-water': 1, refused: 0, evicted: 0 });
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]).toMatch(/MemoryStore holds over 80% of its bound/);
      // Full: each new claim is refused (503 store-unavailable), warned and counted.
      const runsBefore = runs;
      for (let i = 0; i < 3; i++) {
        const refused = await app.post(randomUUID());
        expect(refused.status).toBe(503);
        expect(await refused.json()).toMatchObject({ type: IDEMPOTENCY_PROBLEM_TYPES.storeUnavailable });
      }
      expect(runs).toBe(runsBefore);
      expect(delta(before, await capacityCounts())).toEqual({ 'high-water': 1, refused: 3, evicted: 0 });
      expect(logger.warnings).toHaveLength(4);
      expect(logger.warnings.slice(1).every((w) => /MemoryStore is full/.test(w))).toBe(true);
    } finally {
      await app.close();
      await store.close();
    }
  });

  it("whenFull 'evict-completed' (maxEntries: 5): one high-water warning, then one eviction per new claim when full, each counted; evicted keys run again", async () => {
    const logger = new CapturingLogger();
    const store = new MemoryStore({ maxEntries: 5, whenFull: 'evict-completed' });
    const app = await startApp(store, logger);
    try {
      const before = await capacityCounts();
      const keys = Array.from({ length: 5 }, () => randomUUID());
      for (const key of keys) expect((await app.post(key)).status).toBe(201);
      expect(delta(before, await capacityCounts())).toEqual({ 'high-water': 1, refused: 0, evicted: 0 });
      expect(logger.warnings).toHaveLength(1);
      // Full: each new claim evicts the oldest completed entry (down to 90% of the bound: one).
      for (let i = 0; i < 2; i++) expect((await app.post(randomUUID())).status).toBe(201);
      expect(delta(before, await capacityCounts())).toEqual({ 'high-water': 1, refused: 0, evicted: 2 });
      expect(logger.warnings).toHaveLength(3);
      expect(logger.warnings.slice(1)).toEqual([
        expect.stringMatching(/evicted the 1 entries completed longest ago/),
        expect.stringMatching(/evicted the 1 entries completed longest ago/),
      ]);
      expect(store.size).toBe(5);
      // The guarantee is weakened, as documented: the oldest key was evicted, its retry runs again.
      const runsBefore = runs;
      const retry = await app.post(keys[0]);
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBeNull();
      expect(runs).toBe(runsBefore + 1);
    } finally {
      await app.close();
      await store.close();
    }
  });
});
