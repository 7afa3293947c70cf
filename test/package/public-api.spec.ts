/**
 * The public surface: what `nestjs-idempotent` and `nestjs-idempotent/testing` export, recorded in
 * etc/public-api.md (a change to the surface is a visible diff there), each name documented in
 * README.md or docs/, and each used by the consumer project that test/package/check.sh compiles
 * against the packed package.
 *
 * After an intended change of the surface: `UPDATE_API_REPORT=1 npx jest test/package/public-api`.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ts from 'typescript';

const root = join(__dirname, '../..');
const ENTRY_POINTS = { 'nestjs-idempotent': 'lib/index.ts', 'nestjs-idempotent/testing': 'lib/testing/index.ts' };
const REPORT = join(root, 'etc/public-api.md');

const program = ts.createProgram(
  Object.values(ENTRY_POINTS).map((file) => join(root, file)),
  {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    experimentalDecorators: true,
    strict: true,
    skipLibCheck: true,
    types: ['node'],
  },
);
const checker = program.getTypeChecker();

interface Export {
  name: string;
  kind: string;
  detail: string[];
}

function flags(symbol: ts.Symbol): string {
  const f = symbol.flags;
  if (f & ts.SymbolFlags.Class) return 'class';
  if (f & ts.SymbolFlags.Function && f & ts.SymbolFlags.Interface) return 'function + interface';
  if (f & ts.SymbolFlags.Function) return 'function';
  if (f & ts.SymbolFlags.Interface) return 'interface';
  if (f & ts.SymbolFlags.TypeAlias && f & ts.SymbolFlags.Variable) return 'const + type';
  if (f & ts.SymbolFlags.TypeAlias) return 'type';
  if (f & ts.SymbolFlags.Variable) return 'const';
  if (f & ts.SymbolFlags.Enum) return 'enum';
  return 'other';
}

/** Type text without file paths (`import("...").Name` -> `Name`) or comments, on one line. */
const tidy = (text: string) =>
  text
    .replace(/import\("[^"]*"\)\./g, '')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\s+/g, ' ')
    .trim();
const print = (type: ts.Type, node?: ts.Node) =>
  tidy(checker.typeToString(type, node, ts.TypeFormatFlags.NoTruncation));

/** One line per public member (name and type), enough that a changed signature shows. */
function describeSymbol(symbol: ts.Symbol, at: ts.Node): string[] {
  const lines: string[] = [];
  const f = symbol.flags;
  const members = (type: ts.Type, prefix: string) => {
    for (const member of checker.getPropertiesOfType(type)) {
      if (member.name.startsWith('#') || member.name.startsWith('__')) continue;
      const declaration = member.valueDeclaration ?? member.declarations?.[0];
      const modifiers = declaration ? ts.getCombinedModifierFlags(declaration as ts.Declaration) : 0;
      if (modifiers & ts.ModifierFlags.Private) continue;
      const protectedMark = modifiers & ts.ModifierFlags.Protected ? 'protected ' : '';
      lines.push(`${prefix}${protectedMark}${member.name}: ${print(checker.getTypeOfSymbol(member), at)}`);
    }
  };
  if (f & ts.SymbolFlags.Class) {
    const classType = checker.getTypeOfSymbol(symbol);
    const constructor = symbol.declarations
      ?.flatMap((d) => (ts.isClassDeclaration(d) ? [...d.members] : []))
      .find(ts.isConstructorDeclaration);
    const hidden = constructor !== undefined && ts.getCombinedModifierFlags(constructor) & ts.ModifierFlags.Private;
    for (const signature of hidden ? [] : classType.getConstructSignatures()) {
      lines.push(`new ${tidy(checker.signatureToString(signature, at, ts.TypeFormatFlags.NoTruncation))}`);
    }
    members(classType, 'static ');
    members(checker.getDeclaredTypeOfSymbol(symbol), '');
  } else if (f & ts.SymbolFlags.Interface) {
    members(checker.getDeclaredTypeOfSymbol(symbol), '');
    if (f & ts.SymbolFlags.Function) lines.push(print(checker.getTypeOfSymbol(symbol), at));
  } else if (f & ts.SymbolFlags.TypeAlias) {
    // The alias as written (its name alone would hide a change of what it stands for).
    const declaration = symbol.declarations?.find(ts.isTypeAliasDeclaration);
    lines.push(
      declaration === undefined ? print(checker.getDeclaredTypeOfSymbol(symbol), at) : tidy(declaration.type.getText()),
    );
    if (f & ts.SymbolFlags.Variable) lines.push(print(checker.getTypeOfSymbol(symbol), at));
  } else {
    lines.push(print(checker.getTypeOfSymbol(symbol), at));
  }
  return lines;
}

function exportsOf(file: string): Export[] {
  const source = program.getSourceFile(join(root, file))!;
  const module = checker.getSymbolAtLocation(source)!;
  return checker
    .getExportsOfModule(module)
    .map((exported) => {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      return { name: exported.name, kind: flags(symbol), detail: describeSymbol(symbol, source) };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

const surface = Object.entries(ENTRY_POINTS).map(([entry, file]) => ({ entry, exports: exportsOf(file) }));

function report(): string {
  let out = '# Public API of nestjs-idempotent\n\n';
  out += 'Generated by test/package/public-api.spec.ts from the entry points; do not edit by hand.\n';
  out += 'A change here is a change of the public surface: review it, and say it in CHANGELOG.md.\n';
  for (const { entry, exports } of surface) {
    out += `\n## \`${entry}\`\n`;
    for (const e of exports) {
      out += `\n### ${e.name} (${e.kind})\n\n\`\`\`ts\n${e.detail.join('\n')}\n\`\`\`\n`;
    }
  }
  return out;
}

function docsText(): string {
  const docs = join(root, 'docs');
  const files = existsSync(docs)
    ? readdirSync(docs)
        .filter((f) => f.endsWith('.md'))
        .map((f) => join(docs, f))
    : [];
  return [join(root, 'README.md'), ...files].map((f) => readFileSync(f, 'utf8')).join('\n');
}

describe('the public API', () => {
  it('matches etc/public-api.md (a change of the surface is a visible diff)', () => {
    const generated = report();
    if (process.env.UPDATE_API_REPORT === '1') writeFileSync(REPORT, generated);
    expect(existsSync(REPORT)).toBe(true);
    expect(generated).toBe(readFileSync(REPORT, 'utf8'));
  });

  it('every export is named in README.md or docs/, and nothing undocumented is exported', () => {
    const text = docsText();
    const undocumented = surface.flatMap(({ entry, exports }) =>
      exports.filter((e) => !new RegExp(`\\b${e.name}\\b`).test(text)).map((e) => `${entry}: ${e.name}`),
    );
    expect(undocumented).toEqual([]);
  });

  it('the consumer project that compiles against the packed package uses every export', () => {
    const usage = readFileSync(join(root, 'test/package/consumer/usage.ts'), 'utf8');
    const unused = surface.flatMap(({ entry, exports }) =>
      exports.filter((e) => !new RegExp(`\\b${e.name}\\b`).test(usage)).map((e) => `${entry}: ${e.name}`),
    );
    expect(unused).toEqual([]);
  });
});
