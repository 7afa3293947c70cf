import { createHash } from 'node:crypto';

/** Receives a script's reply, or the error that ended it. @internal */
export type ScriptDone = (error: Error | null, reply?: unknown) => void;

/** What this module uses of an ioredis `Command` (a subclass of it is sent). @internal */
interface IoredisCommand {
  name: string;
  args: unknown[];
  keys?: unknown[];
  isResolved: boolean;
  isTraced?: boolean;
  resolve: (value: unknown) => unknown;
  reject: (error: Error) => void;
  promise: Promise<unknown>;
  _clearTimers?(): void;
}

type CommandClass = new (name: string, args?: unknown[], options?: object) => IoredisCommand;

/** What this module uses of the client: an ioredis `Redis` or `Cluster`. @internal */
export interface ScriptCallClient {
  sendCommand?(command: never): unknown;
  readonly options?: { readonly keyPrefix?: string };
  readonly scriptsSet?: Record<string, { readonly Command?: unknown } | undefined>;
}

/** A script, as {@link ScriptCalls} sends it. @internal */
export interface ScriptSpec {
  readonly source: string;
  readonly keys: number;
}

interface Prepared {
  readonly sha: string;
  readonly source: string;
  readonly keys: number;
  readonly numKeys: string;
  // RESP frame heads (`*<argc>`, the command, the SHA or source, numkeys), by argument count.
  readonly shaHeads: Buffer[];
  readonly loadHeads: Buffer[];
  // The sockets this script was sent on as EVAL (loaded there, unless a NOSCRIPT says otherwise).
  readonly loadedOn: WeakSet<object>;
}

// Never settles and never rejects: the `promise` ioredis hands back from `sendCommand`, which the
// store never reads (its command answers through a callback).
// Stands for the socket when the client passes none (it always does: ioredis 5).
const NO_SOCKET = {};

const NO_PROMISE: Promise<unknown> = new Promise<unknown>(() => undefined);

/**
 * Sends the store's scripts on an ioredis client without its per-command machinery: one command
 * object per call, a subclass of the client's own `Command` (so the client's queues, offline
 * queue, reconnection, cluster slot routing and MOVED/ASK redirections handle it as any other),
 * but with no promise of its own (the reply goes to a callback), keys prefixed and hashed for the
 * slot once, and the RESP frame written as one buffer with the fixed part (`EVALSHA <sha>
 * <numkeys>`) encoded once per script.
 *
 * As ioredis' own script commands do: the first call of a script on a socket goes as EVAL with
 * the source (loading it: still one command), the later ones as EVALSHA; a `NOSCRIPT` answer
 * (`SCRIPT FLUSH`, a server restarted behind the same socket) sends the same call once more, which
 * then goes as EVAL.
 *
 * {@link of} answers `undefined` for a client that is not shaped like ioredis 5 (the caller then
 * keeps ioredis' defined commands).
 * @internal
 */
export class ScriptCalls<Op extends string> {
  readonly #client: ScriptCallClient & { sendCommand(command: never): unknown };
  readonly #keyPrefix: string;
  readonly #scripts: Record<Op, Prepared>;
  readonly #Command: new (call: ScriptCall, resent: boolean) => IoredisCommand;

  private constructor(
    client: ScriptCallClient & { sendCommand(command: never): unknown },
    Base: CommandClass,
    scripts: Record<Op, ScriptSpec>,
  ) {
    this.#client = client;
    const keyPrefix = client.options?.keyPrefix ?? '';
    this.#keyPrefix = keyPrefix;
    const prepared = {} as Record<Op, Prepared>;
    for (const op of Object.keys(scripts) as Op[]) {
      const { source, keys } = scripts[op];
      prepared[op] = {
        sha: createHash('sha1').update(source).digest('hex'),
        source,
        keys,
        numKeys: String(keys),
        shaHeads: [],
        loadHeads: [],
        loadedOn: new WeakSet(),
      };
    }
    this.#scripts = prepared;
    this.#Command = storeCommandClass(Base);
  }

