import { Redis } from 'ioredis';
import { CachedResponse, Fingerprint, IdempotencyEntry, IdempotencyKey } from '../../lib';
import { valkeyKeys } from '../../lib/stores/valkey-keys';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let unique = 0;
/** A prefix no other test uses: fresh fencing counters, no leftovers. */
export function freshPrefix(tag = 't'): string {
  unique += 1;
  return `${tag}${process.pid}-${unique}:`;
}

export const fp = (n: number | bigint): Fingerprint => Fingerprint.fromBigInt(BigInt(n));
export const processing = (n: number | bigint, ttlMs = 30_000): IdempotencyEntry => new IdempotencyEntry(fp(n), ttlMs);
export const response = (body: Uint8Array | string = '{"ok":true}', statusCode = 201): CachedResponse =>
  new CachedResponse({ statusCode, body, metadata: { 'content-type': 'application/json' } });

/** The Valkey keys of `key` under `prefix` (the store's own layout). */
export function keysOf(prefix: string, key: IdempotencyKey | string): { entry: string; fence: string } {
  return valkeyKeys(prefix, key.toString());
}

/** `INFO commandstats` as `{ command: calls }`. */
export async function commandStats(admin: Redis): Promise<Record<string, number>> {
  const text = await admin.info('commandstats');
  const stats: Record<string, number> = {};
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats[match[1]] = Number(match[2]);
  return stats;
}

/** Calls per command between two snapshots, leaving out what the measuring connection itself sent. */
export function statsDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const delta: Record<string, number> = {};
  for (const [name, calls] of Object.entries(after)) {
    const d = calls - (before[name] ?? 0);
    if (d !== 0 && name !== 'info') delta[name] = d;
  }
  return delta;
}
