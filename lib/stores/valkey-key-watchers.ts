/**
 * A connection subscribed to shard channels (ioredis `Redis` or, with `shardedSubscribers`,
 * `Cluster`), declared structurally like the store's client.
 * @internal
 */
export interface ValkeySubscriber {
  ssubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
  on(event: 'smessage', listener: (channel: string, message: string) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  disconnect(): void;
}

interface Watch {
  readonly wakes: Set<() => void>;
  /** Settled once the server confirmed the subscription (or it failed). */
  readonly subscribed: Promise<boolean>;
  confirmed: boolean;
  idle: NodeJS.Timeout | undefined;
}

/** How long a channel stays subscribed after its last waiter left (waiters come back each re-check). */
const IDLE_MS = 5_000;

/**
 * The requests waiting for keys in flight (`waitMs`), woken by the messages the complete and
 * remove scripts publish on the shard channel named like the entry (for entries a claim found in
 * flight, as each waiter's own claim did). One subscriber connection
 * per store, made on first use; each key's channel is subscribed while someone waits on it (and a
 * little after), and re-subscribed by ioredis after a reconnect.
 *
 * A completion can land between a waiter's claim (which saw the key in flight) and its
 * subscription: the first wait on a channel therefore ends as soon as the subscription is
 * confirmed, so the waiter claims once more; after that, messages wake it. Messages lost to a
 * reconnect cost only latency: the engine re-checks every second anyway.
 * @internal
 */
export class KeyWatchers {
  readonly #watches = new Map<string, Watch>();
  #subscriber: ValkeySubscriber | undefined;
  #broken = false;
  #closed = false;

  /**
   * @param connect makes the subscriber connection (once, on first use); `undefined` when the
   *   client cannot make one: waiters then only re-check on their timer.
   * @param keyPrefix the client's own `keyPrefix` (ioredis adds it to channels too), which the
   *   channel names of incoming messages carry.
   */
  constructor(
    private readonly connect: () => ValkeySubscriber | undefined,
    private readonly keyPrefix = '',
  ) {}

  /** Resolves when `channel` gets a message, its subscription is first confirmed, after `timeoutMs`, or on abort. */
  wait(channel: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || this.#closed) return resolve();
      const watch = this.#watch(channel);
      let done = false;
      const wake = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', wake);
        watch.wakes.delete(wake);
        if (watch.wakes.size === 0) this.#leave(channel, watch);
        resolve();
      };
      watch.wakes.add(wake);
      // Not unref'd: a wait its caller awaits keeps the process alive (a job waiting for a key).
      const timer = setTimeout(wake, Math.max(0, timeoutMs));
      signal?.addEventListener('abort', wake, { once: true });
      // Joined before the subscription was confirmed: claim once more when it is (a completion may
      // have landed in between). A failed subscription leaves the waiter to its timer.
      if (!watch.confirmed) void watch.subscribed.then((ok) => ok && wake());
    });
  }

  /** Drops every subscription and the connection. */
  close(): void {
    this.#closed = true;
    for (const watch of this.#watches.values()) {
      clearTimeout(watch.idle);
      for (const wake of [...watch.wakes]) wake();
    }
    this.#watches.clear();
    this.#subscriber?.disconnect();
    this.#subscriber = undefined;
  }

  #watch(channel: string): Watch {
    const watch = this.#watches.get(channel);
    if (watch !== undefined) {
      clearTimeout(watch.idle);
      watch.idle = undefined;
      return watch;
    }
    const subscriber = this.#subscriberOf();
    const created: Watch = {
      wakes: new Set(),
      confirmed: false,
      idle: undefined,
      subscribed:
        subscriber === undefined
          ? Promise.resolve(false)
          : subscriber.ssubscribe(channel).then(
              () => true,
              () => false,
            ),
    };
    void created.subscribed.then((ok) => {
      created.confirmed = ok;
      // Not subscribed (the connection is down): the next wait on the key tries again.
      if (!ok && this.#watches.get(channel) === created) this.#watches.delete(channel);
    });
    this.#watches.set(channel, created);
    return created;
  }

  #leave(channel: string, watch: Watch): void {
    clearTimeout(watch.idle);
    watch.idle = setTimeout(() => {
      if (watch.wakes.size > 0 || this.#watches.get(channel) !== watch) return;
      this.#watches.delete(channel);
      this.#subscriber?.sunsubscribe(channel).catch(() => undefined);
    }, IDLE_MS);
    watch.idle.unref();
  }

  #subscriberOf(): ValkeySubscriber | undefined {
    if (this.#subscriber !== undefined || this.#broken) return this.#subscriber;
    try {
      this.#subscriber = this.connect();
    } catch {
      this.#subscriber = undefined;
    }
    if (this.#subscriber === undefined) {
      // No way to subscribe (a client without duplicate()): waiters re-check on their timer.
      this.#broken = true;
      return undefined;
    }
    // Errors of the subscriber connection surface as failed subscriptions and re-checks.
    this.#subscriber.on('error', () => undefined);
    const prefix = this.keyPrefix;
    this.#subscriber.on('smessage', (channel) => {
      const watch = this.#watches.get(
        prefix !== '' && channel.startsWith(prefix) ? channel.slice(prefix.length) : channel,
      );
      if (watch !== undefined) for (const wake of [...watch.wakes]) wake();
    });
    return this.#subscriber;
  }
}