  /**
   * The script caller of `client`, or `undefined` when `client` does not look like ioredis 5
   * (`sendCommand`, and a `Command` class reachable through the scripts `defineCommand` made,
   * listed in `scriptsSet` under `definedName`).
   */
  static of<Op extends string>(
    client: ScriptCallClient,
    definedName: string,
    scripts: Record<Op, ScriptSpec>,
  ): ScriptCalls<Op> | undefined {
    if (typeof client.sendCommand !== 'function') return undefined;
    const keyPrefix: unknown = client.options?.keyPrefix;
    if (keyPrefix !== undefined && typeof keyPrefix !== 'string') return undefined;
    const Script = client.scriptsSet?.[definedName]?.Command;
    const Base: unknown = typeof Script === 'function' ? Object.getPrototypeOf(Script) : undefined;
    if (
      typeof Base !== 'function' ||
      typeof (Base.prototype as Partial<IoredisCommand> & { toWritable?: unknown }).toWritable !== 'function' ||
      typeof (Base.prototype as { initPromise?: unknown }).initPromise !== 'function'
    ) {
      return undefined;
    }
    return new ScriptCalls(
      client as ScriptCallClient & { sendCommand(command: never): unknown },
      Base as CommandClass,
      scripts,
    );
  }

  /**
   * Sends `op`'s script with `args` (its keys, unprefixed, then its ARGV); `done` gets the reply
   * (or the error) once.
   */
  send(op: Op, args: readonly (string | Buffer)[], done: ScriptDone): void {
    const script = this.#scripts[op];
    const prefix = this.#keyPrefix;
    let payload = args;
    if (prefix !== '') {
      const prefixed = args.slice();
      for (let i = 0; i < script.keys; i++) prefixed[i] = prefix + (prefixed[i] as string);
      payload = prefixed;
    }
    this.#send({ script, payload, done, resend: this.#resend }, false);
  }

  #send(call: ScriptCall, resent: boolean): void {
    this.#client.sendCommand(new this.#Command(call, resent) as never);
  }

  /** Sends `call` again (after NOSCRIPT: as EVAL, since its socket no longer counts as loaded). */
  readonly #resend = (call: ScriptCall): void => {
    try {
      this.#send(call, true);
    } catch (error) {
      call.done(error instanceof Error ? error : new Error(String(error)));
    }
  };
}

/** One call of a script. */
interface ScriptCall {
  readonly script: Prepared;
  /** Keys (prefixed with the client's keyPrefix), then ARGV. */
  readonly payload: readonly (string | Buffer)[];
  readonly done: ScriptDone;
  /** Sends the call again (once, after NOSCRIPT). */
  readonly resend: (call: ScriptCall) => void;
}

const commandClasses = new WeakMap<CommandClass, new (call: ScriptCall, resent: boolean) => IoredisCommand>();

