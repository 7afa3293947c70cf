import { MemoryStore } from '../../lib';
import { runHttpSuite } from './http-suite';

runHttpSuite('memory', async () => {
  const store = new MemoryStore();
  return { store, close: () => store.close() };
});
