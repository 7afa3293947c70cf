import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Waits until `check` holds (it may be async), polling every 10 ms, for up to `timeoutMs`: the
 * way to wait for something to have happened, instead of sleeping and assuming it did. The bound
 * is generous on purpose (a loaded 2-core machine); a test that holds waits far less. Uses
 * `node:timers` directly, so Jest's fake timers do not freeze it.
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what = 'the condition',
  timeoutMs = 15_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}
