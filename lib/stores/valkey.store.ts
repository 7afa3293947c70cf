import { assertDuration } from '../core/duration';
import {
  IdempotencyStoreError,
  messageOf,
  StoreClosedError,
  StoreDecodeError,
  StoreTimeoutError,
} from '../core/errors';
import { FencedOutcome } from '../core/fenced-outcome';
import { FencingToken } from '../core/fencing-token';
import { AnyEntry, assertEntryState, CompletedEntry, ProcessingEntry } from '../core/idempotency-entry';
import { IdempotencyKey } from '../core/idempotency-key';
import { InsertResult } from '../core/insert-result';
import { newNonce } from '../core/nonce';
import { IdempotencyStore, type StoreKeyInfo } from '../core/idempotency-store';
import {
  CLAIM_ID_LENGTH,
  claimId,
  claimTail,
  COMPLETED,
  completedValue,
  decodeEntry,
  NO_CLAIM,
  nonceOf,
  PROCESSING,
  STATE_UNACKNOWLEDGED,
  tokenOf,
  ttlBytes,
  UNACKNOWLEDGED,
} from './valkey-codec';
import { decodeEntryV1 } from './valkey-codec-v1';
import { Deadlines } from './valkey-deadlines';
import {
  DurableWrites,
  durabilityOf,
  type ValkeyDurabilityOptions,
  type PipelineClient,
  type Waited,
} from './valkey-durability';
import { KeyWatchers, type ValkeySubscriber } from './valkey-key-watchers';
import { assertPrefix, valkeyKeys, type ValkeyKeys } from './valkey-keys';
import { ScriptCalls, type ScriptDone } from './valkey-script-calls';
import { SCRIPT_KEYS, ValkeyScripts, valkeyScripts } from './valkey-scripts';
import { CHECK_COMMANDS, judgeNode, type ServerNodeCheck, unreachable } from './valkey-server-check';
import { writeBatchOf, type WriteBatch } from './valkey-write-batch';

/**
 * What the store needs of its client: an ioredis `Redis` or `Cluster` satisfies it. Declared
 * here, structurally, so that ioredis types never reach this package's declarations (ioredis is
 * an optional peer dependency).
 */
export interface ValkeyClient {
  /** `true` for an ioredis `Cluster`. */
  readonly isCluster: boolean;
  /** The connection's state (ioredis: `ready` once commands go straight to the socket). */
  readonly status?: string;
  /** The connection's socket (ioredis `Redis.stream`), corked while a batch of commands is written. */
  readonly stream?: { cork(): void; uncork(): void } | null;
  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number; readOnly?: boolean }): void;
  call(...args: [command: string, ...args: (string | Buffer | number)[]]): Promise<unknown>;
  /**
   * A pipeline (ioredis `pipeline()`). With `durability`, each claim and completion goes out as one
   * with the `WAIT` behind it, so both reach the same node.
   */
  pipeline?: PipelineClient['pipeline'];
  del(...keys: string[]): Promise<number>;
  ping(): Promise<string>;
  quit(): Promise<unknown>;
  disconnect(): void;
  /** A cluster's nodes (ioredis `Cluster.nodes`). */
  nodes?(role?: 'all' | 'master' | 'slave'): ValkeyNode[];
  /**
   * A new connection with the same options (ioredis `duplicate`): the store's own subscriber for
   * the notifications `waitMs` waiters sleep on (for a `Cluster`, with `shardedSubscribers`).
   */
  duplicate?(...args: never[]): unknown;
  /** The client's options (ioredis), read for its `keyPrefix`. */
  readonly options?: { readonly keyPrefix?: string };
}

/** A single server connection, as a cluster's `nodes()` lists them. */
export interface ValkeyNode {
  readonly options: { readonly host?: string; readonly port?: number };
  readonly status?: string;
  readonly stream?: { cork(): void; uncork(): void } | null;
  call(...args: [command: string, ...args: (string | Buffer | number)[]]): Promise<unknown>;
}

