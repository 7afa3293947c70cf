import type { OtelApi, OtelCounter, OtelHistogram, OtelTracer } from './otel-api';

/** Span and metric names (see the README's "Observability"). */
export const TELEMETRY_NAMES = {
  tracer: 'nestjs-idempotent',
  requestSpan: 'idempotency.request',
  storeSpanPrefix: 'idempotency.store.',
  requestsCounter: 'idempotency.requests',
  storeDuration: 'idempotency.store.duration',
  storeCapacity: 'idempotency.store.capacity_events',
} as const;

/** Span attribute names. */
export const TELEMETRY_ATTRIBUTES = {
  outcome: 'idempotency.outcome',
  store: 'idempotency.store',
  operation: 'idempotency.operation',
  keyHash: 'idempotency.key_hash',
  route: 'http.route',
  fencingToken: 'idempotency.fencing_token',
  capacityEvent: 'idempotency.capacity_event',
} as const;

type Api = OtelApi;
let api: Api | null | undefined;

/**
 * `@opentelemetry/api` when installed, else `null`: it is an optional peer dependency, and
 * without it every telemetry call is skipped.
 * @internal
 */
export function otel(): Api | null {
  if (api === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      api = require('@opentelemetry/api') as Api;
    } catch {
      api = null;
    }
  }
  return api;
}

/** @internal */
export interface Instruments {
  api: Api;
  tracer: OtelTracer;
  requests: OtelCounter;
  storeDuration: OtelHistogram;
  capacity: OtelCounter;
}

let instruments: Instruments | undefined;
let seenTracerDelegate: unknown;
let seenMeterProvider: unknown;
let active = false;
let noopTracerProvider: unknown;

/**
 * The tracer and metric instruments, or `null` when `@opentelemetry/api` is not installed or no
 * SDK is registered (neither a tracer provider nor a meter provider): then every telemetry call is
 * skipped, at the cost of two global lookups. An SDK registered after start-up is picked up (the
 * providers are looked up on each call), and the metric instruments are made again for a new
 * meter provider (the metrics API has no proxy).
 * @internal
 */
export function telemetry(): Instruments | null {
  const a = otel();
  if (a === null) return null;
  const tracerDelegate = (a.trace.getTracerProvider() as { getDelegate?(): unknown }).getDelegate?.();
  const meterProvider = a.metrics.getMeterProvider();
  if (tracerDelegate === seenTracerDelegate && meterProvider === seenMeterProvider) {
    return active ? instruments! : null;
  }
  seenTracerDelegate = tracerDelegate;
  seenMeterProvider = meterProvider;
  noopTracerProvider ??= new a.ProxyTracerProvider().getDelegate();
  const meter = meterProvider.getMeter(TELEMETRY_NAMES.tracer);
  active = tracerDelegate !== noopTracerProvider || meter !== a.createNoopMeter();
  if (!active) return null;
  instruments = {
    api: a,
    tracer: a.trace.getTracer(TELEMETRY_NAMES.tracer),
    requests: meter.createCounter(TELEMETRY_NAMES.requestsCounter, {
      description: 'Idempotent requests by outcome',
    }),
    storeDuration: meter.createHistogram(TELEMETRY_NAMES.storeDuration, {
      description: 'Latency of idempotency store operations',
      unit: 'ms',
    }),
    capacity: meter.createCounter(TELEMETRY_NAMES.storeCapacity, {
      description: 'A bounded store passed 80% of its bound, refused a claim for want of room, or evicted entries',
    }),
  };
  return instruments;
}
