/**
 * docs/testing.md's end-to-end test, run as printed: its app and its Jest spec are compiled from
 * the docs, and the spec's tests register here. Plus its AtMostOnceLedger example, and the
 * core API's quick example (docs/core-api.md), and the Vitest setup the page shows for Nest CLI
 * 12's `nest new` (run by `npm run test:nest12`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { allSnippets, materialize, ROOT } from './snippets';

materialize('testing-app');
// eslint-disable-next-line @typescript-eslint/no-require-imports
require(materialize('testing-e2e'));

describe('docs/testing.md: checking at-most-once yourself', () => {
  it('the ledger example finds no key that ran twice', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { duplicatesRunOnce } = require(materialize('ledger')) as { duplicatesRunOnce: () => Promise<void> };
    await expect(duplicatesRunOnce()).resolves.toBeUndefined();
  });
});

describe('docs/core-api.md: the store API without Nest', () => {
  it('the quick example runs as printed', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { issueCredential } = require(materialize('core-store-api')) as { issueCredential: () => Promise<void> };
    await expect(issueCredential()).resolves.toBeUndefined();
  });
});

describe("docs/testing.md: the Vitest setup of Nest CLI 12's nest new", () => {
  const nest12 = join(ROOT, 'test/compat/nest12');

  it('the config shown is the one test/compat/nest12 runs the guide with (npm run test:nest12), to the character', () => {
    const shown = allSnippets().filter(
      (s) => s.where.startsWith('docs/testing.md') && s.code.startsWith('// vitest.config.e2e.ts'),
    );
    expect(shown).toHaveLength(1);
    expect(readFileSync(join(nest12, 'vitest.config.e2e.ts'), 'utf8')).toBe(shown[0].code);
  });

  it('that project is set up as nest new sets it up: ESM, Vitest globals, no SWC plugin', () => {
    const pkg = JSON.parse(readFileSync(join(nest12, 'package.json'), 'utf8')) as {
      type: string;
      devDependencies: Record<string, string>;
    };
    expect(pkg.type).toBe('module');
    expect(pkg.devDependencies.vitest).toMatch(/^\^4\./);
    expect(Object.keys(pkg.devDependencies).filter((name) => /swc/.test(name))).toEqual([]);
    const tsconfig = JSON.parse(readFileSync(join(nest12, 'tsconfig.json'), 'utf8')) as {
      compilerOptions: Record<string, unknown>;
    };
    expect(tsconfig.compilerOptions).toMatchObject({
      module: 'nodenext',
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
      types: ['vitest/globals', 'node'],
    });
    // The spec uses Vitest's globals: it imports nothing from 'vitest'.
    const spec = allSnippets().find((s) => s.name === 'testing-e2e');
    expect(spec?.code).not.toMatch(/from 'vitest'/);
  });
});
