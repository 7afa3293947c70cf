import { performance } from 'node:perf_hooks';
import { Deadlines } from './valkey-deadlines';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const nextCheckPhase = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function tracker(limitMs: number) {
  const failures: string[] = [];
  const deadlines = new Deadlines(limitMs, (operation) => new Error(`timeout ${operation}`));
  const track = (operation: string) => deadlines.track(operation, (error) => failures.push(error.message));
  return { deadlines, failures, track };
}

describe('Deadlines', () => {
  it('fails a command once its limit has run out after it was written, in sending order', async () => {
    const failed: [string, number][] = [];
    const deadlines = new Deadlines(30, (operation) => new Error(operation));
    const track = (operation: string) =>
      deadlines.track(operation, (error) => failed.push([error.message, performance.now()]));
    track('a');
    track('b');
    await sleep(60);
    expect(failed).toEqual([]); // not written yet: no clock
    const writtenAB = performance.now();
    deadlines.written();
    await sleep(10);
    track('c');
    const writtenC = performance.now();
    deadlines.written();
    while (failed.length < 3) await sleep(5);
    expect(failed.map(([operation]) => operation)).toEqual(['a', 'b', 'c']);
    // Never before the limit, counted from the write (timers may only be late, never early).
    expect(failed[0][1] - writtenAB).toBeGreaterThanOrEqual(30);
    expect(failed[2][1] - writtenC).toBeGreaterThanOrEqual(30);
    expect(deadlines.pending).toBe(0);
  });

  it('an answer settled before the failure is delivered wins; a settled command never fails', async () => {
    const { deadlines, failures, track } = tracker(20);
    const answered = track('answered');
    const late = track('late');
    const open = track('open');
    deadlines.written();
    expect(deadlines.settle(answered)).toBe(true);
    expect(deadlines.settle(answered)).toBe(false);
    // The answer of `late` comes in a timer due after the limit. The loop stalls past both, so in
    // the next turn the limit's timer finds `late` and `open` overdue, then `late`'s answer comes
    // in, and only then (check phase) are the failures delivered.
    const lateAnswer = new Promise<boolean>((resolve) => setTimeout(() => resolve(deadlines.settle(late)), 30));
    const until = Date.now() + 60;
    while (Date.now() < until) {
      // stalled
    }
    expect(await lateAnswer).toBe(true);
    await nextCheckPhase();
    expect(failures).toEqual(['timeout open']);
    expect(deadlines.settle(open)).toBe(false);
  });

  it('keeps its queue short: answered commands leave it, in or out of order', async () => {
    const { deadlines, failures, track } = tracker(1_000);
    for (let round = 0; round < 5; round++) {
      const batch = Array.from({ length: 3000 }, (_, i) => track(`op${i}`));
      deadlines.written();
      // Answers out of order (as a cluster's nodes answer), then the rest.
      for (let i = 1; i < batch.length; i += 2) deadlines.settle(batch[i]);
      expect(deadlines.pending).toBe(1500);
      for (let i = 0; i < batch.length; i += 2) deadlines.settle(batch[i]);
      expect(deadlines.pending).toBe(0);
    }
    expect(failures).toEqual([]);
  });
});
