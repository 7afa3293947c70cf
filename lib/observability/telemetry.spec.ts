import * as otelApi from '@opentelemetry/api';
import { metrics, trace } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import type { OtelApi } from './otel-api';
import { otel, telemetry } from './telemetry';

// The shapes declared for the published types (otel-api.ts) are ones the real module satisfies:
// this line stops compiling (`tsc -p tsconfig.json`) the day they part.
const realApi: OtelApi = otelApi;

describe('telemetry()', () => {
  afterEach(() => {
    trace.disable();
    metrics.disable();
  });

  it('loads the installed @opentelemetry/api, whose shape the declarations describe', () => {
    expect(otel()).toBe(realApi);
  });

  it('is null while no OpenTelemetry SDK is registered, so no span or metric call is made', () => {
    expect(telemetry()).toBeNull();
  });

  it('turns on when a tracer provider is registered later, and off again when it goes', () => {
    expect(telemetry()).toBeNull();
    trace.setGlobalTracerProvider(new BasicTracerProvider());
    const t = telemetry();
    expect(t).not.toBeNull();
    expect(t!.tracer.startSpan('x').isRecording()).toBe(true);
    trace.disable();
    expect(telemetry()).toBeNull();
  });

  it('turns on for a meter provider alone', () => {
    metrics.setGlobalMeterProvider(new MeterProvider());
    expect(telemetry()).not.toBeNull();
  });
});
