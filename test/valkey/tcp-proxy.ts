import * as net from 'node:net';

/**
 * A TCP proxy between a client and a Valkey server, for fault tests. It counts the commands the
 * client sends (RESP arrays) and can cut the connection right after the server answered, before
 * the client sees the answer (so the server ran the command and the client must re-send it).
 */
export interface TcpProxy {
  readonly port: number;
  /** Commands (RESP requests) clients sent through the proxy so far. */
  readonly commands: number;
  /** Command names (upper case) clients sent so far, in order. */
  readonly names: readonly string[];
  /** Connections accepted so far. */
  readonly connections: number;
  /**
   * Drops the next reply the server sends (it is never delivered) and closes that connection,
   * both ways. Resolves once that happened.
   */
  dropNextReply(): Promise<void>;
  /**
   * Stops passing bytes either way on every connection (they stay unread in the sockets), as a
   * network link that stalls. `close()` then drops whatever was held.
   */
  hold(): void;
  close(): Promise<void>;
}

/** Counts complete RESP requests (`*<n>` arrays of `$<len>` bulk strings) in a byte stream. */
class RequestCounter {
  #buffer: Buffer = Buffer.alloc(0);
  constructor(private readonly onCommand: (name: string) => void) {}

  push(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const used = this.#parseOne();
      if (used === 0) return;
      this.#buffer = this.#buffer.subarray(used);
    }
  }

  // Bytes of one complete request at the start of the buffer, or 0 if it is not complete yet.
  #parseOne(): number {
    const buf = this.#buffer;
    if (buf.length === 0) return 0;
    if (buf[0] !== 0x2a /* '*' */) throw new Error(`unexpected request byte ${buf[0]}`);
    let eol = buf.indexOf('\r\n');
    if (eol < 0) return 0;
    const count = Number(buf.subarray(1, eol).toString());
    let offset = eol + 2;
    let name = '';
    for (let i = 0; i < count; i++) {
      eol = buf.indexOf('\r\n', offset);
      if (eol < 0) return 0;
      const length = Number(buf.subarray(offset + 1, eol).toString());
      const start = eol + 2;
      if (buf.length < start + length + 2) return 0;
      if (i === 0)
        name = buf
          .subarray(start, start + length)
          .toString()
          .toUpperCase();
      offset = start + length + 2;
    }
    this.onCommand(name);
    return offset;
  }
}

export async function startTcpProxy(upstreamPort: number, upstreamHost = '127.0.0.1'): Promise<TcpProxy> {
  const names: string[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let armed: (() => void) | undefined;
  let held = false;

  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect({ host: upstreamHost, port: upstreamPort });
    sockets.add(client);
    sockets.add(upstream);
    if (held) {
      client.pause();
      upstream.pause();
    }
    const counter = new RequestCounter((name) => names.push(name));
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (chunk: Buffer) => {
      counter.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (armed !== undefined) {
        const done = armed;
        armed = undefined;
        closeBoth();
        done();
        return;
      }
      client.write(chunk);
    });
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    get commands() {
      return names.length;
    },
    get names() {
      return names;
    },
    get connections() {
      return connections;
    },
    hold() {
      held = true;
      for (const socket of sockets) socket.pause();
    },
    dropNextReply() {
      return new Promise<void>((resolve) => {
        armed = resolve;
      });
    },
    close() {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
