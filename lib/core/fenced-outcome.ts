/** What a store answers to a token-checked write (`complete`, `remove`, `touch`). */
export const FencedOutcome = {
  /** The write took effect (or had already taken effect for the same claim). */
  Applied: 'applied',
  /** The key is held by another claim (the caller's lease expired and the key was reclaimed). */
  FencingMismatch: 'fencing-mismatch',
  /** Nothing is stored under the key (never claimed, released, or expired). */
  KeyExpired: 'key-expired',
  /** The completed entry's fingerprint differs from the claimed one. */
  FingerprintMismatch: 'fingerprint-mismatch',
} as const;

export type FencedOutcome = (typeof FencedOutcome)[keyof typeof FencedOutcome];
