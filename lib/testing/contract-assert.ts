import { inspect } from 'node:util';

/**
 * A failed check inside a store contract case. The kit brings its own assertions rather than a
 * test runner's `expect`, so the suite runs under any runner.
 * @internal
 */
export class ContractAssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContractAssertionError';
  }
}

/**
 * A value as a failure message shows it: bigints as `5n`, strings quoted, bytes by length and head,
 * errors by name and message.
 * @internal
 */
export function show(value: unknown): string {
  if (value instanceof Uint8Array) {
    const head = Buffer.from(value.buffer, value.byteOffset, Math.min(value.byteLength, 32)).toString('hex');
    return `<${value.byteLength} bytes${value.byteLength > 0 ? ` ${head}${value.byteLength > 32 ? '…' : ''}` : ''}>`;
  }
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  return inspect(value, { depth: 4, breakLength: Infinity, maxStringLength: 200 });
}

/** Structural equality for what the cases compare: primitives, bigints, bytes, arrays, plain objects. */
function same(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.compare(a, b) === 0;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => same(v, b[i]));
  if (isPlain(a) && isPlain(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && same(a[k], b[k]));
  }
  return false;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * The checks the contract cases use. Each names what it checks (`what`), so a failure reads
 * `<case>: <what>: expected X, got Y`.
 * @internal
 */
export interface Check {
  /** `actual` equals `expected` (structurally: primitives, bigints, bytes, arrays, plain objects). */
  equal<T>(actual: unknown, expected: T, what: string): asserts actual is T;
  /** `actual` is anything but `unwanted`. */
  notEqual(actual: unknown, unwanted: unknown, what: string): void;
  ok(condition: unknown, what: string, detail?: () => string): asserts condition;
  /** `promise` rejects with an error `accept` approves of (`expected` describes it). */
  rejects(
    promise: Promise<unknown>,
    accept: (error: unknown) => boolean,
    expected: string,
    what: string,
  ): Promise<void>;
}

/** @internal */
export const check: Check = {
  equal<T>(actual: unknown, expected: T, what: string): asserts actual is T {
    if (!same(actual, expected)) {
      throw new ContractAssertionError(`${what}: expected ${show(expected)}, got ${show(actual)}`);
    }
  },

  notEqual(actual: unknown, unwanted: unknown, what: string): void {
    if (same(actual, unwanted)) throw new ContractAssertionError(`${what}: expected anything but ${show(unwanted)}`);
  },

  ok(condition: unknown, what: string, detail?: () => string): asserts condition {
    if (!condition) throw new ContractAssertionError(detail === undefined ? what : `${what}: ${detail()}`);
  },

  async rejects(
    promise: Promise<unknown>,
    accept: (error: unknown) => boolean,
    expected: string,
    what: string,
  ): Promise<void> {
    let settled: { value: unknown } | { error: unknown };
    try {
      settled = { value: await promise };
    } catch (error) {
      settled = { error };
    }
    if (!('error' in settled)) {
      throw new ContractAssertionError(`${what}: expected a rejection with ${expected}, got ${show(settled.value)}`);
    }
    if (!accept(settled.error)) {
      throw new ContractAssertionError(`${what}: expected a rejection with ${expected}, got ${show(settled.error)}`);
    }
  },
};
