/**
 * Microservices and GraphQL support are optional (DESIGN.md 6.4): an app that uses neither never
 * has this library load @nestjs/microservices, @nestjs/graphql, graphql or a GraphQL driver, not
 * even after serving idempotent requests. Checked in a fresh Node process, where Jest's module
 * registry is not in play.
 *
 * Nest itself loads `@nestjs/microservices/microservices-module` from @nestjs/core whenever the
 * package is installed (as it is here, for the other suites), so for that package the check is on
 * who requires it; GraphQL packages must not be loaded at all.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const LIB = path.join(ROOT, 'lib') + path.sep;

// A CommonJS require hook compiling TypeScript with the project's .swcrc (as Jest does), and a
// recorder of every require of an optional peer, with the file that made it.
const HOOK = `
const Module = require('node:module');
const { transformFileSync } = require('@swc/core');
require.extensions['.ts'] = (module, file) => module._compile(transformFileSync(file).code, file);
const optional = /^(@nestjs\\/(microservices|graphql|apollo|mercurius)|graphql|mercurius|@apollo\\/server)(\\/|$)/;
globalThis.optionalRequires = [];
const original = Module.prototype.require;
Module.prototype.require = function (id) {
  if (optional.test(id)) globalThis.optionalRequires.push({ id, from: this.filename });
  return original.apply(this, arguments);
};
require(process.argv[1]);
`;

interface ChildReport {
  afterImport: string[];
  afterRequests: string[];
  bodies: unknown[];
  requires: { id: string; from: string }[];
}

function runChild(): ChildReport {
  const child = path.join(__dirname, '../support/optional-peers.child.ts');
  const output = execFileSync(process.execPath, ['-e', HOOK, child], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  return JSON.parse(output) as ChildReport;
}

describe('optional peer dependencies', () => {
  const report = runChild();

  it('the route ran under idempotency (so the library was exercised)', () => {
    expect(report.bodies).toEqual([{ runs: 1 }, { runs: 1 }]);
  });

  it('the library requires none of the microservices or GraphQL packages', () => {
    expect(report.requires.filter((r) => r.from.startsWith(LIB))).toEqual([]);
  });

  it('no GraphQL package is loaded at all', () => {
    const graphql = (files: string[]) => files.filter((f) => !/[\\/]@nestjs[\\/]microservices[\\/]/.test(f));
    expect(graphql(report.afterImport)).toEqual([]);
    expect(graphql(report.afterRequests)).toEqual([]);
  });

  it('only Nest itself loads @nestjs/microservices (its optional MicroservicesModule)', () => {
    const loaders = new Set(report.requires.map((r) => r.from));
    expect([...loaders].filter((file) => !/[\\/]node_modules[\\/]@nestjs[\\/]core[\\/]/.test(file))).toEqual([]);
  });
});