export interface ValkeyStoreOptions {
  /**
   * Prepended to every key the store writes (at most 64 printable ASCII characters; no spaces or
   * braces, since the store places its own hash tags).
   * @default 'idem:'
   */
  prefix?: string;
  /**
   * Time limit of each command, in ms. A command that gets no answer in time fails with
   * {@link StoreTimeoutError}; the client and its other commands are left alone. With
   * `durability`, it must exceed `durability.timeoutMs`.
   * @default 1000
   */
  commandTimeoutMs?: number;
  /**
   * Make every claim and completion wait for replicas (`WAIT`) or AOF writes (`WAITAOF`) before it
   * counts, sent in the same round trip as the script. Fewer acknowledgements than asked fail the
   * operation with `StoreDurabilityError`: a claim is removed and its work does not run (HTTP 503),
   * a completion is retried like any failed completion. Replays do not wait.
   * @default none (writes count once the primary has them)
   */
  durability?: ValkeyDurabilityOptions;
  /**
   * Hand the client over to the store: `close()` then quits it. Only for a client made for this
   * store alone; by default the store never disconnects the client it is given.
   * @default false
   */
  closeClient?: boolean;
  /**
   * Run {@link ValkeyStore.checkServer} once when Nest initialises the module that provides the
   * store, reporting each warning through `onWarning`.
   * @default true
   */
  checkServerOnInit?: boolean;
  /**
   * Receives the warnings of the start-up server check.
   * @default a Node process warning (`process.emitWarning`)
   */
  onWarning?: (message: string) => void;
}

export type { ServerNodeCheck } from './valkey-server-check';

/** The answer of {@link ValkeyStore.checkServer}. */
export interface ServerCheck {
  /** `true` when there is nothing to warn about. */
  readonly ok: boolean;
  /** One line per problem, each naming the server it concerns. */
  readonly warnings: readonly string[];
  /** What was read from each server (each primary of a cluster). */
  readonly nodes: readonly ServerNodeCheck[];
}

// Script commands are defined on the client under these names (plus ioredis' `Buffer` variants).
const COMMAND_NAMES: Readonly<Record<keyof ValkeyScripts, string>> = {
  claim: 'nestjsIdempotentV2Claim',
  complete: 'nestjsIdempotentV2Complete',
  touch: 'nestjsIdempotentV2Touch',
  remove: 'nestjsIdempotentV2Remove',
  get: 'nestjsIdempotentV2Get',
  ack: 'nestjsIdempotentV2Ack',
};

// The integer answers of the complete, touch and remove scripts.
const OUTCOMES: readonly FencedOutcome[] = [
  FencedOutcome.Applied,
  FencedOutcome.FencingMismatch,
  FencedOutcome.KeyExpired,
  FencedOutcome.FingerprintMismatch,
];

// Keys digested recently, per generation: a request's claim and completion share one digest.
const KEY_CACHE_GENERATION = 2048;

type ScriptCommand = (...args: (string | Buffer)[]) => Promise<unknown>;

/**
 * The Valkey/Redis store (Valkey 7/8, Redis 7; standalone or cluster). Each of claim, complete,
 * touch, remove and get is one Lua script (one round trip); purge is a single command.
 *
 * Keys: `<prefix>{<bucket>}:e:<sha256(key), 128 bits>` holds an entry (a string, always with a
 * TTL; see `valkey-codec.ts`); `<prefix>{<bucket>}:fence` is the fencing counter of one of 16384
 * key buckets. Both share a hash tag, so a script's keys sit in one cluster slot.
 *
 * Commands sent in one turn of the event loop share one socket write (see `WriteBatch`), and one
 * timer watches the time limits of all of them (see `Deadlines`).
 *
 * The store never connects, reconfigures or disconnects the client it is given.
 */
