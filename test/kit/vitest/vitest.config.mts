// `npm run test:vitest` (after `npm run build`): docs/testing.md's Vitest config, exactly as printed
// (docs-config.mts, which a test here compares with the docs), plus where this repository's
// Vitest tests are. Their `nestjs-idempotent` is the built package (dist/), resolved by its own
// name through package.json's "exports" and loaded by Node as an app's node_modules copy would be.
import { resolve } from 'node:path';
import { mergeConfig } from 'vitest/config';
import docsConfig from './docs-config.mjs';

// Run from the repository's root, as npm runs scripts (Vitest's root is the working directory).
const dist = resolve('dist') + '/';

export default mergeConfig(docsConfig, {
  test: {
    include: ['test/kit/vitest/**/*.vitest.ts'],
    server: { deps: { external: [new RegExp(`^${dist.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)] } },
  },
});
