/**
 * Every TypeScript block of docs/messages-and-graphql.md compiles, as a module of its own, against
 * the library (`nestjs-idempotent` mapped to lib/) with the project's compiler options.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

const ROOT = path.resolve(__dirname, '../..');
const DOC = path.join(ROOT, 'docs/messages-and-graphql.md');

function snippets(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

describe('docs/messages-and-graphql.md', () => {
  const blocks = snippets(fs.readFileSync(DOC, 'utf8'));

  it('has its examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6);
  });

  it('every TypeScript example compiles', () => {
    const config = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile);
    const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
    options.noEmit = true;
    options.baseUrl = ROOT;
    options.paths = { 'nestjs-idempotent': ['lib/index.ts'] };
    // Virtual files beside this one, so their packages resolve from the project's node_modules.
    const files = new Map(blocks.map((code, i) => [path.join(__dirname, `__doc_snippet_${i + 1}.ts`), code]));
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, language, onError, create) =>
      files.has(name)
        ? ts.createSourceFile(name, files.get(name)!, language)
        : getSourceFile(name, language, onError, create);
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => files.has(name) || fileExists(name);
    const readFile = host.readFile.bind(host);
    host.readFile = (name) => files.get(name) ?? readFile(name);
    const program = ts.createProgram([...files.keys()], options, host);
    const diagnostics = [...files.keys()]
      .map((name) => program.getSourceFile(name)!)
      .flatMap((file) => [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)])
      .map((d) => {
        const where = d.file
          ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start!).line + 1}`
          : '';
        return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
      });
    expect(diagnostics).toEqual([]);
  }, 60_000);
});
