/**
 * `@Idempotent()` on GraphQL mutations (DESIGN.md 6.4), end to end over HTTP: Apollo on Express and
 * Mercurius on Fastify, on the memory store; Apollo again on a real Valkey store.
 */
import { Redis } from 'ioredis';
import { MemoryStore, ValkeyStore } from '../../lib';
import { describeValkey, startStandalone, type StandaloneServer } from '../support/valkey-server';
import { freshPrefix } from '../valkey/helpers';
import { runGraphqlSuite } from './graphql-suite';

const memoryStore = async () => {
  const store = new MemoryStore();
  return { store, close: () => store.close() };
};

runGraphqlSuite('apollo-express', memoryStore);
runGraphqlSuite('mercurius-fastify', memoryStore);

describeValkey('mutations on the Valkey store', () => {
  let server: StandaloneServer;

  beforeAll(async () => {
    server = await startStandalone();
  }, 30_000);

  afterAll(async () => {
    await server?.stop();
  });

  runGraphqlSuite('apollo-express', async () => {
    const client = new Redis({ host: server.host, port: server.port, lazyConnect: true });
    await client.connect();
    const store = new ValkeyStore(client, { prefix: freshPrefix('gql'), onWarning: () => undefined });
    return {
      store,
      close: async () => {
        await store.close();
        client.disconnect();
      },
    };
  });
});