export class ValkeyStore extends IdempotencyStore {
  readonly kind = 'valkey';
  readonly #client: ValkeyClient;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #closeClient: boolean;
  readonly #checkOnInit: boolean;
  readonly #onWarning: ((message: string) => void) | undefined;
  readonly #commands: Readonly<Record<keyof ValkeyScripts, ScriptCommand>>;
  // The scripts sent straight as command objects of the client (see ScriptCalls); `undefined`
  // for a client not shaped like ioredis 5, which then gets the defined commands above.
  readonly #calls: ScriptCalls<keyof ValkeyScripts> | undefined;
  readonly #batch: WriteBatch;
  readonly #deadlines: Deadlines;
  readonly #durable: DurableWrites | undefined;
  #closed = false;
  #keys = new Map<string, ValkeyKeys>();
  #olderKeys = new Map<string, ValkeyKeys>();
  #warningFallback: ((message: string) => void) | undefined;
  #initChecked = false;
  readonly #watchers: KeyWatchers;

  constructor(client: ValkeyClient, options: ValkeyStoreOptions = {}) {
    super();
    if (typeof client !== 'object' || client === null || typeof client.defineCommand !== 'function') {
      throw new TypeError('ValkeyStore needs an ioredis Redis or Cluster client');
    }
    this.#client = client;
    this.#prefix = assertPrefix(options.prefix ?? 'idem:');
    this.#timeoutMs = assertDuration('commandTimeoutMs', options.commandTimeoutMs ?? 1000);
    const durability = durabilityOf(options.durability, this.#timeoutMs);
    this.#durable = durability === undefined ? undefined : new DurableWrites(client, durability);
    this.#closeClient = options.closeClient ?? false;
    this.#checkOnInit = options.checkServerOnInit ?? true;
    this.#onWarning = options.onWarning;
    const scripts = valkeyScripts();
    const define = (op: keyof ValkeyScripts): ScriptCommand => {
      const name = COMMAND_NAMES[op];
      client.defineCommand(name, { lua: scripts[op], numberOfKeys: SCRIPT_KEYS[op] });
      const command = (client as unknown as Record<string, ScriptCommand>)[`${name}Buffer`];
      if (typeof command !== 'function') throw new TypeError('the client did not define the store commands');
      return command.bind(client);
    };
    this.#commands = {
      claim: define('claim'),
      complete: define('complete'),
      touch: define('touch'),
      remove: define('remove'),
      get: define('get'),
      ack: define('ack'),
    };
    const specs = {} as Record<keyof ValkeyScripts, { source: string; keys: number }>;
    for (const op of Object.keys(COMMAND_NAMES) as (keyof ValkeyScripts)[]) {
      specs[op] = { source: scripts[op], keys: SCRIPT_KEYS[op] };
    }
    this.#calls = ScriptCalls.of(client as never, COMMAND_NAMES.claim, specs);
    this.#batch = writeBatchOf(client);
    const timeoutMs = this.#timeoutMs;
    this.#deadlines = new Deadlines(timeoutMs, (operation) => new StoreTimeoutError(`valkey ${operation}`, timeoutMs));
    this.#watchers = new KeyWatchers(() => subscriberOf(client), client.options?.keyPrefix ?? '');
  }

  /** The key prefix in use. */
  get prefix(): string {
    return this.#prefix;
  }

  /** The time limit of each command, in ms. */
  get commandTimeoutMs(): number {
    return this.#timeoutMs;
  }

  #keysOf(key: IdempotencyKey): ValkeyKeys {
    const text = key.toString();
    let keys = this.#keys.get(text) ?? this.#olderKeys.get(text);
    if (keys === undefined) {
      keys = valkeyKeys(this.#prefix, text);
      if (this.#keys.size >= KEY_CACHE_GENERATION) {
        this.#olderKeys = this.#keys;
        this.#keys = new Map();
      }
      this.#keys.set(text, keys);
    }
    return keys;
  }

