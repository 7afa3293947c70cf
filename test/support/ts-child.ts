import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

// A CommonJS require hook compiling TypeScript with the project's .swcrc, as Jest does.
const HOOK = `
const { transformFileSync } = require('@swc/core');
require.extensions['.ts'] = (module, file) => module._compile(transformFileSync(file).code, file);
require(process.argv[1]);
`;

/** How a child process ended. */
export interface ChildRun {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a TypeScript file in a fresh Node process (no Jest around it: nothing but the file keeps
 * its event loop alive), from the repository root, and answers how it ended.
 */
export function runTsChild(file: string, timeoutMs = 30_000, env?: Record<string, string>): ChildRun {
  // Jest hands a test a copy of process.env: variables meant for the child are passed explicitly.
  const result = spawnSync(process.execPath, ['-e', HOOK, file], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: env === undefined ? undefined : { ...process.env, ...env },
  });
  if (result.error) throw result.error;
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

/**
 * The command and arguments that run a TypeScript file in a fresh Node process, for tests that
 * spawn it themselves (to signal it, to read its output as it comes).
 */
export function tsChildCommand(file: string): [string, string[]] {
  return [process.execPath, ['-e', HOOK, file]];
}
