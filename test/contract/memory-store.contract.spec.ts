import { MemoryStore } from '../../lib';
import { runStoreContract } from './store-contract';

runStoreContract('MemoryStore', async () => {
  const store = new MemoryStore();
  return { store, close: () => store.close() };
});