function storeCommandClass(Base: CommandClass): new (call: ScriptCall, resent: boolean) => IoredisCommand {
  let Store = commandClasses.get(Base);
  if (Store !== undefined) return Store;
  // Built on the client's own Command class, so `instanceof` and every method the client calls
  // (getSlot, setTimeout, _clearTimers, ...) behave as for its own commands.
  const StoreCommand = class extends (Base as unknown as new (
    name: string,
    args?: unknown[],
    options?: object,
  ) => IoredisCommand & { initPromise(): void }) {
    readonly call: ScriptCall;
    // A re-send after NOSCRIPT: a second NOSCRIPT is the caller's error.
    readonly resent: boolean;
    // The frame last written, and whether it was EVAL (a command is written again after a
    // reconnection or a cluster redirection, perhaps to another socket).
    frame: Buffer | undefined;
    load = false;
    socket: object | undefined;

    constructor(call: ScriptCall, resent: boolean) {
      // No arguments for the base class: it would flatten, transform and look up keys of them.
      super('evalsha');
      this.call = call;
      this.resent = resent;
      // ioredis (5.10+) wraps a command's promise in its `ioredis:command` tracing channel when
      // someone subscribes (OpenTelemetry): this command's promise never settles, so the traced
      // wrapper would never end and its reaction would stay on the shared promise forever (one per
      // command). Marked as traced already, the store's commands are left out of that channel.
      this.isTraced = true;
      const { script, payload } = call;
      // Read by the client: keys for the cluster slot, args for error messages.
      this.keys = payload.slice(0, script.keys) as unknown[];
      this.args = [script.sha, script.numKeys, ...payload];
    }

    // The base class makes a promise and its resolve/reject here: replaced by the callback.
    override initPromise(): void {
      this.promise = NO_PROMISE;
      this.resolve = (value: unknown) => {
        this._clearTimers?.();
        if (this.isResolved) return;
        this.isResolved = true;
        this.call.done(null, value);
      };
      this.reject = (error: Error) => {
        this._clearTimers?.();
        if (this.isResolved) return;
        this.isResolved = true;
        if (typeof error?.message === 'string' && error.message.includes('NOSCRIPT')) {
          const socket = this.socket;
          if (socket !== undefined) this.call.script.loadedOn.delete(socket);
          if (!this.resent) return this.call.resend(this.call);
        }
        this.call.done(error);
      };
    }

    toWritable(socket: unknown): Buffer {
      const loadedOn = this.call.script.loadedOn;
      const key = typeof socket === 'object' && socket !== null ? socket : NO_SOCKET;
      let load = false;
      if (!loadedOn.has(key)) {
        loadedOn.add(key);
        load = true;
      }
      if (this.frame === undefined || this.load !== load) {
        this.frame = frameOf(this.call, load);
        this.load = load;
        this.name = load ? 'eval' : 'evalsha';
      }
      this.socket = key;
      return this.frame;
    }
  };
  Store = StoreCommand as unknown as new (call: ScriptCall, resent: boolean) => IoredisCommand;
  commandClasses.set(Base, Store);
  return Store;
}

/** The RESP frame of `call`: `EVALSHA sha numkeys args...` (or `EVAL source ...`). */
function frameOf(call: ScriptCall, load: boolean): Buffer {
  const { script, payload } = call;
  const heads = load ? script.loadHeads : script.shaHeads;
  let head = heads[payload.length];
  if (head === undefined) {
    const name = load ? 'EVAL' : 'EVALSHA';
    const body = load ? script.source : script.sha;
    head = Buffer.from(
      `*${payload.length + 3}\r\n$${name.length}\r\n${name}\r\n$${Buffer.byteLength(body)}\r\n${body}\r\n` +
        `$${script.numKeys.length}\r\n${script.numKeys}\r\n`,
    );
    heads[payload.length] = head;
  }
  let size = head.length;
  const lengths: number[] = [];
  for (let i = 0; i < payload.length; i++) {
    const arg = payload[i];
    const n = typeof arg === 'string' ? Buffer.byteLength(arg) : arg.length;
    lengths.push(n);
    size += n + 5 + decimalDigits(n);
  }
  const frame = Buffer.allocUnsafe(size);
  let at = head.copy(frame, 0);
  for (let i = 0; i < payload.length; i++) {
    const arg = payload[i];
    const n = lengths[i];
    frame[at++] = 0x24; // $
    at += frame.write(String(n), at, 'latin1');
    frame[at++] = 0x0d;
    frame[at++] = 0x0a;
    at += typeof arg === 'string' ? frame.write(arg, at, 'utf8') : arg.copy(frame, at);
    frame[at++] = 0x0d;
    frame[at++] = 0x0a;
  }
  return frame;
}

function decimalDigits(n: number): number {
  let digits = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    digits++;
  }
  return digits;
}
