import { Injectable } from '@nestjs/common';
import { IdempotencyStore } from '../core/idempotency-store';

/** The shape `@nestjs/terminus` expects from an indicator: `{ [key]: { status, ...details } }`. */
export type IdempotencyHealthResult = Record<
  string,
  { status: 'up' | 'down'; store: string; latencyMs?: number; message?: string }
>;

export interface IdempotencyHealthOptions {
  /**
   * How long the store may take to answer, in ms.
   * @default 1000
   */
  timeoutMs?: number;
}

/**
 * A health indicator for the idempotency store, usable with `@nestjs/terminus` without this
 * library depending on it: `() => this.idempotency.isHealthy('idempotency')` in a
 * `HealthCheckService.check([...])` list. It reports `down` (never throws) when the store does not
 * answer within the time limit, which terminus 11 turns into a 503.
 */
@Injectable()
export class IdempotencyHealthIndicator {
  constructor(private readonly store: IdempotencyStore) {}

  async isHealthy(key = 'idempotency', options: IdempotencyHealthOptions = {}): Promise<IdempotencyHealthResult> {
    const timeoutMs = options.timeoutMs ?? 1000;
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.store.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the store did not answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      const latencyMs = Math.round((performance.now() - started) * 100) / 100;
      return { [key]: { status: 'up', store: this.store.kind, latencyMs } };
    } catch (error) {
      return { [key]: { status: 'down', store: this.store.kind, message: (error as Error)?.message ?? String(error) } };
    } finally {
      clearTimeout(timer);
    }
  }
}
