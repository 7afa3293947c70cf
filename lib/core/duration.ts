/** Largest accepted duration: about 2,000 years, well within what Valkey's PEXPIRE accepts. */
const MAX_DURATION_MS = 2 ** 46;

/**
 * Checks that `value` is a whole number from 1 to `max`.
 * @throws RangeError naming `name` otherwise.
 * @internal
 */
export function assertPositiveInteger(name: string, value: number, unit = '', max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${name} must be a whole number${unit} from 1 to ${max}, got ${String(value)}`);
  }
  return value;
}

/**
 * Checks that `value` is a whole, positive number of milliseconds.
 * @throws RangeError naming `name` otherwise.
 * @internal
 */
export function assertDuration(name: string, value: number): number {
  return assertPositiveInteger(name, value, ' of milliseconds', MAX_DURATION_MS);
}
