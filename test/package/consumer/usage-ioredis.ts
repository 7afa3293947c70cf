// The Valkey store with real ioredis clients, as an app that installed ioredis writes it. Compiled
// with usage.ts by test/package/check.sh against the repository's ioredis 5 and, outside the
// repository, ioredis 6 (strict, skipLibCheck: false, under node10, node16 and bundler).
import { Cluster, Redis } from 'ioredis';
import { type ValkeyClient, ValkeyStore, type ValkeyStoreOptions } from 'nestjs-idempotent';

const redis = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true });
redis.on('error', () => undefined);
const cluster = new Cluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true });
cluster.on('error', () => undefined);
const options: ValkeyStoreOptions = { prefix: 'idem:', commandTimeoutMs: 500 };
const client: ValkeyClient = redis;

export const stores: ValkeyStore[] = [
  new ValkeyStore(redis, options),
  new ValkeyStore(cluster, { ...options, durability: { replicas: 1, timeoutMs: 200 } }),
  new ValkeyStore(client),
];
