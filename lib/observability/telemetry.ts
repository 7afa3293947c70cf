import type * as OtelApi from '@opentelemetry/api';

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

type Api = typeof OtelApi;
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
  tracer: OtelApi.Tracer;
  requests: OtelApi.Counter;
  storeDuration: OtelApi.Histogram;
  capacity: OtelApi.Counter;
}

let instruments: Instruments | null | undefined;
let meterProvider: unknown;

/**
 * The tracer and metric instruments. The tracer goes through the API's proxy provider; the
 * metrics API has no proxy, so the instruments are made again when the global meter provider
 * changes (an SDK registered after start-up still receives everything).
 * @internal
 */
export function telemetry(): Instruments | null {
  if (instruments === null) return null;
  if (instruments !== undefined && instruments.api.metrics.getMeterProvider() === meterProvider) return instruments;
  {
    const a = otel();
    if (a === null) {
      instruments = null;
    } else {
      meterProvider = a.metrics.getMeterProvider();
      const meter = a.metrics.getMeter(TELEMETRY_NAMES.tracer);
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
    }
  }
  return instruments;
}
