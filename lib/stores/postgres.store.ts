import { setTimeout as sleep } from 'node:timers/promises';
import { CachedResponse } from '../core/cached-response';
import { assertDuration, assertPositiveInteger } from '../core/duration';
import { IdempotencyStoreError, messageOf, StoreClosedError, StoreDecodeError } from '../core/errors';
import { FencedOutcome } from '../core/fenced-outcome';
import { FencingToken } from '../core/fencing-token';
import { Fingerprint } from '../core/fingerprint';
import { IdempotencyStore, type StoreKeyInfo } from '../core/idempotency-store';
import {
  AnyEntry,
  assertEntryState,
  CompletedEntry,
  completedEntry,
  IdempotencyEntry,
  ProcessingEntry,
} from '../core/idempotency-entry';
import { IdempotencyKey } from '../core/idempotency-key';
import { InsertResult } from '../core/insert-result';
import { newNonce } from '../core/nonce';
import type { StoreTransaction, TransactionalStore } from '../core/store-transaction';
import { guardedTransactionClient } from './postgres-guard';
import { type ListenerConnection, notifyPayload, PostgresListener } from './postgres-listener';
import { postgresMigrationSql, postgresNames, type PostgresNames, type PostgresTableOptions } from './postgres-sql';

/**
 * A query as the store sends it: text, values, and a statement name (prepared once per
 * connection). Declared here, structurally, so that `pg` types never reach this package's
 * declarations (`pg` is an optional peer dependency).
 */
export interface PostgresQuery {
  readonly text: string;
  readonly values?: unknown[];
  readonly name?: string;
  readonly types?: { getTypeParser(oid: number, format?: string): (value: string) => unknown };
}

/** What a query answers, as node-postgres gives it. */
export interface PostgresQueryResult {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly rows: any[];
  readonly rowCount: number | null;
  /** The command tag: `COMMIT`, or `ROLLBACK` when a COMMIT found the transaction failed. */
  readonly command: string;
}

/** A connection checked out of the pool (node-postgres `PoolClient`). */
export interface PostgresPoolClient {
  query(query: PostgresQuery | string): Promise<PostgresQueryResult>;
  /** Gives the connection back; `true` (or an error) destroys it instead. */
  release(destroy?: boolean | Error): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
}

/** What the store needs of its pool: a node-postgres `Pool` satisfies it. */
export interface PostgresPool {
  connect(): Promise<PostgresPoolClient>;
  /** Ends the pool (with `closePool`). */
  end?(): Promise<void>;
  /** With `closePool`, the store listens for the 'error' of connections still closing. */
  on?(event: 'error', listener: (error: Error) => void): unknown;
  query(query: PostgresQuery | string): Promise<PostgresQueryResult>;
  /** node-postgres emits 'error' for an idle connection that failed (with `closePool`, the store listens). */
  on?(event: 'error', listener: (error: Error) => void): unknown;
  /**
   * The pool's connection settings and client class (node-postgres sets both): the store opens
   * its LISTEN connection with them, beside the pool. Without them it holds one of the pool's.
   */
  readonly options?: object;
}

export interface PostgresStoreOptions extends PostgresTableOptions {
  /**
   * How often expired rows are swept, in ms (an `unref`'d timer; reads already treat them as
   * missing). Each sweep deletes batches of `sweepBatch` rows until fewer are left.
   * @default 60_000
   */
  sweepIntervalMs?: number;
  /**
   * Most rows one sweep statement deletes.
   * @default 1000
   */
  sweepBatch?: number;
  /**
   * How long `commit()` of a transaction whose connection was lost during the COMMIT looks, on
   * another connection, for whether it committed, in ms; past it, the commit throws.
   * @default 5000
   */
  commitCheckTimeoutMs?: number;
  /**
   * `close()` also ends the pool (`pool.end()`, after the transactions still running give their
   * connections back), and the store handles the pool's `'error'` events (an idle connection the
   * server ended: a warning, never an unhandled event that ends the process). Only for a pool made
   * for this store alone, as an app's own pool in its module factory.
   * @default false
   */
  closePool?: boolean;
  /**
   * Receives the store's warnings (`synchronous_commit` off).
   * @default the Nest logger inside IdempotencyModule, else a Node process warning
   */
  onWarning?: (message: string) => void;
}

