import { channel, type Channel } from 'node:diagnostics_channel';
import type { IdempotencyOutcome } from './idempotency-event';

const OUTCOMES: readonly IdempotencyOutcome[] = [
  'executed',
  'replayed',
  'in-flight',
  'fingerprint-mismatch',
  'released',
  'deferred',
  'store-error',
  'fail-open',
  'lease-lost',
  'key-expired',
  'stale-completion',
  'completion-recovered',
  'completion-abandoned',
];

/**
 * The `node:diagnostics_channel` channel of each outcome: `nestjs-idempotent:<outcome>`, e.g.
 * `nestjs-idempotent:replayed`. Each message is the `IdempotencyEvent` `onEvent` receives (its
 * `replayed` says whether a stored response was replayed). One channel per outcome, as Node's own
 * modules and undici name theirs: a subscriber pays only for the outcomes it listens to, and an
 * outcome nobody listens to costs one `hasSubscribers` read.
 */
export const IDEMPOTENCY_DIAGNOSTICS_CHANNELS: Readonly<Record<IdempotencyOutcome, string>> = Object.freeze(
  Object.fromEntries(OUTCOMES.map((outcome) => [outcome, `nestjs-idempotent:${outcome}`])) as Record<
    IdempotencyOutcome,
    string
  >,
);

/** The channel objects, made once (held here, so they live as long as the process). @internal */
export const DIAGNOSTICS_CHANNELS: Readonly<Record<IdempotencyOutcome, Channel>> = Object.freeze(
  Object.fromEntries(
    OUTCOMES.map((outcome) => [outcome, channel(IDEMPOTENCY_DIAGNOSTICS_CHANNELS[outcome])]),
  ) as Record<IdempotencyOutcome, Channel>,
);
