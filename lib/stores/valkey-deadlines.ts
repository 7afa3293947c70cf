import { performance } from 'node:perf_hooks';

/** A command awaiting its answer. @internal */
export interface Waiting {
  /** When its time runs out (`performance.now()` clock); open until its batch is written. */
  deadline: number;
  readonly operation: string;
  /** Answered, failed or timed out: nothing more happens to it. */
  done: boolean;
  readonly fail: (error: Error) => void;
}

/**
 * The time limits of a store's commands, with one timer for all of them.
 *
 * A command's clock starts when its batch goes to the socket ({@link written}). Every command has
 * the same limit, so deadlines come in the order commands are sent: a queue in sending order, and
 * one timer armed for the earliest deadline still open. Answered commands leave the queue from
 * its head as answers come in (in order, on one connection); the timer, when it fires, fails what
 * has run out and re-arms itself for the next one. Under load that is one timer callback per
 * limit period, instead of a timer set and cleared per command.
 *
 * A command that ran out fails in the next check phase (`setImmediate`), not at once: after a
 * stalled event loop (GC, CPU-bound work, a starved process) timers run before I/O, and an answer
 * already waiting in the socket must win over a limit that only ran out while nobody could read it.
 * @internal
 */
export class Deadlines {
  readonly #limitMs: number;
  readonly #timeoutError: (operation: string) => Error;
  #queue: (Waiting | undefined)[] = [];
  #head = 0;
  // Index of the first command whose batch has not been written yet.
  #unwritten = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(limitMs: number, timeoutError: (operation: string) => Error) {
    this.#limitMs = limitMs;
    this.#timeoutError = timeoutError;
  }

  /** Tracks a command just handed to the client; `fail` gets its timeout error. */
  track(operation: string, fail: (error: Error) => void): Waiting {
    const waiting: Waiting = { deadline: Infinity, operation, done: false, fail };
    this.#queue.push(waiting);
    return waiting;
  }

  /** The commands tracked so far have gone to the socket: their clocks start now. */
  readonly written = (): void => {
    const queue = this.#queue;
    if (this.#unwritten >= queue.length) return;
    const deadline = performance.now() + this.#limitMs;
    for (let i = this.#unwritten; i < queue.length; i++) {
      const waiting = queue[i];
      if (waiting !== undefined) waiting.deadline = deadline;
    }
    this.#unwritten = queue.length;
    if (this.#timer === undefined) this.#armForHead();
  };

  /** Marks `waiting` answered. `false` when it is already over (its time ran out first). */
  settle(waiting: Waiting): boolean {
    if (waiting.done) return false;
    waiting.done = true;
    if (this.#queue[this.#head] === waiting) this.#dropAnswered();
    return true;
  }

  /** Commands tracked and not yet answered, failed or timed out. */
  get pending(): number {
    let n = 0;
    for (let i = this.#head; i < this.#queue.length; i++) if (this.#queue[i]?.done === false) n++;
    return n;
  }

  #dropAnswered(): void {
    const queue = this.#queue;
    let head = this.#head;
    while (head < queue.length && queue[head]?.done !== false) queue[head++] = undefined;
    if (head === queue.length) {
      queue.length = 0;
      this.#unwritten = 0;
      head = 0;
    } else if (head >= 1024 && head * 2 >= queue.length) {
      this.#queue = queue.slice(head);
      this.#unwritten = Math.max(0, this.#unwritten - head);
      head = 0;
    } else if (this.#unwritten < head) {
      this.#unwritten = head;
    }
    this.#head = head;
  }

  #armForHead(): void {
    const head = this.#queue[this.#head];
    if (head === undefined || head.deadline === Infinity) return;
    // Timers have millisecond resolution; 1 ms more never fires before the deadline.
    this.#timer = setTimeout(this.#sweep, Math.max(0, Math.ceil(head.deadline - performance.now())) + 1);
    this.#timer.unref();
  }

  readonly #sweep = (): void => {
    this.#timer = undefined;
    this.#dropAnswered();
    const now = performance.now();
    const queue = this.#queue;
    const expired: Waiting[] = [];
    while (this.#head < queue.length) {
      const waiting = queue[this.#head];
      if (waiting !== undefined && !waiting.done) {
        if (waiting.deadline > now) break;
        expired.push(waiting);
      }
      queue[this.#head++] = undefined;
    }
    this.#dropAnswered();
    this.#armForHead();
    if (expired.length > 0) setImmediate(() => this.#expire(expired));
  };

  #expire(expired: readonly Waiting[]): void {
    for (const waiting of expired) {
      if (waiting.done) continue;
      waiting.done = true;
      waiting.fail(this.#timeoutError(waiting.operation));
    }
  }
}