/** Every column comes back as text (bodies hex-encoded): the pool's own type parsers do not apply. */
const TEXT: PostgresQuery['types'] = { getTypeParser: () => (value: string) => value };
/** Most times a claim is tried when concurrent writes hide the key's row from its snapshot. */
const CLAIM_ATTEMPTS = 5;
const MAX_BIGINT = (1n << 63n) - 1n;

interface Statements {
  readonly claim: string;
  readonly complete: string;
  readonly touch: string;
  readonly remove: string;
  readonly purge: string;
  readonly get: string;
  readonly inspect: string;
  readonly sweep: string;
}

type StatementName = keyof Statements;

interface EntryRow {
  fingerprint: string;
  ttl_ms: string;
  status_code: string | null;
  metadata: string | null;
  body: string | null;
}

/**
 * The PostgreSQL store, on a node-postgres `Pool` (PostgreSQL 12 or later). Entries are rows of
 * one table (`migrate()` or `postgresMigrationSql()` makes it); each of claim, complete, touch,
 * remove, purge and get is one statement, atomic under READ COMMITTED, on the database's clock
 * (`clock_timestamp()`), so every instance on the table agrees on leases. Fencing tokens come from
 * a sequence of the table: they start at 1 and strictly increase for every key.
 *
 * It is a `TransactionalStore`: `beginTransaction()` opens a transaction the work writes through,
 * and its completion is stored in it, so both commit together or neither does
 * (`@IdempotencyTransaction()`, `claim.transaction`).
 *
 * `waitForChange` listens on one connection of its own (LISTEN/NOTIFY); expired rows are deleted
 * in bounded batches by an `unref`'d timer. The store never ends the pool it is given.
 */
export class PostgresStore extends IdempotencyStore implements TransactionalStore {
  readonly kind = 'postgres';
  readonly #pool: PostgresPool;
  readonly #names: PostgresNames;
  readonly #sql: Statements;
  readonly #statementNames: Record<StatementName, string>;
  readonly #sweepBatch: number;
  readonly #sweepMs: number;
  readonly #commitCheckMs: number;
  readonly #onWarning: ((message: string) => void) | undefined;
  readonly #listener: PostgresListener;
  readonly #closePool: boolean;
  #warningFallback: ((message: string) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #checked: Promise<void> | undefined;
  #sweeping = false;

