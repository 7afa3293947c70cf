import { readFileSync } from 'node:fs';
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

/**
 * Write-type system calls this process made so far (`syscw` of /proc/self/io: write, writev,
 * sendmsg...), or undefined where that is not available (not Linux).
 */
export function writeSyscalls(): number | undefined {
  try {
    const match = /^syscw:\s*(\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The fewest write system calls `operation` made in `attempts` tries (a stray write by something
 * else in the process can only add to a count), or undefined where they cannot be counted.
 */
export async function fewestWrites(operation: () => Promise<unknown>, attempts = 3): Promise<number | undefined> {
  let fewest: number | undefined;
  for (let i = 0; i < attempts; i++) {
    // Start between two turns of the event loop, with no batch of writes pending.
    await new Promise((resolve) => setImmediate(resolve));
    const before = writeSyscalls();
    await operation();
    const after = writeSyscalls();
    if (before === undefined || after === undefined) return undefined;
    fewest = Math.min(fewest ?? Infinity, after - before);
  }
  return fewest;
}

/** Spins the CPU for `ms`: the event loop is stalled meanwhile. */
export function stallEventLoop(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy
  }
}

/**
 * A format 2 entry written by hand from the documented layout (valkey-codec.ts), independent of
 * the store's own encoder.
 */
export function formatTwoEntry(fields: {
  state?: string;
  token: number;
  nonce: string;
  fingerprint: string;
  ttlMs: number;
  status?: number;
  metadata?: string;
  body?: Buffer;
  version?: number;
}): Buffer {
  const meta = Buffer.from(fields.metadata ?? '', 'utf8');
  const head = Buffer.alloc(84);
  head[0] = fields.version ?? 2;
  head.write(fields.state ?? (fields.status === undefined ? 'p' : 'c'), 1, 'latin1');
  head.write(fields.token.toString(16).padStart(16, '0'), 2, 'latin1');
  head.write(fields.nonce, 18, 'latin1');
  head.write(fields.fingerprint, 40, 'latin1');
  head.writeUIntBE(fields.ttlMs, 72, 6);
  head.writeUInt16BE(fields.status ?? 0, 78);
  head.writeUInt32BE(meta.length, 80);
  return Buffer.concat([head, meta, fields.body ?? Buffer.alloc(0)]);
}
