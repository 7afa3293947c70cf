import { createHash } from 'node:crypto';

/** A notification as node-postgres emits it. @internal */
export interface PostgresNotification {
  readonly channel: string;
  readonly payload?: string;
}

/** What the listener needs of its own connection (a node-postgres `Client`). @internal */
export interface ListenerConnection {
  query(text: string): Promise<unknown>;
  on(event: 'notification', listener: (message: PostgresNotification) => void): unknown;
  on(event: 'error' | 'end', listener: (error?: Error) => void): unknown;
  /** Closes the connection. */
  end(): Promise<void> | void;
}

/**
 * The payload the store's statements notify with when they complete, release or purge `key`: a
 * hash, so keys never reach the notification queue or `pg_stat_activity`. @internal
 */
export function notifyPayload(key: string): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 22);
}

/**
 * The requests waiting for keys (`waitForChange`) of one store, woken by NOTIFY on the store's
 * channel through one connection of its own, opened on first use. Every wait has its timeout in
 * force whatever the connection does: a lost connection only makes waits last to their timeout,
 * and the next wait opens a new one. @internal
 */
export class PostgresListener {
  readonly #waiters = new Map<string, Set<() => void>>();
  #connection: Promise<ListenerConnection | undefined> | undefined;
  #closed = false;
  /** Bumped whenever the connection is dropped: an older one that opens late is closed. */
  #generation = 0;

  constructor(
    private readonly channel: string,
    private readonly open: () => Promise<ListenerConnection>,
  ) {}

  /** Whether a listening connection is open or being opened. */
  get listening(): boolean {
    return this.#connection !== undefined;
  }

  /** Resolves on a notification for `payload`, after `timeoutMs`, or when `signal` aborts. Never rejects. */
  wait(payload: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || this.#closed) return resolve();
      let set = this.#waiters.get(payload);
      if (set === undefined) {
        set = new Set();
        this.#waiters.set(payload, set);
      }
      const waiting = set;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        waiting.delete(done);
        if (waiting.size === 0 && this.#waiters.get(payload) === waiting) this.#waiters.delete(payload);
        resolve();
      };
      // Not unref'd: a wait its caller awaits keeps the process alive (as MemoryStore's does).
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      signal?.addEventListener('abort', done, { once: true });
      waiting.add(done);
      this.#listen();
    });
  }

  /** Wakes everyone waiting for `payload`. */
  wake(payload: string): void {
    const set = this.#waiters.get(payload);
    if (set !== undefined) for (const wake of [...set]) wake();
  }

  /** Closes the connection and wakes every waiter; later waits resolve at once. */
  close(): void {
    this.#closed = true;
    this.#drop();
    for (const set of [...this.#waiters.values()]) for (const wake of [...set]) wake();
  }

  /** Opens the listening connection unless it is open (or opening). */
  #listen(): void {
    if (this.#connection !== undefined || this.#closed) return;
    const generation = ++this.#generation;
    const current = () => generation === this.#generation && !this.#closed;
    this.#connection = (async (): Promise<ListenerConnection | undefined> => {
      let connection: ListenerConnection | undefined;
      try {
        connection = await this.open();
        const opened = connection;
        const lost = () => {
          if (generation === this.#generation) {
            this.#generation++;
            this.#connection = undefined;
          }
          void Promise.resolve()
            .then(() => opened.end())
            .catch(() => undefined);
        };
        opened.on('error', lost);
        opened.on('end', lost);
        opened.on('notification', (message) => {
          if (message.channel === this.channel && message.payload !== undefined) this.wake(message.payload);
        });
        await opened.query(`LISTEN ${this.channel}`);
        if (current()) return opened;
      } catch {
        // Waits fall back to their timeouts; the next wait tries again.
        if (generation === this.#generation) {
          this.#generation++;
          this.#connection = undefined;
        }
      }
      // Closed or lost while opening.
      if (connection !== undefined) await Promise.resolve(connection.end()).catch(() => undefined);
      return undefined;
    })();
  }

  #drop(): void {
    const connection = this.#connection;
    this.#connection = undefined;
    this.#generation++;
    void connection?.then((c) => c?.end()).catch(() => undefined);
  }
}