  constructor(pool: PostgresPool, options: PostgresStoreOptions = {}) {
    super();
    if (typeof pool !== 'object' || pool === null || typeof pool.connect !== 'function') {
      throw new TypeError('PostgresStore needs a node-postgres (pg) Pool');
    }
    this.#pool = pool;
    this.#names = postgresNames(options);
    this.#sweepMs = assertDuration('sweepIntervalMs', options.sweepIntervalMs ?? 60_000);
    this.#sweepBatch = assertPositiveInteger('sweepBatch', options.sweepBatch ?? 1000);
    this.#commitCheckMs = assertDuration('commitCheckTimeoutMs', options.commitCheckTimeoutMs ?? 5000);
    this.#onWarning = options.onWarning;
    this.#closePool = options.closePool === true;
    if (this.#closePool && typeof pool.on === 'function') {
      // The pool is the store's own: its 'error' events are the store's to handle. node-postgres
      // emits one for every idle connection the server ends (a restart, a failover, an idle
      // timeout), and an 'error' nobody listens to ends the process. The pool has dropped the
      // connection already and opens another on demand.
      pool.on('error', (error) =>
        this.#warn(
          `PostgresStore (${this.#names.display}): an idle connection of the pool failed (${messageOf(error)}); ` +
            'the pool opens another when one is needed',
        ),
      );
    }
    this.#sql = statements(this.#names);
    const id = this.#names.channel.slice('idempotency_'.length);
    const names = {} as Record<StatementName, string>;
    for (const op of Object.keys(this.#sql) as StatementName[]) names[op] = `nestjs_idempotent_v1_${op}_${id}`;
    this.#statementNames = names;
    this.#listener = new PostgresListener(this.#names.channel, () => this.#openListener());
    this.#timer = sweepWeakly(new WeakRef<PostgresStore>(this), this.#sweepMs);
  }

  /** The table, as `schema.table` or `table`. */
  get table(): string {
    return this.#names.display;
  }

  /**
   * Creates the table, its token sequence and its expiry index if they are missing (the SQL of
   * {@link postgresMigrationSql}), in one transaction under an advisory lock, so instances
   * starting at once do not trip over each other. Safe to run on every start. Also reads
   * `synchronous_commit` (see {@link PostgresStore}'s warnings).
   */
  async migrate(): Promise<void> {
    this.#assertOpen('migrate');
    const client = await this.#connect('migrate');
    let broken = false;
    // A checked-out client has no listener of the pool's: the server ending the connection (a
    // restart, pg_terminate_backend) would be an unhandled 'error' event, which ends the process.
    const onError = (): void => {
      broken = true;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      await client.query({
        text: 'SELECT pg_advisory_xact_lock(hashtext($1))',
        values: [`nestjs-idempotent:${this.#names.display}`],
      });
      await client.query(postgresMigrationSql({ table: this.#tableOption(), schema: this.#schemaOption() }));
      await client.query('COMMIT');
    } catch (error) {
      const rolledBack = await client.query('ROLLBACK').then(
        () => true,
        () => false,
      );
      broken ||= !rolledBack;
      throw storeError(error, 'migrate');
    } finally {
      client.removeListener('error', onError);
      // A failed connection may still emit errors while it closes: swallow them.
      if (broken) client.on('error', () => undefined);
      client.release(broken);
    }
    await this.#checkServer();
  }

  async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    assertEntryState(entry, 'processing', 'tryInsert');
    this.#assertOpen('tryInsert');
    const id = key.toString();
    const fingerprint = entry.fingerprint.toString();
    for (let attempt = 1; attempt <= CLAIM_ATTEMPTS; attempt++) {
      const nonce = newNonce();
      const { rows } = await this.#query('claim', [id, nonce, fingerprint, entry.ttl]);
      const row = rows[0] as (EntryRow & { claimed: string | null }) | undefined;
      if (row?.claimed != null) {
        return { kind: 'claimed', fencingToken: new FencingToken(BigInt(row.claimed), nonce), entry };
      }
      if (row?.fingerprint != null) return { kind: 'exists', entry: this.#entryOf(row, id) };
      // Neither: the key changed hands after this statement's snapshot (a claim or a completion
      // committed meanwhile, whose row the statement waited on but cannot read). A new statement
      // sees it.
    }
    throw new IdempotencyStoreError(`postgres tryInsert: the key changed hands during each of ${CLAIM_ATTEMPTS} tries`);
  }

  async complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    assertDuration('ttlMs', ttlMs);
    assertEntryState(entry, 'completed', 'complete');
    this.#assertOpen('complete');
    return this.#completeOn(undefined, key, entry, fencingToken, ttlMs);
  }

  /** `complete`, on the pool or on a transaction's connection. */
  async #completeOn(
    client: PostgresPoolClient | undefined,
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    const id = key.toString();
    const [token, nonce] = claimOf(fencingToken);
    const response = entry.response;
    const body = response.body;
    const values = [
      id,
      token,
      nonce,
      entry.fingerprint.toString(),
      response.statusCode,
      JSON.stringify(response.metadata),
      Buffer.from(body.buffer, body.byteOffset, body.byteLength),
      ttlMs,
      notifyPayload(id),
    ];
    const { rows } = await this.#query('complete', values, client);
    const row = rows[0] as HolderRow;
    if (row.token === null) return FencedOutcome.KeyExpired;
    if (row.applied > 0) return FencedOutcome.Applied;
    if (row.token !== token || row.nonce !== nonce) return FencedOutcome.FencingMismatch;
    if (row.fingerprint !== entry.fingerprint.toString()) return FencedOutcome.FingerprintMismatch;
    // Completed by this very claim before: the first response stays.
    return FencedOutcome.Applied;
  }

  async remove(key: IdempotencyKey, fencingToken: FencingToken): Promise<FencedOutcome> {
    this.#assertOpen('remove');
    const id = key.toString();
    const [token, nonce] = claimOf(fencingToken);
    const { rows } = await this.#query('remove', [id, token, nonce, notifyPayload(id)]);
    const row = rows[0] as HolderRow;
    if (row.token === null) return FencedOutcome.KeyExpired;
    return row.applied > 0 ? FencedOutcome.Applied : FencedOutcome.FencingMismatch;
  }

  async touch(key: IdempotencyKey, fencingToken: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    assertDuration('ttlMs', ttlMs);
    this.#assertOpen('touch');
    const [token, nonce] = claimOf(fencingToken);
    const { rows } = await this.#query('touch', [key.toString(), token, nonce, ttlMs]);
    const row = rows[0] as HolderRow;
    if (row.token === null) return FencedOutcome.KeyExpired;
    if (row.applied > 0) return FencedOutcome.Applied;
    if (row.token !== token || row.nonce !== nonce) return FencedOutcome.FencingMismatch;
    // A completed entry is never extended: its lease is over.
    return FencedOutcome.KeyExpired;
  }

  async purge(key: IdempotencyKey): Promise<void> {
    this.#assertOpen('purge');
    const id = key.toString();
    await this.#query('purge', [id, notifyPayload(id)]);
  }

  async get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    this.#assertOpen('get');
    const id = key.toString();
    const { rows } = await this.#query('get', [id]);
    const row = rows[0] as EntryRow | undefined;
    return row === undefined ? undefined : this.#entryOf(row, id);
  }

  /** The live entry's state, fencing token and time left (`IdempotencyAdmin.inspect`). */
  override async inspect(key: IdempotencyKey): Promise<StoreKeyInfo | undefined> {
    this.#assertOpen('inspect');
    const { rows } = await this.#query('inspect', [key.toString()]);
    const row = rows[0] as { completed: string; token: string; nonce: string; ms_left: string } | undefined;
    if (row === undefined) return undefined;
    return {
      state: row.completed === 't' ? 'completed' : 'processing',
      fencingToken: new FencingToken(BigInt(row.token), row.nonce),
      msLeft: Math.max(0, Number(row.ms_left)),
    };
  }

  /**
   * Resolves when the entry under `key` is completed, released or purged (by any instance on the
   * table: the statements NOTIFY on the table's channel, which the store LISTENs on through one
   * connection of its own, opened on first use), after `timeoutMs` at the latest, or when
   * `signal` aborts. Expiry is not announced. Without the connection (it failed or dropped),
   * waits last to their timeout, and the next wait opens it again.
   */
  override waitForChange(key: IdempotencyKey, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.#listener.wait(notifyPayload(key.toString()), this.#closed ? 0 : timeoutMs, signal);
  }

  /** Checks the server answers (`SELECT 1`); throws an `IdempotencyStoreError` when it does not. */
  override async ping(): Promise<void> {
    this.#assertOpen('ping');
    try {
      await this.#pool.query('SELECT 1');
    } catch (error) {
      throw storeError(error, 'ping');
    }
  }

  /**
   * Deletes at most `sweepBatch` expired rows, never one another transaction holds locked, and
   * answers how many it deleted. The timer runs it every `sweepIntervalMs`, again while batches
   * come back full.
   */
  async sweep(): Promise<number> {
    this.#assertOpen('sweep');
    const { rowCount } = await this.#query('sweep', [this.#sweepBatch]);
    return rowCount ?? 0;
  }

  /**
   * Opens a transaction on a connection of its own from the pool (`BEGIN`, READ COMMITTED whatever
   * the server's default isolation level): the work writes through its `client` (a
   * `pg.PoolClient`), `complete` stores the result in it (token-checked; the key's row is not
   * locked before), and `commit` commits both. The connection goes back to the pool when the
   * transaction ends.
   */
  async beginTransaction(): Promise<StoreTransaction<PostgresPoolClient>> {
    this.#assertOpen('beginTransaction');
    const client = await this.#connect('beginTransaction');
    const tx = new PostgresTransaction(this, client, this.#pool, this.#commitCheckMs);
    try {
      await tx.begin();
    } catch (error) {
      tx.destroy();
      throw storeError(error, 'beginTransaction');
    }
    return tx;
  }

  /** The completion of a transaction, on its connection. @internal */
  completeInTransaction(
    client: PostgresPoolClient,
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    assertDuration('ttlMs', ttlMs);
    assertEntryState(entry, 'completed', 'complete');
    return this.#completeOn(client, key, entry, fencingToken, ttlMs);
  }

  /**
   * Stops the sweeper and the LISTEN connection and refuses every operation from then on
   * (`StoreClosedError`); requests waiting for a key are woken. The pool is left alone (it
   * belongs to the caller, who ends it) unless `closePool` is set. Transactions already begun can
   * still complete, commit and roll back.
   */
  override async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#listener.close();
    // Its 'error' events (a connection the server drops while the pool ends) have the listener
    // the constructor gave it.
    if (this.#closePool) await this.#pool.end?.();
  }

  /**
   * Where warnings go when no `onWarning` was given (IdempotencyModule passes its logger).
   * @internal
   */
  useWarningFallback(warn: (message: string) => void): void {
    this.#warningFallback = warn;
  }

  /** One tick of the sweeper: batches until one comes back short. Errors wait for the next tick. @internal */
  async sweepExpired(): Promise<void> {
    if (this.#sweeping || this.#closed) return;
    this.#sweeping = true;
    try {
      // At most 100 batches a tick: a huge backlog is worked off over several ticks.
      for (let i = 0; i < 100 && !this.#closed; i++) if ((await this.sweep()) < this.#sweepBatch) break;
    } catch {
      // The table may not exist yet (before migrate), or the server is away: try next time.
    } finally {
      this.#sweeping = false;
    }
  }

  #tableOption(): string {
    const display = this.#names.display;
    return display.includes('.') ? display.slice(display.indexOf('.') + 1) : display;
  }

  #schemaOption(): string | undefined {
    const display = this.#names.display;
    return display.includes('.') ? display.slice(0, display.indexOf('.')) : undefined;
  }

  #assertOpen(operation: string): void {
    if (this.#closed) throw new StoreClosedError(this.kind, operation);
  }

  async #connect(operation: string): Promise<PostgresPoolClient> {
    try {
      return await this.#pool.connect();
    } catch (error) {
      throw storeError(error, operation);
    }
  }

  async #query(op: StatementName, values: unknown[], client?: PostgresPoolClient): Promise<PostgresQueryResult> {
    if (this.#checked === undefined) void this.#checkServer();
    try {
      const query = { name: this.#statementNames[op], text: this.#sql[op], values, types: TEXT };
      return await (client ?? this.#pool).query(query);
    } catch (error) {
      throw storeError(error, op === 'claim' ? 'tryInsert' : op, this.#names.display);
    }
  }

  /**
   * Reads `synchronous_commit` once; `off` gets one warning. From `migrate()` (awaited), else in
   * the background on first use.
   */
  #checkServer(): Promise<void> {
    if (this.#checked !== undefined) return this.#checked;
    this.#checked = this.#pool.query({ text: 'SHOW synchronous_commit', types: TEXT }).then(
      ({ rows }) => {
        const value = (rows[0] as { synchronous_commit?: string } | undefined)?.synchronous_commit;
        if (value === 'off') {
          this.#warn(
            `PostgresStore (${this.#names.display}): synchronous_commit is off: a crash of PostgreSQL can lose the ` +
              'last committed claims and results (a retry then runs the work again). Set synchronous_commit to on ' +
              'for the role or database the store uses.',
          );
        }
      },
      () => {
        // Unreadable now: read again on the next use.
        this.#checked = undefined;
      },
    );
    return this.#checked;
  }

  #warn(message: string): void {
    const report = this.#onWarning ?? this.#warningFallback;
    if (report !== undefined) report(message);
    else process.emitWarning(message, 'IdempotencyWarning');
  }

  /** A connection of the store's own for LISTEN: a client made as the pool makes them, else one of the pool's. */
  async #openListener(): Promise<ListenerConnection> {
    const pool = this.#pool as PostgresPool & {
      Client?: new (config: object | undefined) => ListenerConnection & { connect(): Promise<unknown> };
    };
    if (typeof pool.Client === 'function') {
      const client = new pool.Client(pool.options);
      // Errors before the listener's own handler is attached (a refused connection).
      client.on('error', () => undefined);
      await client.connect();
      return client;
    }
    const client = await pool.connect();
    client.on('error', () => undefined);
    const events = client as unknown as { on(event: string, listener: (arg: never) => void): unknown };
    return {
      query: (text) => client.query(text),
      on: (event: string, listener: (arg: never) => void) => events.on(event, listener),
      end: () => client.release(true),
    };
  }

  #entryOf(row: EntryRow, key: string): AnyEntry {
    let fingerprint: Fingerprint;
    let ttl: number;
    try {
      fingerprint = Fingerprint.fromHex(row.fingerprint);
      ttl = Number(row.ttl_ms);
      if (row.status_code === null) return new IdempotencyEntry(fingerprint, ttl);
      const parsed: unknown = JSON.parse(row.metadata ?? '{}');
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error('the metadata is not a JSON object');
      }
      const response = new CachedResponse({
        statusCode: Number(row.status_code),
        body: Buffer.from(row.body ?? '', 'hex'),
        metadata: parsed as Record<string, string>,
      });
      return completedEntry(fingerprint, ttl, response);
    } catch (error) {
      throw new StoreDecodeError(
        `postgres ${this.#names.display}: the row of ${JSON.stringify(key)} is not an idempotency entry (${messageOf(error)})`,
        { cause: error },
      );
    }
  }
}

