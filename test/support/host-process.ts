import type { ChildProcess } from 'node:child_process';
import { runInThisContext } from 'node:vm';

/**
 * The real `process`: Jest gives each test file a copy whose events never fire, so the harnesses
 * that must clean up their servers on exit hook this one.
 */
export function hostProcess(): NodeJS.Process {
  try {
    const p = runInThisContext('process') as NodeJS.Process | undefined;
    if (p && typeof p.on === 'function' && p.pid === process.pid) return p;
  } catch {
    // fall through
  }
  return process;
}

/** Whether a child process has neither exited nor been killed yet. */
export function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}
