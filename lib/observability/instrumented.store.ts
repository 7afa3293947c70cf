import { FencedOutcome } from '../core/fenced-outcome';
import { FencingToken } from '../core/fencing-token';
import { AnyEntry, CompletedEntry, ProcessingEntry } from '../core/idempotency-entry';
import { IdempotencyKey } from '../core/idempotency-key';
import { InsertResult } from '../core/insert-result';
import { IdempotencyStore } from '../core/idempotency-store';
import { immediateOperations, offerImmediateOperations } from '../core/store-operations';
import { keyHash } from './key-hash';
import type { OtelSpan } from './otel-api';
import { Instruments, TELEMETRY_ATTRIBUTES as A, TELEMETRY_NAMES, telemetry } from './telemetry';

type Operation = 'claim' | 'complete' | 'remove' | 'touch' | 'purge' | 'get';

/**
 * Wraps a store so every operation gets an OpenTelemetry span (`idempotency.store.<operation>`)
 * and a latency measurement, with the outcome as an attribute and the key only as a hash.
 * Without `@opentelemetry/api` installed it adds nothing but a function call.
 */
export class InstrumentedStore extends IdempotencyStore {
  readonly kind: string;

  constructor(readonly inner: IdempotencyStore) {
    super();
    this.kind = inner.kind;
    // While no SDK is registered there is nothing to record: the inner store's immediate answers
    // (if it has them) pass through, as its methods do.
    offerImmediateOperations(
      this,
      {
        claim: (key, fingerprint, leaseMs) =>
          telemetry() === null ? immediateOperations(inner)?.claim(key, fingerprint, leaseMs) : undefined,
        complete: (key, entry, token, ttlMs) =>
          telemetry() === null ? immediateOperations(inner)?.complete(key, entry, token, ttlMs) : undefined,
      },
      InstrumentedStore.prototype,
    );
  }

  tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    if (telemetry() === null) return this.inner.tryInsert(key, entry);
    return this.#run(
      'claim',
      key,
      () => this.inner.tryInsert(key, entry),
      (r) => (r.kind === 'claimed' ? 'claimed' : 'exists'),
    );
  }

  complete(key: IdempotencyKey, entry: CompletedEntry, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    if (telemetry() === null) return this.inner.complete(key, entry, token, ttlMs);
    return this.#run('complete', key, () => this.inner.complete(key, entry, token, ttlMs), String);
  }

  remove(key: IdempotencyKey, token: FencingToken): Promise<FencedOutcome> {
    return this.#run('remove', key, () => this.inner.remove(key, token), String);
  }

  touch(key: IdempotencyKey, token: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    if (telemetry() === null) return this.inner.touch(key, token, ttlMs);
    return this.#run('touch', key, () => this.inner.touch(key, token, ttlMs), String);
  }

  purge(key: IdempotencyKey): Promise<void> {
    return this.#run(
      'purge',
      key,
      () => this.inner.purge(key),
      () => 'purged',
    );
  }

  get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    return this.#run(
      'get',
      key,
      () => this.inner.get(key),
      (e) => (e === undefined ? 'missing' : e.state),
    );
  }

  override waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.inner.waitForChange(key, timeoutMs, signal);
  }

  override close(): Promise<void> {
    return this.inner.close();
  }

  override ping(): Promise<void> {
    return this.inner.ping();
  }

  async #run<T>(
    operation: Operation,
    key: IdempotencyKey,
    op: () => Promise<T>,
    outcomeOf: (value: T) => string,
  ): Promise<T> {
    const t = telemetry();
    if (t === null) return op();
    const started = performance.now();
    const span = t.tracer.startSpan(TELEMETRY_NAMES.storeSpanPrefix + operation, {
      kind: t.api.SpanKind.CLIENT,
      attributes: { [A.store]: this.kind, [A.operation]: operation },
    });
    if (span.isRecording()) span.setAttribute(A.keyHash, keyHash(key));
    try {
      const value = await op();
      finish(t, span, this.kind, operation, outcomeOf(value), started);
      return value;
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: t.api.SpanStatusCode.ERROR, message: (error as Error)?.message });
      finish(t, span, this.kind, operation, 'store-error', started);
      throw error;
    }
  }
}

function finish(t: Instruments, span: OtelSpan, store: string, operation: Operation, outcome: string, started: number) {
  span.setAttribute(A.outcome, outcome);
  span.end();
  t.storeDuration.record(performance.now() - started, {
    [A.store]: store,
    [A.operation]: operation,
    [A.outcome]: outcome,
  });
}