interface HolderRow {
  token: string | null;
  nonce: string | null;
  fingerprint: string | null;
  applied: number;
}

/**
 * A transaction of a {@link PostgresStore}. @internal
 */
class PostgresTransaction implements StoreTransaction<PostgresPoolClient> {
  #pid: string | undefined;
  #txid: string | undefined;
  #ended = false;
  #broken = false;
  readonly #onError = (): void => {
    // The connection failed (the backend was terminated, the network dropped): commit finds out
    // what became of the transaction; the client must not go back to the pool.
    this.#broken = true;
  };

  /** The client the work writes through: the transaction's, refusing to end it or be released. */
  readonly client: PostgresPoolClient;
  /** The transaction's connection itself, for the library's own statements. */
  readonly #raw: PostgresPoolClient;

  constructor(
    private readonly store: PostgresStore,
    client: PostgresPoolClient,
    private readonly pool: PostgresPool,
    private readonly checkMs: number,
  ) {
    this.#raw = client;
    this.client = guardedTransactionClient(client);
    client.on('error', this.#onError);
  }

  async begin(): Promise<void> {
    // One round trip: BEGIN, then the backend and the transaction id, to learn from another
    // connection what became of a commit whose connection was lost (txid_current() also gives the
    // transaction its id now). Two statements in one simple query answer one result each.
    // READ COMMITTED whatever the server's default: the completion reads the key's row as it is
    // now (its renewed lease, a takeover), which a snapshot from the start of the transaction
    // (REPEATABLE READ, SERIALIZABLE) cannot: it would find the lease of the claim as it was at
    // BEGIN, run out, or fail to serialize with the renewals.
    const answered = (await this.#raw.query({
      text: 'BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_backend_pid()::text AS pid, txid_current()::text AS txid',
      types: TEXT,
    })) as PostgresQueryResult | PostgresQueryResult[];
    const { rows } = Array.isArray(answered) ? answered[answered.length - 1] : answered;
    this.#pid = (rows[0] as { pid: string }).pid;
    this.#txid = (rows[0] as { txid: string }).txid;
  }

  complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    if (this.#ended) return Promise.reject(new IdempotencyStoreError('postgres complete: the transaction has ended'));
    return this.store.completeInTransaction(this.#raw, key, entry, fencingToken, ttlMs);
  }

  async commit(): Promise<'committed' | 'rolled-back'> {
    if (this.#ended) throw new IdempotencyStoreError('postgres commit: the transaction has ended');
    this.#ended = true;
    let result: PostgresQueryResult;
    try {
      result = await this.#raw.query('COMMIT');
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const severity = (error as { severity?: unknown }).severity;
      if (typeof code === 'string' && severity === 'ERROR' && !this.#broken) {
        // The server refused the commit and rolled back (a serialization failure, a deferred
        // constraint): an ERROR, not FATAL, leaves the session idle outside a transaction (an
        // error after the commit record is written would be a PANIC).
        this.#release(false);
        return 'rolled-back';
      }
      // The connection was lost during the COMMIT (or the server ended it): find out elsewhere.
      this.#release(true);
      return this.#outcomeElsewhere(error);
    }
    this.#release(false);
    // A COMMIT of a transaction an error had aborted answers ROLLBACK.
    return result.command === 'ROLLBACK' ? 'rolled-back' : 'committed';
  }

  async rollback(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#broken) return this.#release(true);
    try {
      await this.#raw.query('ROLLBACK');
      this.#release(false);
    } catch {
      this.#release(true);
    }
  }

  /** Ends the transaction's connection (a BEGIN that failed). */
  destroy(): void {
    this.#ended = true;
    this.#release(true);
  }

  #release(destroy: boolean): void {
    this.#raw.removeListener('error', this.#onError);
    // A failed connection may still emit errors while it closes: swallow them.
    if (destroy || this.#broken) this.#raw.on('error', () => undefined);
    this.#raw.release(destroy || this.#broken);
  }

  /**
   * What became of the transaction, asked on another connection once its backend is gone: the
   * server reads `txid_status`. Throws when it cannot tell within the time limit.
   */
  async #outcomeElsewhere(cause: unknown): Promise<'committed' | 'rolled-back'> {
    const txid = this.#txid;
    const deadline = Date.now() + this.checkMs;
    let last: unknown = cause;
    if (txid !== undefined) {
      for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
        try {
          const { rows } = await this.pool.query({
            text:
              'SELECT txid_status($1::bigint) AS status, ' +
              'EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $2::int) AS alive',
            values: [txid, this.#pid],
            types: TEXT,
          });
          const { status, alive } = rows[0] as { status: string | null; alive: string };
          // While its backend lives, a transaction can still commit or roll back.
          if (alive !== 't' || status !== 'in progress') {
            if (status === 'committed') return 'committed';
            if (status === 'aborted') return 'rolled-back';
            if (alive !== 't') break;
          }
        } catch (error) {
          last = error;
        }
        if (Date.now() + delay > deadline) break;
        await sleep(delay);
      }
    }
    throw new IdempotencyStoreError(
      `postgres commit: the connection was lost during COMMIT, and whether the transaction committed could not ` +
        `be told (${messageOf(last)})`,
      { cause: last },
    );
  }
}

