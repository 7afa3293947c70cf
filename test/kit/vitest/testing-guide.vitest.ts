/**
 * docs/testing.md's Vitest section, under Vitest: the guide's end-to-end test as printed (Vitest's
 * globals, no imports), against the guide's app, both compiled from the docs by the CommonJS config
 * the section shows (no SWC plugin: Vite compiles the decorators and their metadata). Its tests register here. `nestjs-idempotent` is the
 * built package (dist/): run `npm run build` first.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testingGuide, testingGuideBlock, write } from './docs-snippets';

// Vitest collects a group declared by an async function (tsc would refuse a top-level await here).
describe('docs/testing.md under Vitest', async () => {
  write('testing-app', testingGuideBlock('testing-app').code);
  await import(write('testing-e2e', testingGuideBlock('testing-e2e').code));
});

describe('docs/testing.md: the Vitest config', () => {
  it('is the one this suite runs with (test/kit/vitest/docs-config.mts), to the character', () => {
    const shown = testingGuide().filter((s) => s.code.startsWith('// vitest.config.mts'));
    expect(shown).toHaveLength(1);
    expect(readFileSync(join(__dirname, 'docs-config.mts'), 'utf8')).toBe(shown[0].code);
  });
});
