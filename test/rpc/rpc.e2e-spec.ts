/**
 * `@Idempotent()` on microservice handlers (DESIGN.md 6.4) over real transports: Nest's TCP
 * transport and its Redis transport on a real Valkey, each with the memory store and the Valkey
 * store.
 */
import { Redis } from 'ioredis';
import { MemoryStore, ValkeyStore } from '../../lib';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { freshPrefix } from '../valkey/helpers';
import { runRpcSuite } from './rpc-suite';

const memoryStore = async () => {
  const store = new MemoryStore();
  return { store, close: () => store.close() };
};

runRpcSuite('TCP transport, memory store', { transport: 'tcp', makeStore: memoryStore });

describeValkey('message handlers on Valkey', () => {
  let server: StandaloneServer;

  beforeAll(async () => {
    server = await startStandalone();
  }, 30_000);

  afterAll(async () => {
    await server?.stop();
  });

  const valkeyStore = async () => {
    const client = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await client.connect();
    const store = new ValkeyStore(client, { prefix: freshPrefix('rpc'), onWarning: () => undefined });
    return {
      store,
      close: async () => {
        await store.close();
        client.disconnect();
      },
    };
  };
  const redis = () => ({ host: server.host, port: server.port });

  runRpcSuite('TCP transport, Valkey store', { transport: 'tcp', makeStore: valkeyStore });
  runRpcSuite('Redis transport on Valkey, memory store', { transport: 'redis', makeStore: memoryStore, redis });
  runRpcSuite('Redis transport on Valkey, Valkey store', { transport: 'redis', makeStore: valkeyStore, redis });
});
