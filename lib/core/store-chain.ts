/**
 * The first of `store` and the stores it wraps that `matches`, or `undefined`: a wrapper (telemetry,
 * sealing, a fault injector) holds the store it stands for as `inner`, and what a store can do
 * beyond the contract (transactions, `inspect`) is found along that chain.
 * @internal
 */
export function storeInChain(store: unknown, matches: (store: object) => boolean): object | undefined {
  for (let s: unknown = store; typeof s === 'object' && s !== null; s = (s as { inner?: unknown }).inner) {
    if (matches(s)) return s;
  }
  return undefined;
}
