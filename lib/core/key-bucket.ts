/** Number of fencing-counter buckets (equal to the number of Valkey cluster slots). */
export const BUCKETS = 16384;

/**
 * The fencing-counter bucket of a key: FNV-1a over its UTF-16 code units, modulo 16384.
 * Every store uses the same buckets, so the same operations give the same fencing tokens.
 * @internal
 */
export function bucketOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % BUCKETS;
}
