/**
 * The code blocks of docs/custom-stores.md marked `<!-- tested: <path> -->` are the files the tests
 * run, character for character, so the page cannot drift from the code that passes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '../..');
const PAGE = 'docs/custom-stores.md';

/** Each marked block: the file it claims to be, and its text. */
function testedBlocks(markdown: string): { path: string; code: string }[] {
  const blocks = [...markdown.matchAll(/<!-- tested: (\S+) -->\n\n```(?:ts|js)\n([\s\S]*?)```\n/g)];
  return blocks.map(([, path, code]) => ({ path, code }));
}

describe(PAGE, () => {
  const markdown = readFileSync(join(ROOT, PAGE), 'utf8');
  const blocks = testedBlocks(markdown);

  it('marks its tested blocks, the store and the faults example among them', () => {
    expect(blocks.map((b) => b.path)).toEqual(['test/kit/postgres-store.ts', 'test/kit/faults-example.spec.ts']);
    // Every marker is followed by a block the pattern found (none is silently skipped).
    expect(markdown.split('<!-- tested: ').length - 1).toBe(blocks.length);
  });

  it.each(blocks.map((b) => [b.path, b.code]))('shows %s exactly as it is', (path, code) => {
    expect(code).toBe(readFileSync(join(ROOT, path), 'utf8'));
  });
});
