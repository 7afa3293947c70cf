/**
 * The parts of `@opentelemetry/api` this package uses, declared here structurally (as
 * `ValkeyClient` is for ioredis) so that the published declarations never name the optional peer:
 * an app without `@opentelemetry/api` compiles them with `skipLibCheck: false`. The real module
 * satisfies these shapes; `telemetry.spec.ts` checks it at compile time.
 * @internal
 */
export interface OtelApi {
  readonly trace: {
    getTracerProvider(): object;
    getTracer(name: string): OtelTracer;
    setSpan(context: OtelContext, span: OtelSpan): OtelContext;
  };
  readonly context: {
    active(): OtelContext;
    with<T>(context: OtelContext, fn: () => T): T;
  };
  readonly metrics: {
    getMeterProvider(): { getMeter(name: string): OtelMeter };
  };
  readonly ProxyTracerProvider: new () => { getDelegate(): object };
  createNoopMeter(): OtelMeter;
  readonly SpanKind: { readonly INTERNAL: number; readonly CLIENT: number };
  readonly SpanStatusCode: { readonly ERROR: number };
}

/** Span and metric attributes. @internal */
export type OtelAttributes = Record<string, string | number | boolean | undefined>;

/** An OpenTelemetry context: opaque here. @internal */
export interface OtelContext {
  getValue(key: symbol): unknown;
}

/** @internal */
export interface OtelSpan {
  isRecording(): boolean;
  setAttribute(key: string, value: string | number | boolean): this;
  addEvent(name: string): this;
  setStatus(status: { code: number; message?: string }): this;
  recordException(exception: Error | string): void;
  end(): void;
}

/** @internal */
export interface OtelTracer {
  startSpan(name: string, options?: { kind?: number; attributes?: OtelAttributes }): OtelSpan;
}

/** @internal */
export interface OtelMeter {
  createCounter(name: string, options?: { description?: string; unit?: string }): OtelCounter;
  createHistogram(name: string, options?: { description?: string; unit?: string }): OtelHistogram;
}

/** @internal */
export interface OtelCounter {
  add(value: number, attributes?: OtelAttributes): void;
}

/** @internal */
export interface OtelHistogram {
  record(value: number, attributes?: OtelAttributes): void;
}
