import type { Logger } from '@nestjs/common';
import { IdempotencyStore } from '../core/idempotency-store';
import type { ResolvedIdempotencyOptions } from '../idempotency.options';
import { InstrumentedStore } from '../observability/instrumented.store';
import { SealingStore } from '../core/sealing.store';
import { otel } from '../observability/telemetry';
import { RequestReporter } from '../observability/request-reporter';
import { ValueRunner } from './value-runner';

/**
 * What every entry point (HTTP routes, message handlers, resolvers, IdempotencyService) works
 * through, made once on first use: the store (wrapped for OpenTelemetry store spans when
 * telemetry is on), the reporter of outcomes, and the value runner.
 * @internal
 */
export class CallEngines {
  #store: IdempotencyStore | undefined;
  #reporter: RequestReporter | undefined;
  #valueRunner: ValueRunner | undefined;

  constructor(
    private readonly configured: IdempotencyStore,
    private readonly options: ResolvedIdempotencyOptions,
    readonly logger: Logger,
  ) {}

  get store(): IdempotencyStore {
    return (this.#store ??= operationalStore(this.configured, this.options));
  }

  get reporter(): RequestReporter {
    const logger = this.logger;
    return (this.#reporter ??= new RequestReporter(
      { warn: (message) => logger.warn(message), error: (message) => logger.error(message) },
      this.options.onEvent,
      this.configured.kind,
      this.options.telemetry,
    ));
  }

  get valueRunner(): ValueRunner {
    return (this.#valueRunner ??= new ValueRunner(this.store, this.reporter, this.logger));
  }
}

/**
 * The store the entry points work through: wrapped for OpenTelemetry store spans when telemetry
 * is on and `@opentelemetry/api` is installed (the injected `IdempotencyStore` stays the store
 * the app configured).
 * @internal
 */
export function operationalStore(store: IdempotencyStore, options: ResolvedIdempotencyOptions): IdempotencyStore {
  // Sealing sits right above the store: every store, custom ones included, sees only sealed responses.
  const sealed = options.sealer === undefined ? store : new SealingStore(store, options.sealer);
  const traced = options.telemetry && otel() !== null && !(store instanceof InstrumentedStore);
  return traced ? new InstrumentedStore(sealed) : sealed;
}
