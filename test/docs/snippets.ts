import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/** A fenced code block of the docs. */
export interface Snippet {
  /** Where it is: `README.md#3` (the third block of the file). */
  readonly where: string;
  readonly lang: string;
  readonly code: string;
  /** The name given by `<!-- snippet: name -->` right before it, if any. */
  readonly name: string | undefined;
  /** Why it is not compiled (`<!-- not compiled: why -->` right before it), if so. */
  readonly notCompiled: string | undefined;
}

export const ROOT = join(__dirname, '../..');
export const GENERATED = join(__dirname, '.generated');

/** README.md, ARCHITECTURE.md, CONTRIBUTING.md and every docs/*.md. */
export function docFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(ROOT, 'docs', f));
  return ['README.md', 'ARCHITECTURE.md', 'CONTRIBUTING.md'].map((f) => join(ROOT, f)).concat(docs);
}

/** Every fenced block of `file`, with the markers right before it. */
export function snippetsOf(file: string): Snippet[] {
  const text = readFileSync(file, 'utf8');
  const out: Snippet[] = [];
  const fence = /^```(\w*)\n([\s\S]*?)^```$/gm;
  let match: RegExpExecArray | null;
  let n = 0;
  while ((match = fence.exec(text)) !== null) {
    n++;
    const before = text.slice(0, match.index).trimEnd();
    const marker = /<!--\s*(snippet|not compiled):?\s*([^>]*?)\s*-->$/.exec(before);
    out.push({
      where: `${relative(ROOT, file)}#${n}`,
      lang: match[1],
      code: match[2],
      name: marker?.[1] === 'snippet' ? marker[2] : undefined,
      notCompiled: marker?.[1] === 'not compiled' ? marker[2] || 'marked' : undefined,
    });
  }
  return out;
}

export function allSnippets(): Snippet[] {
  return docFiles().flatMap(snippetsOf);
}

/** The TypeScript blocks to compile. */
export function typescriptSnippets(): Snippet[] {
  return allSnippets().filter((s) => s.lang === 'ts' && s.notCompiled === undefined);
}

/**
 * Writes the block named `name` to test/docs/.generated/<name>.ts (so other blocks can import it
 * as `./<name>`), and answers the path. Throws when no block has that name.
 */
export function materialize(name: string): string {
  const snippet = allSnippets().find((s) => s.name === name);
  if (snippet === undefined) throw new Error(`no doc block is marked <!-- snippet: ${name} -->`);
  return write(`${name}.ts`, snippet.code);
}

/** Writes every TypeScript block to test/docs/.generated, named or numbered; answers the paths. */
export function materializeAll(): { snippet: Snippet; path: string }[] {
  return typescriptSnippets().map((snippet) => ({
    snippet,
    path: write(
      `${snippet.name ?? snippet.where.replace(/[^A-Za-z0-9]+/g, '-')}.ts`,
      // Blocks without imports or exports are modules too, so their names never collide.
      /^\s*(import|export)\s/m.test(snippet.code) ? snippet.code : `${snippet.code}\nexport {};\n`,
    ),
  }));
}

function write(file: string, code: string): string {
  mkdirSync(GENERATED, { recursive: true });
  const path = join(GENERATED, file);
  writeFileSync(path, code);
  return path;
}