  async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    assertEntryState(entry, 'processing', 'tryInsert');
    const keys = this.#keysOf(key);
    // Made here, once per call: a claim script ioredis re-sends carries the same nonce and finds
    // its own claim instead of a conflict.
    const nonce = newNonce();
    const tail = claimTail(nonce, entry.fingerprint.toString(), entry.ttl);
    let sent: Promise<unknown> | undefined;
    let waited: Waited | undefined;
    let reply: unknown;
    const durable = this.#durable;
    // A claim that timed out can still run once the server answers again (paused, overloaded):
    // it would then hold the key for nobody until its lease ends, and every retry would get 409.
    // The caller was told it failed and never runs the work, so release that claim if it lands
    // (both paths below).
    if (durable === undefined) {
      reply = await this.#script('claim', [keys.entry, keys.fence, tail], (late) =>
        this.#releaseLateClaim(keys.entry, late, nonce),
      );
    } else {
      try {
        reply = await this.#run(
          'claim',
          () =>
            (sent = durable
              .send(
                'claim',
                [keys.entry, keys.fence, tail, '1'], // ARGV[2]: a `u` entry found bumps the fence (claim.lua)
                undefined,
                (r) =>
                  // What the key holds answers at once (in flight, another request, an acknowledged
                  // replay), but for a completion not yet acknowledged (`u`): its replay waits for
                  // the acknowledgements of the write the script made behind its read, which follows
                  // the completion in the replication stream. And for this claim's own entry, found
                  // by a re-sent claim.
                  Array.isArray(r) || (Buffer.isBuffer(r) && r[1] !== STATE_UNACKNOWLEDGED && nonceOf(r) !== nonce),
              )
              .then((answer) => ((waited = answer), answer.reply))),
        );
      } catch (error) {
        if (error instanceof StoreTimeoutError && sent !== undefined) {
          sent.then(
            (late) => this.#releaseLateClaim(keys.entry, late, nonce),
            () => undefined,
          );
        }
        throw error;
      }
    }
    const token = tokenReply(reply);
    if (token !== undefined) {
      if (this.#durable !== undefined) await this.#claimMadeDurable(keys, token, nonce, waited);
      return { kind: 'claimed', fencingToken: new FencingToken(token, nonce), entry };
    }
    let stored: AnyEntry;
    if (Buffer.isBuffer(reply)) {
      stored = decodeEntry(reply, keys.entry);
      if (stored.isProcessing() && nonceOf(reply) === nonce) {
        // A re-sent claim that found itself wrote nothing: its WAIT proves nothing, so ask again.
        if (this.#durable !== undefined) await this.#claimMadeDurable(keys, tokenOf(reply), nonce, undefined);
        return { kind: 'claimed', fencingToken: new FencingToken(tokenOf(reply), nonce), entry };
      }
      if (reply[1] === STATE_UNACKNOWLEDGED && this.#durable !== undefined)
        this.#acknowledged(keys.entry, reply, waited!);
    } else if (Array.isArray(reply)) {
      // A format 1 hash the previous version left: never this call's claim (its nonce is new).
      stored = decodeEntryV1(reply as Buffer[], keys.entry).entry;
    } else {
      throw new StoreDecodeError(`${keys.entry}: unexpected claim answer`);
    }
    return { kind: 'exists', entry: stored };
  }

  /**
   * With `durability`: a completed entry not yet acknowledged (`u`, `value`) is answered
   * (replayed) only once the replicas (or AOF writes) asked for acknowledged the write sent behind
   * its read (`waited`), which follows the completion in the replication stream, so they hold the
   * completion too; it is then marked acknowledged (`c`). A completion whose own wait fell short
   * (its client got 503) is thus never replayed as a success before it is acknowledged.
   * @throws StoreDurabilityError when they did not, in time.
   */
  #acknowledged(entryKey: string, value: Buffer, waited: Waited): void {
    const shortfall = this.#durable!.shortfall('replay', waited);
    if (shortfall !== undefined) throw shortfall;
    this.#markAcknowledged(entryKey, value.toString('latin1', 0, 40));
  }

  /** Best effort: rewrites the state of the acknowledged entry `head` (bytes 0-39, state `u`) to `c`. */
  #markAcknowledged(entryKey: string, head: string): void {
    this.#script('ack', [entryKey, head]).catch(() => undefined);
  }

  /** Best effort: removes the claim a timed-out claim script made after all (token-checked). */
  #releaseLateClaim(entryKey: string, late: unknown, nonce: string): void {
    let token = tokenReply(late);
    if (token === undefined && Buffer.isBuffer(late)) {
      try {
        if (decodeEntry(late, entryKey).isProcessing() && nonceOf(late) === nonce) token = tokenOf(late);
      } catch {
        return;
      }
    }
    if (token === undefined) return;
    const id = claimId(token, nonce);
    this.#release(entryKey, id).catch(() => undefined);
  }

  async complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    assertDuration('ttlMs', ttlMs);
    assertEntryState(entry, 'completed', 'complete');
    const keys = this.#keysOf(key);
    const idAndFingerprint = claimIdOf(fencingToken) + entry.fingerprint.toString();
    const value = completedValue(idAndFingerprint, ttlMs, entry.response);
    const durable = this.#durable;
    if (durable !== undefined) {
      // Written as not yet acknowledged (`u`): replays wait for the acknowledgements until it is
      // marked acknowledged (`c`), right after its own wait succeeds (or a replay's does).
      const unacknowledged = completedValue(idAndFingerprint, ttlMs, entry.response, UNACKNOWLEDGED);
      // The bucket's counter is bumped (INCRBY 0) before the WAIT: a completion sent again writes
      // nothing, and WAIT counts the acknowledgements of the connection's last write.
      const args = [keys.entry, PROCESSING + idAndFingerprint, unacknowledged, String(ttlMs)];
      const waited = await this.#run('complete', () => durable.send('complete', args, keys.fence));
      const outcome = outcomeOf(waited.reply, keys.entry);
      // Only an applied completion wrote (or holds) anything that must be acknowledged.
      if (outcome !== FencedOutcome.Applied) return outcome;
      const shortfall = durable.shortfall('complete', waited);
      if (shortfall !== undefined) throw shortfall;
      this.#markAcknowledged(keys.entry, UNACKNOWLEDGED + idAndFingerprint.slice(0, CLAIM_ID_LENGTH));
      return outcome;
    }
    const reply = await this.#script('complete', [keys.entry, PROCESSING + idAndFingerprint, value, String(ttlMs)]);
    return outcomeOf(reply, keys.entry);
  }

  /**
   * With `durability`: returns once the claim is acknowledged as asked (by `waited`, the WAIT sent
   * with the script, or a new one). Else removes the claim (best effort, token-checked), so the key
   * is free for a retry, and throws: the caller never runs work under an unacknowledged claim.
   */
  async #claimMadeDurable(keys: ValkeyKeys, token: number | bigint, nonce: string, waited: Waited | undefined) {
    const durable = this.#durable!;
    let failure: unknown;
    try {
      const acks = waited ?? (await this.#run('claim', () => durable.send(undefined, [], keys.fence)));
      failure = durable.shortfall('claim', acks);
    } catch (error) {
      failure = error;
    }
    if (failure === undefined) return;
    const id = claimId(token, nonce);
    await this.#release(keys.entry, id).catch(() => undefined);
    throw failure;
  }

  /** Runs the remove script for the claim `id` (token and nonce): its processing or completed entry. */
  #release(entryKey: string, id: string): Promise<unknown> {
    return this.#script('remove', [entryKey, PROCESSING + id, COMPLETED + id]);
  }

  async remove(key: IdempotencyKey, fencingToken: FencingToken): Promise<FencedOutcome> {
    const keys = this.#keysOf(key);
    const id = claimIdOf(fencingToken);
    return outcomeOf(await this.#release(keys.entry, id), keys.entry);
  }

  async touch(key: IdempotencyKey, fencingToken: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    assertDuration('ttlMs', ttlMs);
    const keys = this.#keysOf(key);
    const head = PROCESSING + claimIdOf(fencingToken);
    return outcomeOf(await this.#script('touch', [keys.entry, head, ttlBytes(ttlMs), String(ttlMs)]), keys.entry);
  }

  async purge(key: IdempotencyKey): Promise<void> {
    const keys = this.#keysOf(key);
    await this.#run('purge', () => this.#client.del(keys.entry));
  }

  /**
   * The live entry under `key`. With `durability`, a completed entry is answered only once its
   * completion is acknowledged as asked (see `tryInsert`); else `StoreDurabilityError`.
   */
  async get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    const keys = this.#keysOf(key);
    const durable = this.#durable;
    let waited: Waited | undefined;
    const reply =
      durable === undefined
        ? await this.#script('get', [keys.entry])
        : await this.#run('get', () =>
            durable
              .send('get', [keys.entry], keys.fence, (r) => !Buffer.isBuffer(r) || r[1] !== STATE_UNACKNOWLEDGED)
              .then((answer) => ((waited = answer), answer.reply)),
          );
    if (reply === null) return undefined;
    if (Buffer.isBuffer(reply)) {
      const stored = decodeEntry(reply, keys.entry);
      if (reply[1] === STATE_UNACKNOWLEDGED && durable !== undefined) this.#acknowledged(keys.entry, reply, waited!);
      return stored;
    }
    if (Array.isArray(reply)) return decodeEntryV1(reply as Buffer[], keys.entry).entry;
    throw new StoreDecodeError(`${keys.entry}: unexpected answer`);
  }

  /**
   * The state, claim token and time left of the live entry under `key` (for `IdempotencyAdmin`):
   * the entry and its `PTTL`, sent together (one round trip on one connection).
   */
  override async inspect(key: IdempotencyKey): Promise<StoreKeyInfo | undefined> {
    const keys = this.#keysOf(key);
    const [reply, pttl] = await this.#run('inspect', () =>
      Promise.all([this.#commands.get(keys.entry), this.#client.call('PTTL', keys.entry)]),
    );
    if (reply === null || reply === undefined) return undefined;
    const msLeft = Math.max(0, Number(pttl));
    if (Buffer.isBuffer(reply)) {
      const entry = decodeEntry(reply, keys.entry);
      return {
        state: entry.isCompleted() ? 'completed' : 'processing',
        fencingToken: new FencingToken(tokenOf(reply), nonceOf(reply)),
        msLeft,
      };
    }
    if (Array.isArray(reply)) {
      const stored = decodeEntryV1(reply as Buffer[], keys.entry);
      return {
        state: stored.entry.isCompleted() ? 'completed' : 'processing',
        fencingToken: new FencingToken(stored.token, stored.nonce),
        msLeft,
      };
    }
    throw new StoreDecodeError(`${keys.entry}: unexpected answer`);
  }

  /**
   * Resolves when the entry under `key` is completed or released, after `timeoutMs` at the latest,
   * or when `signal` aborts. The scripts announce both on a shard channel named like the entry, in
   * its slot, for entries a claim found in flight (as the claim of every request that waits did);
   * the store subscribes through a connection of its own, made with the client's `duplicate()` on
   * first use. Expiry is not announced: waiters re-check once a second.
   */
  override waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.#watchers.wait(this.#keysOf(key).entry, this.#closed ? 0 : timeoutMs, signal);
  }

  /** Checks the server answers (within `commandTimeoutMs`); throws an `IdempotencyStoreError` when it does not. */
  override async ping(): Promise<void> {
    await this.#run('ping', () => this.#client.ping());
  }

  /**
   * Stops the store: later operations fail with `IdempotencyStoreError`. The client is left
   * connected (it belongs to the caller) unless the store was given it with `closeClient: true`;
   * then it is quit (waiting for pending replies at most `commandTimeoutMs`, then disconnected).
   */
  override async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // The subscriber connection is the store's own: always closed.
    this.#watchers.close();
    if (!this.#closeClient) return;
    const client = this.#client;
    let timer: NodeJS.Timeout | undefined;
    const quit = client.quit().then(
      () => true,
      () => false,
    );
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#timeoutMs);
    });
    const quitCleanly = await Promise.race([quit, timedOut]);
    clearTimeout(timer);
    if (!quitCleanly) client.disconnect();
  }

  /**
   * Reads the settings at-most-once depends on from the server (every primary of a cluster) and
   * warns about `maxmemory-policy` other than `noeviction` (eviction drops live claims), AOF off
   * and `appendfsync no` (a restart loses claims and stored responses), and, with `durability`,
   * about fewer replicas in sync than it asks for and `aof` on a server without AOF or without
   * `WAITAOF`. Never throws: what cannot be read becomes a warning, and a server that answers
   * nothing within `commandTimeoutMs` is one warning saying so.
   */
  async checkServer(): Promise<ServerCheck> {
    const client = this.#client;
    let targets: { address: string; node: Pick<ValkeyNode, 'call'>; status?: string }[];
    if (client.isCluster && typeof client.nodes === 'function') {
      if (client.nodes('master').length === 0) {
        // Not connected yet: a PING waits in ioredis' offline queue until it is (or times out).
        const reached = await this.#run('ping', () => client.ping()).then(
          () => undefined,
          (error: unknown) => error,
        );
        if (reached !== undefined) {
          return { ok: false, warnings: [unreachable('the cluster', reached, client.status)], nodes: [] };
        }
      }
      targets = client.nodes('master').map((node) => ({ address: addressOf(node), node, status: node.status }));
    } else {
      targets = [{ address: addressOf(client), node: client, status: client.status }];
    }
    const checks = await Promise.all(
      targets.map(async ({ address, node, status }) => {
        // Both at once: a server that does not answer costs one time limit, not two.
        const [config, info] = await Promise.allSettled([
          this.#run('config', () => node.call(...CHECK_COMMANDS.config)),
          this.#run('info', () => node.call(...CHECK_COMMANDS.info)).then((reply) => parseInfo(String(reply))),
        ]);
        return judgeNode(address, { config, info }, this.#durable?.durability, status);
      }),
    );
    const warnings = checks.flatMap((check) => check.warnings);
    if (targets.length === 0) warnings.push('could not read config: the cluster client knows no primaries');
    return { ok: warnings.length === 0, warnings, nodes: checks.map((check) => check.node) };
  }

  /**
   * Where start-up warnings go when no `onWarning` was given (IdempotencyModule passes its logger).
   * @internal
   */
  useWarningFallback(warn: (message: string) => void): void {
    this.#warningFallback = warn;
  }

  /**
   * Nest lifecycle hook: starts {@link checkServer} once (unless `checkServerOnInit` is false) and
   * hands each warning to `onWarning` when it is done. It runs in the background: start-up does not
   * wait for a slow or unreachable server. `IdempotencyModule` calls it with its own logger as the
   * fallback for `onWarning`; elsewhere the fallback is a Node process warning.
   */
  async onModuleInit(
    warn: (message: string) => void = (message) => process.emitWarning(message, 'IdempotencyWarning'),
  ): Promise<void> {
    if (!this.#checkOnInit || this.#initChecked) return;
    this.#initChecked = true;
    const report = this.#onWarning ?? this.#warningFallback ?? warn;
    void this.checkServer()
      .then((check) => {
        // Closed meanwhile (the application stopped): nobody is listening any more.
        if (this.#closed) return;
        for (const warning of check.warnings) report(`ValkeyStore: ${warning}`);
      })
      .catch(() => undefined);
  }

  /**
   * Sends `op`'s script (`args`: its keys, then ARGV; in this turn's batch of writes) and awaits
   * its answer within the time limit, as {@link #run} does, with one promise for all of it.
   * `late` gets an answer that comes after the time limit failed the call.
   */
  #script(op: keyof ValkeyScripts, args: (string | Buffer)[], late?: (reply: unknown) => void): Promise<unknown> {
    const calls = this.#calls;
    if (calls === undefined) {
      const command = this.#commands[op];
      let sent: Promise<unknown> | undefined;
      const answer = this.#run(op, () => (sent = command(...args)));
      if (late === undefined) return answer;
      return answer.catch((error: unknown) => {
        if (error instanceof StoreTimeoutError && sent !== undefined) sent.then(late, () => undefined);
        throw error;
      });
    }
    if (this.#closed) return Promise.reject(new StoreClosedError(this.kind, op));
    const deadlines = this.#deadlines;
    this.#batch.hold(deadlines.written);
    return new Promise<unknown>((resolve, reject) => {
      const waiting = deadlines.track(op, reject);
      const done: ScriptDone = (error, reply) => {
        if (deadlines.settle(waiting)) {
          if (error === null) resolve(reply);
          else reject(storeError(error, op));
        } else if (error === null && late !== undefined) late(reply);
      };
      try {
        calls.send(op, args, done);
      } catch (error) {
        done(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /**
   * Sends a command (in this turn's batch of writes) and awaits its answer within the time limit,
   * mapping failures to typed store errors.
   */
  #run<T>(operation: string, send: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreClosedError(this.kind, operation));
    this.#batch.hold(this.#deadlines.written);
    let sent: Promise<T>;
    try {
      sent = send();
    } catch (error) {
      return Promise.reject(storeError(error, operation));
    }
    const deadlines = this.#deadlines;
    return new Promise<T>((resolve, reject) => {
      const waiting = deadlines.track(operation, reject);
      sent.then(
        (value) => {
          if (deadlines.settle(waiting)) resolve(value);
        },
        (error: unknown) => {
          if (deadlines.settle(waiting)) reject(storeError(error, operation));
        },
      );
    });
  }
}

/** The claim id of `fencingToken`, or one that matches no claim when the token is not a FencingToken. */
function claimIdOf(fencingToken: FencingToken): string {
  return fencingToken instanceof FencingToken ? claimId(fencingToken.value, fencingToken.nonce) : NO_CLAIM;
}

/** A claim script's token: an integer reply (a decimal string with ioredis' `stringNumbers`). */
function tokenReply(reply: unknown): number | bigint | undefined {
  if (typeof reply === 'number') return reply;
  if (typeof reply === 'string' && /^[1-9][0-9]{0,19}$/.test(reply)) {
    const token = Number(reply);
    return Number.isSafeInteger(token) ? token : BigInt(reply);
  }
  return undefined;
}

function outcomeOf(reply: unknown, where: string): FencedOutcome {
  // An integer reply (a decimal string with ioredis' `stringNumbers`).
  const outcome =
    typeof reply === 'number' ? OUTCOMES[reply] : typeof reply === 'string' ? OUTCOMES[Number(reply)] : undefined;
  if (outcome === undefined) throw new StoreDecodeError(`${where}: unexpected script answer ${String(reply)}`);
  return outcome;
}

/** `host:port` of a connection, for messages: where its socket goes, else where it was told to connect. */
function addressOf(connection: object): string {
  const { stream, options } = connection as {
    stream?: { remoteAddress?: string; remotePort?: number } | null;
    options?: { host?: string; port?: number; path?: string; sentinels?: unknown[]; name?: string };
  };
  const host = stream?.remoteAddress ?? options?.host;
  const port = stream?.remoteAddress === undefined ? options?.port : stream.remotePort;
  if (stream?.remoteAddress === undefined) {
    if (options?.path) return options.path;
    if (Array.isArray(options?.sentinels) && options.sentinels.length > 0) return `sentinel master ${options.name}`;
  }
  if (host === undefined && port === undefined) return 'default';
  return `${host?.includes(':') ? `[${host}]` : (host ?? 'localhost')}:${port ?? 6379}`;
}

function storeError(error: unknown, operation: string): IdempotencyStoreError {
  if (error instanceof IdempotencyStoreError) return error;
  const message = messageOf(error);
  if (/IDEMCORRUPT|WRONGTYPE/.test(message)) {
    return new StoreDecodeError(
      `valkey ${operation}: data under the store's key is not an idempotency entry (${message})`,
      {
        cause: error,
      },
    );
  }
  return new IdempotencyStoreError(`valkey ${operation} failed: ${message}`, { cause: error });
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) out[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return out;
}

/** The store's subscriber connection: a duplicate of the client (sharded subscribers on a cluster). */
function subscriberOf(client: ValkeyClient): ValkeySubscriber | undefined {
  const duplicate = client.duplicate as ((...args: unknown[]) => unknown) | undefined;
  if (typeof duplicate !== 'function') return undefined;
  const subscriber = (
    client.isCluster ? duplicate.call(client, [], { shardedSubscribers: true }) : duplicate.call(client)
  ) as ValkeySubscriber;
  return typeof subscriber?.ssubscribe === 'function' ? subscriber : undefined;
}
