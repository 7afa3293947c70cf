/**
 * `describe` and `it` that collect a suite's cases instead of handing them to a test runner, so a
 * test can run them and look at what failed.
 */
import type { StoreContractOptions } from '../../lib/testing';

export interface CollectedCase {
  /** The groups and the case, joined with ` › `. */
  readonly name: string;
  readonly run: () => Promise<void>;
}

export interface CaseResult {
  readonly name: string;
  readonly error?: Error;
}

/** Calls `declare` with collecting `describe`/`it`; answers the cases in declaration order. */
export function collect(declare: (fns: Pick<StoreContractOptions, 'describe' | 'it'>) => void): CollectedCase[] {
  const cases: CollectedCase[] = [];
  const path: string[] = [];
  declare({
    describe(name, fn) {
      path.push(name);
      try {
        fn();
      } finally {
        path.pop();
      }
    },
    it(name, fn) {
      cases.push({ name: [...path, name].join(' › '), run: fn });
    },
  });
  return cases;
}

/** Runs the cases one after another, as the runners do; each result holds the case's error, if any. */
export async function runCases(cases: readonly CollectedCase[]): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const c of cases) {
    try {
      await c.run();
      results.push({ name: c.name });
    } catch (error) {
      results.push({ name: c.name, error: error as Error });
    }
  }
  return results;
}

/** The names of the cases that failed. */
export const failed = (results: readonly CaseResult[]): string[] =>
  results.filter((r) => r.error !== undefined).map((r) => r.name);
