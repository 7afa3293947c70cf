import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, snippetsOf, type Snippet } from '../../docs/snippets';

/** Where the docs' blocks are written for Vitest (not test/docs/.generated, which Jest writes). */
export const GENERATED = join(__dirname, '.generated');

/** The block of docs/testing.md marked `<!-- snippet: name -->`. */
export function testingGuideBlock(name: string): Snippet {
  const block = testingGuide().find((s) => s.name === name);
  if (block === undefined) throw new Error(`docs/testing.md has no block marked <!-- snippet: ${name} -->`);
  return block;
}

export function testingGuide(): Snippet[] {
  return snippetsOf(join(ROOT, 'docs/testing.md'));
}

/** Writes `code` to test/kit/vitest/.generated/<name>.ts and answers the path. */
export function write(name: string, code: string): string {
  mkdirSync(GENERATED, { recursive: true });
  const path = join(GENERATED, `${name}.ts`);
  writeFileSync(path, code);
  return path;
}
