import { createHash } from 'node:crypto';
import { assertDuration } from '../core/duration';
import { StoreDurabilityError } from '../core/errors';
import { SCRIPT_KEYS, valkeyScripts } from './valkey-scripts';

/**
 * How durable a claim or completion must be before the store answers (`ValkeyStoreOptions.durability`).
 * After every claim and completion the store sends `WAIT replicas timeoutMs` (or, with `aof`,
 * `WAITAOF 1 replicas timeoutMs`) in the same round trip as the script; fewer acknowledgements
 * than asked is a `StoreDurabilityError`.
 */
export interface ValkeyDurabilityOptions {
  /**
   * How many replicas must acknowledge each claim and completion (a whole number; `0` only with
   * `aof`). On a cluster, replicas of the primary that owns the key.
   */
  readonly replicas: number;
  /**
   * Wait for the write to reach the append-only file (fsync'd) on the primary and on `replicas`
   * replicas (`WAITAOF`, Valkey 7.2+ or Redis 7.2+, `appendonly yes` on each of them) instead of
   * for `replicas` replicas to receive it (`WAIT`).
   * @default false
   */
  readonly aof?: boolean;
  /**
   * How long the server waits for the acknowledgements, in ms (a whole number, at least 1). Must
   * be below the store's `commandTimeoutMs`, which bounds the whole round trip.
   */
  readonly timeoutMs: number;
}

/** A validated `durability` option, with the command that waits for it. @internal */
export interface Durability {
  readonly replicas: number;
  readonly aof: boolean;
  readonly timeoutMs: number;
  /** `WAIT n t` or `WAITAOF 1 n t`, as ioredis `call` arguments. */
  readonly command: readonly [string, ...string[]];
}

const KEYS = new Set(['replicas', 'aof', 'timeoutMs']);

/**
 * Checks the `durability` option against the store's `commandTimeoutMs`.
 * @throws TypeError or RangeError naming what is wrong.
 * @internal
 */
export function durabilityOf(
  value: ValkeyDurabilityOptions | undefined,
  commandTimeoutMs: number,
): Durability | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null) {
    throw new TypeError('durability must be an object: { replicas, aof?, timeoutMs }');
  }
  for (const key of Object.keys(value)) {
    if (!KEYS.has(key))
      throw new TypeError(`durability has no option ${JSON.stringify(key)} (replicas, aof, timeoutMs)`);
  }
  const { replicas, aof = false, timeoutMs } = value;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0 || replicas > 1000) {
    throw new RangeError(`durability.replicas must be a whole number from 0 to 1000, got ${String(replicas)}`);
  }
  if (typeof aof !== 'boolean') throw new TypeError(`durability.aof must be a boolean, got ${String(aof)}`);
  if (replicas === 0 && !aof) {
    throw new RangeError(
      'durability.replicas is 0 without aof: that asks for nothing; ask for replicas, or set aof: true',
    );
  }
  assertDuration('durability.timeoutMs', timeoutMs);
  if (timeoutMs >= commandTimeoutMs) {
    throw new RangeError(
      `durability.timeoutMs (${timeoutMs}) must be below commandTimeoutMs (${commandTimeoutMs}): the round trip ` +
        'that waits for the acknowledgements has to fit in the time limit of a command. Raise commandTimeoutMs, ' +
        `e.g. to ${timeoutMs + 1000}, or lower durability.timeoutMs`,
    );
  }
  const command: [string, ...string[]] = aof
    ? ['WAITAOF', '1', String(replicas), String(timeoutMs)]
    : ['WAIT', String(replicas), String(timeoutMs)];
  return Object.freeze({ replicas, aof, timeoutMs, command: Object.freeze(command) });
}

/**
 * Why the answer of the `WAIT`/`WAITAOF` sent after a write (or its error) falls short of
 * `durability`; `undefined` when it does not.
 * @internal
 */
export function durabilityShortfall(
  operation: string,
  durability: Durability,
  reply: unknown,
  error: unknown,
): StoreDurabilityError | undefined {
  const asked = { asked: durability.replicas, aof: durability.aof };
  if (error !== undefined && error !== null) {
    return new StoreDurabilityError(operation, { ...asked, acked: 0, localAcked: false }, { cause: explain(error) });
  }
  let acked: number;
  let localAcked: boolean | undefined;
  if (durability.aof) {
    // WAITAOF answers [local fsyncs (0 or 1), replicas that fsync'd].
    const pair = Array.isArray(reply) ? reply.map(Number) : [];
    localAcked = pair[0] >= 1;
    acked = pair[1];
  } else {
    // An integer (a decimal string with ioredis' `stringNumbers`).
    acked = Number(reply);
  }
  if (!Number.isInteger(acked)) {
    return new StoreDurabilityError(
      operation,
      { ...asked, acked: 0, localAcked: false },
      { cause: new Error(`unexpected answer ${JSON.stringify(reply)}`) },
    );
  }
  if (acked >= durability.replicas && (localAcked ?? true)) return undefined;
  return new StoreDurabilityError(operation, { ...asked, acked, localAcked }, { timeoutMs: durability.timeoutMs });
}

/** The server's refusal, with what to do about the two a configuration causes. */
function explain(error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  if (/unknown command/i.test(message) && /waitaof/i.test(message)) {
    return new Error(
      `${message}: durability.aof needs WAITAOF, which Valkey and Redis have since 7.2; upgrade the server or leave aof off`,
      { cause: error },
    );
  }
  if (/appendonly is disabled/i.test(message)) {
    return new Error(`${message}: durability.aof needs appendonly yes on the primary (and on its replicas)`, {
      cause: error,
    });
  }
  return error instanceof Error ? error : new Error(message);
}

