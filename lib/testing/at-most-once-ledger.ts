/**
 * Records each execution of guarded work by key, and checks none ran twice. Call
 * {@link AtMostOnceLedger.record} from inside the handler (or `work` function) under test, send
 * your duplicates, retries and faults, then call {@link AtMostOnceLedger.assertAtMostOnce}.
 */
export class AtMostOnceLedger {
  readonly #runs = new Map<string, number>();

  /** Notes one execution for `key`; answers how many there have been for it, this one included. */
  record(key: { toString(): string } | string): number {
    const name = String(key);
    const n = (this.#runs.get(name) ?? 0) + 1;
    this.#runs.set(name, n);
    return n;
  }

  /** How many executions were recorded for `key`. */
  count(key: { toString(): string } | string): number {
    return this.#runs.get(String(key)) ?? 0;
  }

  /** Every key with the number of its executions. */
  entries(): [key: string, runs: number][] {
    return [...this.#runs];
  }

  /** @throws Error naming every key that ran more than once, with its count. */
  assertAtMostOnce(): void {
    const twice = [...this.#runs].filter(([, n]) => n > 1);
    if (twice.length > 0) {
      throw new Error(
        `ran more than once: ${twice.map(([key, n]) => `${JSON.stringify(key)} (${n} times)`).join(', ')}`,
      );
    }
  }

  /** Forgets every record. */
  clear(): void {
    this.#runs.clear();
  }
}
