/**
 * The HTTP behaviour suite (DESIGN.md section 3) on the Valkey store: once over a standalone
 * valkey-server, once over a 3-primary Valkey cluster. Real servers, real ports.
 */
import { Cluster, Redis } from 'ioredis';
import { ValkeyStore } from '../../lib';
import {
  describeValkey,
  startCluster,
  startStandalone,
  type ClusterServer,
  type StandaloneServer,
} from '../support/valkey-server';
import { freshPrefix } from '../valkey/helpers';
import { runHttpSuite } from './http-suite';

/** The store's start-up check warns about AOF off; these servers run without it on purpose. */
const ignoreWarning = (): void => undefined;

/** A `makeStore` for the suite: a new client per app (tracked so `afterAll` can drop leftovers) and a fresh prefix. */
function storeFactory<C extends Redis | Cluster>(clients: Set<C>, connect: () => C, prefix: string) {
  return async () => {
    const client = connect();
    clients.add(client);
    await client.connect();
    const store = new ValkeyStore(client, { prefix: freshPrefix(prefix), onWarning: ignoreWarning });
    return {
      store,
      close: async () => {
        await store.close();
        client.disconnect();
        clients.delete(client);
      },
    };
  };
}

describeValkey('HTTP suite on ValkeyStore, standalone Valkey', () => {
  let server: StandaloneServer;
  const clients = new Set<Redis>();

  beforeAll(async () => {
    server = await startStandalone();
  }, 30_000);

  afterAll(async () => {
    // Clients first: ioredis otherwise keeps a 2 s timer for a stream that is gone.
    for (const client of clients) client.disconnect();
    clients.clear();
    await server?.stop();
  }, 30_000);

  runHttpSuite(
    'valkey standalone',
    storeFactory(clients, () => new Redis({ host: server.host, port: server.port, lazyConnect: true }), 'http'),
  );
});

describeValkey('HTTP suite on ValkeyStore, 3-primary Valkey cluster', () => {
  let cluster: ClusterServer;
  const clients = new Set<Cluster>();

  beforeAll(async () => {
    cluster = await startCluster({ primaries: 3 });
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.disconnect();
    clients.clear();
    await cluster?.stop();
  }, 30_000);

  runHttpSuite(
    'valkey cluster',
    storeFactory(clients, () => new Cluster(cluster.nodes, { lazyConnect: true }), 'httpc'),
  );
});