/** A script's reply, with the answer (or error) of the WAIT sent behind it; neither when answered early. @internal */
export interface Waited {
  readonly reply: unknown;
  readonly waitReply: unknown;
  readonly waitError: Error | undefined;
}

/** What the durable path needs of a client (ioredis `Redis` or `Cluster`). @internal */
export interface PipelineClient {
  pipeline?(): {
    callBuffer(...args: [command: string, ...args: (string | Buffer | number)[]]): unknown;
    callBuffer(
      ...args: [
        command: string,
        ...args: (string | Buffer | number)[],
        callback: (error?: Error | null, reply?: unknown) => void,
      ]
    ): unknown;
    call(...args: [command: string, ...args: (string | Buffer | number)[]]): unknown;
    exec(): Promise<[error: Error | null, reply: unknown][] | null>;
  };
}

type DurableOp = 'claim' | 'complete' | 'get';

/**
 * Sends the claim and complete scripts with the durability wait behind them, and judges the
 * answers.
 *
 * Script and wait go out as one pipeline: one write, one round trip, and on a cluster both reach
 * the node that owns the key (ioredis sends a pipeline to the slot of its keys, and re-sends a
 * redirected one whole). The scripts go raw (EVAL once, then EVALSHA), not through ioredis' script
 * commands: those re-send a script that met NOSCRIPT on their own, after the wait, which would
 * then not cover it. Here NOSCRIPT re-sends the script with a wait of its own.
 * @internal
 */
export class DurableWrites {
  readonly #pipeline: NonNullable<PipelineClient['pipeline']>;
  // Whether a script was answered once (then EVALSHA; until then EVAL with its source).
  readonly #loaded: Record<DurableOp, boolean> = { claim: false, complete: false, get: false };

  constructor(
    client: PipelineClient,
    readonly durability: Durability,
  ) {
    const pipeline = client.pipeline;
    if (typeof pipeline !== 'function') {
      throw new TypeError('ValkeyStore durability needs a client with pipeline() (an ioredis Redis or Cluster)');
    }
    this.#pipeline = pipeline.bind(client);
  }

  /**
   * Sends `op`'s script (`args`: its keys, then ARGV) and the wait behind it (with `get`, the wait
   * proves that a completion read is acknowledged: it precedes the bump in the replication stream). `bump`, a key in the
   * script's slot, is incremented by 0 in between: a write that moves the connection's replication
   * offset up to the server's, because WAIT counts acknowledgements of the connection's last write
   * and a script that wrote nothing (a completion sent again, perhaps on a new connection) must
   * not count as acknowledged at once. Without `op`, only the bump and the wait. `early` answers
   * from the script's reply alone when it says so (a replay needs no acknowledgements).
   */
  send(
    op: DurableOp | undefined,
    args: readonly (string | Buffer)[],
    bump: string | undefined,
    early?: (reply: unknown) => boolean,
  ): Promise<Waited> {
    return new Promise<Waited>((resolve, reject) => {
      const send = (load: boolean): void => {
        const pipeline = this.#pipeline();
        if (op !== undefined) {
          const script = scriptOf(op);
          const command: [string, ...(string | Buffer)[]] = load
            ? ['EVAL', script.source, script.keys, ...args]
            : ['EVALSHA', script.sha, script.keys, ...args];
          if (early === undefined) pipeline.callBuffer(...command);
          else {
            pipeline.callBuffer(...command, (error?: Error | null, reply?: unknown) => {
              if (!error && early(reply)) resolve({ reply, waitReply: undefined, waitError: undefined });
            });
          }
        }
        if (bump !== undefined) pipeline.call('INCRBY', bump, '0');
        pipeline.call(...this.durability.command);
        pipeline.exec().then((results) => {
          if (results === null || results.length === 0) return reject(new Error('the pipeline was discarded'));
          let reply: unknown;
          if (op !== undefined) {
            const [error, answer] = results[0];
            if (error) {
              if (!load && /NOSCRIPT/.test(error.message)) return send(true);
              return reject(error);
            }
            this.#loaded[op] = true;
            reply = answer;
          }
          const [waitError, waitReply] = results[results.length - 1];
          // A bump the server refused (out of memory) moved no replication offset: the wait proves nothing.
          const bumpError = bump === undefined ? undefined : results[results.length - 2][0];
          resolve({ reply, waitReply, waitError: bumpError ?? waitError ?? undefined });
        }, reject);
      };
      send(op !== undefined && !this.#loaded[op]);
    });
  }

  /** Why `waited` falls short of the durability asked for, or `undefined` when it does not. */
  shortfall(operation: string, waited: Waited): StoreDurabilityError | undefined {
    return durabilityShortfall(operation, this.durability, waited.waitReply, waited.waitError);
  }
}

const scripts = new Map<DurableOp, { source: string; sha: string; keys: string }>();

function scriptOf(op: DurableOp): { source: string; sha: string; keys: string } {
  let script = scripts.get(op);
  if (script === undefined) {
    const source = valkeyScripts()[op];
    script = { source, sha: createHash('sha1').update(source).digest('hex'), keys: String(SCRIPT_KEYS[op]) };
    scripts.set(op, script);
  }
  return script;
}
