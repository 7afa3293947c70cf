import { messageOf } from '../core/errors';
import type { EngineEvent } from '../core/claim-engine';
import type { IdempotencyKey } from '../core/idempotency-key';
import type { RequestReporter, RequestTrace } from '../observability/request-reporter';

/** Who an engine event is about, for the reporter and the log. @internal */
export interface EventSubject {
  readonly reporter: RequestReporter;
  readonly logger: { warn(message: string): void; error(message: string): void };
  /** What telemetry and events name the call by (`POST /payments`, `MESSAGE ...`). */
  readonly label: string;
  /** `Class.method()`, for logs. */
  readonly name: string;
  readonly key: IdempotencyKey;
  readonly trace: RequestTrace | undefined;
}

/**
 * Turns what the engine met on the way (a lost lease, a late or refused completion, a result
 * stored in the background or given up) into events, span events and log lines, the same for
 * every entry point. The call's final outcome is reported by the entry point itself.
 * @internal
 */
export function reportEngineEvent(subject: EventSubject, event: EngineEvent): void {
  const { reporter, logger, label, name, key, trace } = subject;
  switch (event.type) {
    case 'lease-lost':
      reporter.report(event.type, label, key, trace, { fencingToken: event.fencingToken, error: event.error }, false);
      return;
    case 'key-expired':
    case 'stale-completion':
      reporter.report(event.type, label, key, trace, { fencingToken: event.fencingToken }, false);
      return;
    case 'release-failed':
      logger.warn(`could not release the key of ${name} (${messageOf(event.error)}); it frees when its lease ends`);
      return;
    case 'completion-deferred':
      return; // reported as the call's outcome
    case 'completion-recovered':
      // After the answer: the call's span has ended.
      reporter.report('completion-recovered', label, key, undefined, { fencingToken: event.fencingToken }, false);
      return;
    case 'completion-abandoned':
      logger.error(
        `the result of ${name} was never recorded: ${event.reason}` +
          (event.error === undefined ? '' : ` (${messageOf(event.error)})`),
      );
      reporter.report('completion-abandoned', label, key, undefined, { error: event.error }, false);
      return;
  }
}

/** @internal */

/**
 * Logs that the result of `name` could not be stored yet (a `deferred` outcome): the key stays
 * held and the engine keeps trying in the background.
 * @internal
 */
export function logDeferred(logger: { error(message: string): void }, name: string, error: unknown): void {
  logger.error(
    `the result of ${name} could not be recorded yet (${messageOf(error)}); the key stays held ` +
      'and the store is retried in the background',
  );
}
