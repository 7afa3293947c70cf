import { messageOf } from '../core/errors';
import type { IdempotencyKey } from '../core/idempotency-key';
import type { IdempotencyEvent, IdempotencyEventHandler, IdempotencyOutcome } from './idempotency-event';
import { DIAGNOSTICS_CHANNELS } from './diagnostics-channels';
import { keyHash } from './key-hash';
import type { Channel } from 'node:diagnostics_channel';
import type { OtelContext, OtelSpan } from './otel-api';
import { TELEMETRY_ATTRIBUTES as A, TELEMETRY_NAMES, telemetry } from './telemetry';

/** Where the reporter writes what it cannot hand to `onEvent`. @internal */
export interface ReporterLogger {
  warn(message: string): void;
  error(message: string): void;
}

/** Optional details of a reported outcome. @internal */
export interface OutcomeDetails {
  fencingToken?: { toString(): string };
  statusCode?: number;
  error?: unknown;
}

/** The telemetry of one idempotent request: its span and the context store spans nest under. @internal */
export interface RequestTrace {
  readonly span: OtelSpan;
  readonly context: OtelContext;
}

// Outcomes that need an operator's attention are warnings; normal traffic is not logged (it goes
// to onEvent and OpenTelemetry): a line per request would cost more than the request.
const WARNINGS: Partial<Record<IdempotencyOutcome, (route: string) => string>> = {
  'stale-completion': (route) => `the completion of ${route} was refused: its lease had been taken over (fencing)`,
  'key-expired': (route) =>
    `the lease of ${route} ran out before its result was stored; storing it under a new claim if the key is free`,
  'lease-lost': (route) => `the lease of ${route} was lost while its handler runs; its result will not be stored twice`,
  'store-error': (route) => `the idempotency store failed on ${route}`,
  'fail-open': (route) => `the idempotency store is unreachable; ${route} runs without idempotency (failOpen)`,
  'completion-recovered': (route) => `the deferred result of ${route} was stored after all; retries now replay it`,
};

/**
 * Reports request outcomes to `onEvent`, OpenTelemetry (request span and `idempotency.requests`
 * counter) and the logger, with the key only as a hash. Costs nothing but a few checks when no
 * hook is set and `@opentelemetry/api` is absent.
 * @internal
 */
export class RequestReporter {
  constructor(
    private readonly logger: ReporterLogger,
    private readonly onEvent: IdempotencyEventHandler | undefined,
    private readonly storeKind: string,
    private readonly telemetryEnabled: boolean,
  ) {}

  /** Starts the request span, or `undefined` when tracing is off. */
  start(route: string, key: IdempotencyKey): RequestTrace | undefined {
    const t = this.telemetryEnabled ? telemetry() : null;
    if (t === null) return undefined;
    const span = t.tracer.startSpan(TELEMETRY_NAMES.requestSpan, {
      kind: t.api.SpanKind.INTERNAL,
      attributes: { [A.store]: this.storeKind, [A.route]: route },
    });
    if (span.isRecording()) span.setAttribute(A.keyHash, keyHash(key));
    return { span, context: t.api.trace.setSpan(t.api.context.active(), span) };
  }

  /** Runs `fn` with the request span active, so store spans become its children. */
  within<T>(trace: RequestTrace | undefined, fn: () => T): T {
    if (trace === undefined) return fn();
    return telemetry()!.api.context.with(trace.context, fn);
  }

  /**
   * Whether reporting `type` for a request that `start` gave no trace would do nothing: no
   * `onEvent` hook, no warning for it, and no telemetry to count it (an SDK can be registered
   * while a request runs). Callers then need not gather its details.
   */
  quiet(type: IdempotencyOutcome): boolean {
    return (
      this.onEvent === undefined &&
      WARNINGS[type] === undefined &&
      !DIAGNOSTICS_CHANNELS[type].hasSubscribers &&
      (!this.telemetryEnabled || telemetry() === null)
    );
  }

  /** Reports one outcome. Terminal outcomes end the request span. */
  report(
    type: IdempotencyOutcome,
    route: string,
    key: IdempotencyKey,
    trace: RequestTrace | undefined,
    details?: OutcomeDetails,
    terminal = true,
  ): void {
    const t = this.telemetryEnabled ? telemetry() : null;
    if (t !== null) {
      t.requests.add(1, { [A.outcome]: type, [A.store]: this.storeKind, [A.route]: route });
      if (trace !== undefined) {
        if (details?.fencingToken !== undefined)
          trace.span.setAttribute(A.fencingToken, details.fencingToken.toString());
        if (details?.error !== undefined && (type === 'store-error' || type === 'deferred' || type === 'released')) {
          trace.span.recordException(details.error as Error);
          trace.span.setStatus({ code: t.api.SpanStatusCode.ERROR, message: messageOf(details.error) });
        }
        if (terminal) {
          trace.span.setAttribute(A.outcome, type);
          trace.span.end();
        } else {
          trace.span.addEvent(type);
        }
      }
    }
    const warning = WARNINGS[type];
    if (warning !== undefined) {
      const cause = details?.error === undefined ? '' : `: ${messageOf(details.error)}`;
      this.logger.warn(`${warning(route)} (key ${keyHash(key)})${cause}`);
    }
    // A channel nobody subscribes to costs this one read: no message is built for it.
    const diagnostics = DIAGNOSTICS_CHANNELS[type];
    if (this.onEvent !== undefined || diagnostics.hasSubscribers) {
      this.#emit(type, route, key, details, terminal, diagnostics.hasSubscribers ? diagnostics : undefined);
    }
  }

  #emit(
    type: IdempotencyOutcome,
    route: string,
    key: IdempotencyKey,
    details: OutcomeDetails | undefined,
    terminal: boolean,
    diagnostics: Channel | undefined,
  ): void {
    let hash: string | undefined;
    const event: IdempotencyEvent = {
      type,
      terminal,
      replayed: type === 'replayed',
      get keyHash() {
        return (hash ??= keyHash(key));
      },
      store: this.storeKind,
      route,
      fencingToken: details?.fencingToken?.toString(),
      statusCode: details?.statusCode,
      error: details?.error,
    };
    if (this.onEvent !== undefined) {
      try {
        this.onEvent(event);
      } catch (error) {
        this.logger.error(`the onEvent hook threw on "${type}": ${messageOf(error)}`);
      }
    }
    // Node catches what a subscriber throws (and reports it as an uncaught exception on the next tick).
    diagnostics?.publish(event);
  }
}
