/**
 * docs/testing.md's Vitest section: `storeContract` from `nestjs-idempotent/testing` with Vitest's
 * `describe` and `it`, on a MemoryStore, as printed. Its cases register here. The package is the
 * built one (dist/): run `npm run build` first.
 */
import { describe } from 'vitest';
import { testingGuideBlock, write } from './docs-snippets';

// Vitest collects a group declared by an async function (tsc would refuse a top-level await here).
describe('docs/testing.md under Vitest', async () => {
  await import(write('vitest-store-contract', testingGuideBlock('vitest-store-contract').code));
});
