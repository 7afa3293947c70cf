/**
 * Every TypeScript block of README.md, ARCHITECTURE.md, CONTRIBUTING.md and docs/*.md compiles
 * against the library (strict), unless marked `<!-- not compiled: why -->`; the SQL recipe and the
 * runnable blocks are run by their own specs in this folder and test/e2e.
 */
import * as ts from 'typescript';
import { allSnippets, materializeAll, ROOT } from './snippets';

describe('the code in the docs', () => {
  it('every TypeScript block compiles (strict) against the library', () => {
    const files = materializeAll();
    expect(files.length).toBeGreaterThan(10);
    const program = ts.createProgram(
      files.map((f) => f.path),
      {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        moduleResolution: ts.ModuleResolutionKind.Node10,
        strict: true,
        noEmit: true,
        esModuleInterop: true,
        experimentalDecorators: true,
        emitDecoratorMetadata: true,
        skipLibCheck: true,
        types: ['node', 'jest'],
        baseUrl: ROOT,
        paths: {
          'nestjs-idempotent': ['lib/index.ts'],
          'nestjs-idempotent/testing': ['lib/testing/index.ts'],
        },
      },
    );
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file === undefined || files.some((f) => f.path === d.file!.fileName))
      .map((d) => {
        const file = files.find((f) => f.path === d.file?.fileName);
        const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
        return `${file?.snippet.where ?? '?'} line ${line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
      });
    expect(problems).toEqual([]);
  });

  it('every block says what it is: a language, and a reason when it is not compiled', () => {
    const unlabelled = allSnippets()
      .filter((s) => s.lang === '')
      .map((s) => s.where);
    expect(unlabelled).toEqual([]);
  });
});