/** The token number (decimal, or -1 for one no sequence gives) and nonce of a claim, as the SQL compares them. */
function claimOf(fencingToken: FencingToken): [token: string, nonce: string] {
  if (!(fencingToken instanceof FencingToken)) return ['-1', ''];
  const value = fencingToken.value;
  return [value > MAX_BIGINT ? '-1' : value.toString(), fencingToken.nonce ?? ''];
}

function storeError(error: unknown, operation: string, table?: string): IdempotencyStoreError {
  if (error instanceof IdempotencyStoreError) return error;
  const code = (error as { code?: unknown }).code;
  const hint =
    code === '42P01' && table !== undefined
      ? ` (run store.migrate(), or the SQL of postgresMigrationSql(), to create ${table})`
      : '';
  return new IdempotencyStoreError(`postgres ${operation} failed: ${messageOf(error)}${hint}`, { cause: error });
}

/** The statements of the store on the table `n` names. */
function statements(n: PostgresNames): Statements {
  const t = n.table;
  const now = 'clock_timestamp()';
  const ms = "* interval '1 millisecond'";
  const entryColumns =
    "fingerprint, ttl_ms::text AS ttl_ms, status_code::text AS status_code, metadata::text AS metadata, encode(body, 'hex') AS body";
  // The row of the key, live, locked: what a token-checked write decides on. Under READ COMMITTED
  // a row another transaction holds is waited for, then read as that transaction left it.
  const holder = (columns: string) =>
    `SELECT key, token, nonce, ${columns} FROM ${t} WHERE key = $1 AND expires_at > ${now} FOR UPDATE`;
  const answer = (notify: string) =>
    `SELECT cur.token::text AS token, cur.nonce, cur.fingerprint,
       (SELECT count(*) FROM done)::int AS applied${notify}
     FROM (VALUES (1)) AS one LEFT JOIN cur ON true`;
  const notify = (payload: string) => `,
       (SELECT pg_notify('${n.channel}', ${payload}) FROM done) AS notified`;
  return {
    // The live row, if any; else a new claim, over an expired row if there is one (never over a
    // live one: a failed claim changes nothing). The token is drawn only when the key looked free.
    claim: `WITH live AS (
        SELECT ${entryColumns} FROM ${t} WHERE key = $1 AND expires_at > ${now}
      ), claimed AS (
        INSERT INTO ${t} AS e (key, token, nonce, fingerprint, ttl_ms, expires_at)
        SELECT $1, nextval(${n.sequenceLiteral}), $2, $3, $4::bigint, ${now} + $4::bigint ${ms}
        WHERE NOT EXISTS (SELECT FROM live)
        ON CONFLICT (key) DO UPDATE SET
          token = excluded.token, nonce = excluded.nonce, fingerprint = excluded.fingerprint,
          ttl_ms = excluded.ttl_ms, expires_at = ${now} + excluded.ttl_ms ${ms},
          status_code = NULL, metadata = NULL, body = NULL
        WHERE e.expires_at <= ${now} AND e.token < excluded.token
        RETURNING e.token
      )
      SELECT (SELECT token::text FROM claimed) AS claimed, live.*
      FROM (VALUES (1)) AS one LEFT JOIN live ON true`,
    complete: `WITH cur AS (
        ${holder('fingerprint, status_code IS NOT NULL AS completed')}
      ), done AS (
        UPDATE ${t} AS e SET status_code = $5, metadata = $6::json, body = $7::bytea, ttl_ms = $8::bigint,
          expires_at = ${now} + $8::bigint ${ms}
        FROM cur
        WHERE e.key = cur.key AND cur.token = $2::numeric AND cur.nonce = $3 AND cur.fingerprint = $4
          AND NOT cur.completed
        RETURNING 1
      )
      ${answer(notify('$9'))}`,
    touch: `WITH cur AS (
        ${holder('fingerprint, status_code IS NOT NULL AS completed')}
      ), done AS (
        UPDATE ${t} AS e SET ttl_ms = $4::bigint, expires_at = ${now} + $4::bigint ${ms}
        FROM cur
        WHERE e.key = cur.key AND cur.token = $2::numeric AND cur.nonce = $3 AND NOT cur.completed
        RETURNING 1
      )
      ${answer('')}`,
    remove: `WITH cur AS (
        ${holder('fingerprint')}
      ), done AS (
        DELETE FROM ${t} AS e USING cur
        WHERE e.key = cur.key AND cur.token = $2::numeric AND cur.nonce = $3
        RETURNING 1
      )
      ${answer(notify('$4'))}`,
    purge: `WITH done AS (DELETE FROM ${t} WHERE key = $1 RETURNING 1)
      SELECT (SELECT pg_notify('${n.channel}', $2) FROM done) AS notified`,
    get: `SELECT ${entryColumns} FROM ${t} WHERE key = $1 AND expires_at > ${now}`,
    inspect: `SELECT status_code IS NOT NULL AS completed, token, nonce,
        ceil(extract(epoch FROM expires_at - ${now}) * 1000)::bigint AS ms_left
      FROM ${t} WHERE key = $1 AND expires_at > ${now}`,
    // Rows another transaction holds locked are skipped: a completion in an open transaction
    // makes the row live again when it commits.
    sweep: `DELETE FROM ${t} WHERE ctid IN (
        SELECT ctid FROM ${t} WHERE expires_at < ${now} LIMIT $1 FOR UPDATE SKIP LOCKED
      ) AND expires_at < ${now}`,
  };
}

/** Sweeps `store` every `ms` while it is alive (the timer holds it weakly, as MemoryStore's does). */
function sweepWeakly(store: WeakRef<PostgresStore>, ms: number): NodeJS.Timeout {
  const timer = setInterval(() => {
    const live = store.deref();
    if (live === undefined) clearInterval(timer);
    else void live.sweepExpired();
  }, ms);
  timer.unref();
  return timer;
}
