import { messageOf, StoreTimeoutError } from '../core/errors';
import { pairsToFields } from './valkey-codec-v1';
import type { Durability } from './valkey-durability';

/** What {@link ValkeyStore.checkServer} found on one server. */
export interface ServerNodeCheck {
  /** `host:port` of the server (`default` when the client does not say where it connects). */
  readonly address: string;
  /** `maxmemory-policy`, when it could be read. */
  readonly maxmemoryPolicy?: string;
  /** Whether AOF persistence is on, when it could be read. */
  readonly appendonly?: boolean;
  /** `appendfsync` (`always`, `everysec` or `no`), when it could be read. */
  readonly appendfsync?: string;
  /** Replicas connected to it and in sync (`INFO replication`), when it could be read. */
  readonly connectedReplicas?: number;
}

/** What was read from one server: the answers (or errors) of `CONFIG GET` and `INFO`. @internal */
export interface NodeReadings {
  readonly config: PromiseSettledResult<unknown>;
  /** INFO's fields. */
  readonly info: PromiseSettledResult<Record<string, string>>;
}

/** The `CONFIG GET` and `INFO` commands a server check sends, as ioredis `call` arguments. @internal */
export const CHECK_COMMANDS = {
  config: ['CONFIG', 'GET', 'maxmemory-policy', 'appendonly', 'appendfsync'],
  // Several sections in one INFO: Valkey 7+, Redis 7+.
  info: ['INFO', 'server', 'memory', 'persistence', 'replication'],
} as const;

/**
 * Turns what was read from the server at `address` into what the check reports about it: one line
 * per problem, naming the server and what to do. A server that answered neither command is one
 * line (unreachable, or why it refused), not one per command.
 * @internal
 */
export function judgeNode(
  address: string,
  readings: NodeReadings,
  durability: Durability | undefined,
  clientStatus: string | undefined,
): { node: ServerNodeCheck; warnings: string[] } {
  const { config, info } = readings;
  if (config.status === 'rejected' && info.status === 'rejected') {
    return { node: { address }, warnings: [unreachable(address, info.reason, clientStatus)] };
  }
  const warnings: string[] = [];
  const settings = config.status === 'fulfilled' ? configOf(config.value) : undefined;
  const infos = info.status === 'fulfilled' ? info.value : undefined;
  if (settings === undefined) {
    const why = config.status === 'rejected' ? messageOf(config.reason) : 'CONFIG GET answered without the settings';
    warnings.push(`could not read config on ${address} (${why}); read INFO instead, which does not show appendfsync`);
  }
  const policy = settings?.policy ?? infos?.maxmemory_policy;
  const aof = settings?.aof ?? (infos?.aof_enabled === undefined ? undefined : infos.aof_enabled === '1');
  const fsync = settings?.fsync;
  const replicas = infos === undefined ? undefined : replicasInSync(infos);

  if (policy !== undefined && policy !== 'noeviction') {
    warnings.push(
      `maxmemory-policy is ${policy} on ${address}: the server may evict live claims and stored responses, ` +
        'allowing a second execution; set it to noeviction',
    );
  }
  if (aof === false && durability?.aof === true) {
    warnings.push(
      `AOF is off on ${address} (appendonly no), and durability.aof waits for AOF writes: every ` +
        'claim fails there (HTTP 503). Set appendonly yes on it and on its replicas (CONFIG SET appendonly yes, ' +
        'and in their configuration files)',
    );
  } else if (aof === false) {
    warnings.push(
      `AOF is off on ${address} (appendonly no): if that server restarts, it forgets every claim and ` +
        'stored response, and retries of those requests run their handlers again. In production, set ' +
        'appendonly yes (CONFIG SET appendonly yes, and in the configuration file)',
    );
  } else if (aof === true && fsync === 'no') {
    warnings.push(`appendfsync is no on ${address}: a crash can lose recent claims; use everysec (or always)`);
  }
  if (durability !== undefined) {
    if (infos === undefined) {
      const why = info.status === 'rejected' ? messageOf(info.reason) : 'no answer';
      warnings.push(`could not read INFO on ${address} (${why}): the durability setting was not checked against it`);
    } else {
      if (durability.aof && !hasWaitAof(infos)) {
        warnings.push(
          `${address} runs ${serverName(infos)}, which has no WAITAOF (Valkey and Redis have it since 7.2), and ` +
            'durability.aof needs it: every claim fails there (HTTP 503). Upgrade the server, or leave aof off',
        );
      }
      if (replicas !== undefined && replicas < durability.replicas) {
        warnings.push(
          `${address} has ${replicas} replica${replicas === 1 ? '' : 's'} in sync, and durability.replicas asks ` +
            `for ${durability.replicas}: claims there fail (HTTP 503) until enough replicas are connected`,
        );
      }
    }
  }
  const node: ServerNodeCheck = { address, maxmemoryPolicy: policy, appendonly: aof, appendfsync: fsync };
  return { node: replicas === undefined ? node : { ...node, connectedReplicas: replicas }, warnings };
}

/** The one line for a server that answered nothing. @internal */
export function unreachable(address: string, error: unknown, clientStatus: string | undefined): string {
  const state = clientStatus !== undefined && clientStatus !== 'ready' ? `; the client is ${clientStatus}` : '';
  if (error instanceof StoreTimeoutError) {
    return (
      `cannot reach the server at ${address} (no answer within ${error.timeoutMs} ms${state}). Until it answers, ` +
      "requests with an idempotency key fail (HTTP 503); check the client's host, port and credentials"
    );
  }
  return `cannot read the settings of the server at ${address} (${messageOf(error)}${state})`;
}

function configOf(reply: unknown): { policy: string; aof: boolean; fsync: string | undefined } | undefined {
  const config = Array.isArray(reply) ? pairsToFields(reply.map((v) => Buffer.from(String(v)))) : {};
  const policy = config['maxmemory-policy']?.toString();
  const appendonly = config.appendonly?.toString();
  if (policy === undefined || appendonly === undefined) return undefined;
  return { policy, aof: appendonly === 'yes', fsync: config.appendfsync?.toString() };
}

/** Replicas in sync: `slave<n>:...,state=online,...` lines of INFO replication. */
function replicasInSync(info: Record<string, string>): number | undefined {
  if (info.connected_slaves === undefined) return undefined;
  let n = 0;
  for (const [field, value] of Object.entries(info)) if (/^slave\d+$/.test(field) && /state=online/.test(value)) n++;
  return n;
}

/** WAITAOF came with 7.2 (Valkey reports `redis_version:7.2.4` for compatibility). */
function hasWaitAof(info: Record<string, string>): boolean {
  const [major, minor] = (info.redis_version ?? '').split('.').map(Number);
  if (!Number.isInteger(major) || !Number.isInteger(minor)) return true;
  return major > 7 || (major === 7 && minor >= 2);
}

function serverName(info: Record<string, string>): string {
  return info.valkey_version !== undefined ? `Valkey ${info.valkey_version}` : `Redis ${info.redis_version ?? '?'}`;
}
