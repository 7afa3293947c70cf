import { newNonce } from './nonce';

describe('newNonce', () => {
  it('gives 22 base64url characters, never the same twice, across many pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3_000; i++) {
      const nonce = newNonce();
      expect(nonce).toMatch(/^[0-9A-Za-z_-]{22}$/);
      seen.add(nonce);
    }
    expect(seen.size).toBe(3_000);
  });

  it('uses every character position alike (no fixed padding bits at the end of a pool)', () => {
    const last = new Set<string>();
    for (let i = 0; i < 3_000; i++) last.add(newNonce().charAt(21));
    expect(last.size).toBeGreaterThan(60);
  });
});
