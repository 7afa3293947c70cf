/** A connection's socket, as far as batching needs it (a `net.Socket` or `tls.TLSSocket`). @internal */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/** One server connection: an ioredis `Redis` has its socket as `stream` once it is connected. @internal */
export interface BatchedConnection {
  readonly status?: string;
  readonly stream?: Corkable | null;
}

/**
 * Coalesces the commands sent in one turn of the event loop into one socket write per connection.
 *
 * ioredis writes each command to the socket at once: one `write` system call per command, which
 * on a loopback or virtual network costs more than everything else the client does for it, and
 * makes the server read and answer each command separately. A batch corks the sockets on the
 * first command of a turn and uncorks them in `setImmediate`, after the poll phase has run every
 * I/O callback that was ready: the commands of all requests handled in that turn go out as one
 * `writev`, the server reads them at once and answers them with one write. A lone command goes
 * out the same way (one write, after the callback that sent it), and commands meant to travel
 * together (a script and a `WAIT`) share a write and a round trip when they are sent in the
 * same turn.
 *
 * Corking keeps the order of writes, so the client's queue of commands awaiting answers stays in
 * step with the socket; commands others send on the same client in that turn join the batch. A
 * connection that is not `ready` is left alone (ioredis queues commands offline then).
 * @internal
 */
export class WriteBatch {
  readonly #connections: () => readonly BatchedConnection[];
  #held: Corkable[] | undefined;
  #written: (() => void)[] = [];

  constructor(connections: () => readonly BatchedConnection[]) {
    this.#connections = connections;
  }

  /**
   * Holds writes until the end of this turn of the event loop; call it before sending a command.
   * `written`, when given, runs once the batch has gone to the sockets (pass the same function
   * for every command of a turn: it runs once per batch).
   */
  hold(written?: () => void): void {
    if (written !== undefined && !this.#written.includes(written)) this.#written.push(written);
    if (this.#held !== undefined) return;
    const held: Corkable[] = [];
    for (const connection of this.#connections()) {
      const stream = connection.status === 'ready' ? connection.stream : undefined;
      if (stream && typeof stream.cork === 'function') {
        stream.cork();
        held.push(stream);
      }
    }
    this.#held = held;
    setImmediate(this.#release);
  }

  readonly #release = (): void => {
    const held = this.#held ?? [];
    const written = this.#written;
    this.#held = undefined;
    this.#written = [];
    for (const stream of held) stream.uncork();
    for (const callback of written) callback();
  };
}

const batches = new WeakMap<object, WriteBatch>();

/**
 * The batch of `client` (an ioredis `Redis`, or a `Cluster` whose primaries are batched together),
 * shared by every store that uses the client.
 * @internal
 */
export function writeBatchOf(
  client: BatchedConnection & { readonly isCluster: boolean; nodes?(role: 'master'): BatchedConnection[] },
): WriteBatch {
  let batch = batches.get(client);
  if (batch === undefined) {
    const single = [client];
    batch = new WriteBatch(
      client.isCluster && typeof client.nodes === 'function' ? () => client.nodes?.('master') ?? [] : () => single,
    );
    batches.set(client, batch);
  }
  return batch;
}
