import { createHash, randomBytes } from 'node:crypto';
import {
  AnyEntry,
  CachedResponse,
  CompletedEntry,
  FencedOutcome,
  FencingToken,
  Fingerprint,
  IdempotencyEntry,
  IdempotencyKey,
  IdempotencyStore,
  IdempotencyStoreError,
  InsertResult,
  ProcessingEntry,
} from 'nestjs-idempotent';

/** What the store needs of a Postgres client: node-postgres's `Pool` and PGlite both fit. */
export interface SqlClient {
  query(text: string, values: unknown[]): Promise<{ rows: unknown[] }>;
}

export interface PostgresStoreOptions {
  /** The tables are `<tablePrefix>_entries` and `<tablePrefix>_counters`. @default 'idempotency_store' */
  tablePrefix?: string;
}

/**
 * Fencing-counter buckets. Tokens must strictly increase per key even after its entry is gone, so
 * a counter has to outlive the entry: one per key would grow without bound, one per bucket of
 * keys stays at most this many rows. Never change it on a store in use: a key would move to
 * another bucket, whose counter may be lower.
 */
const BUCKETS = 1024;

interface EntryRow {
  fingerprint: string;
  ttl_ms: number;
  status_code: number | null;
  body: Uint8Array | null;
  metadata: Record<string, string> | null;
}

interface HolderRow {
  token: string;
  nonce: string;
  fingerprint: string;
  completed: boolean;
}

/**
 * An idempotency store on Postgres. Every operation is one SQL statement (atomic on its own, no
 * transaction to hold open); a refused write makes a second, read-only one to say why.
 */
export class PostgresStore extends IdempotencyStore {
  readonly kind = 'postgres';
  readonly #entries: string;
  readonly #counters: string;

  constructor(
    private readonly db: SqlClient,
    options: PostgresStoreOptions = {},
  ) {
    super();
    const prefix = options.tablePrefix ?? 'idempotency_store';
    // Table names cannot be query parameters: accept only plain identifiers.
    if (!/^[a-z_][a-z0-9_]{0,40}$/.test(prefix)) throw new RangeError(`not a plain table prefix: ${prefix}`);
    this.#entries = `${prefix}_entries`;
    this.#counters = `${prefix}_counters`;
  }

  /** Creates the tables if they are missing: run it at start-up or from a migration. */
  async createTables(): Promise<void> {
    await this.db.query(
      `CREATE TABLE IF NOT EXISTS ${this.#entries} (
        key         text PRIMARY KEY,
        fingerprint text NOT NULL,
        token       numeric(20) NOT NULL, -- an unsigned 64-bit number: wider than bigint
        nonce       text NOT NULL,
        ttl_ms      bigint NOT NULL,
        expires_at  timestamptz NOT NULL,
        status_code integer,              -- NULL while processing
        body        bytea,
        metadata    jsonb
      )`,
      [],
    );
    await this.db.query(`CREATE INDEX IF NOT EXISTS ${this.#entries}_expiry ON ${this.#entries} (expires_at)`, []);
    await this.db.query(
      `CREATE TABLE IF NOT EXISTS ${this.#counters} (bucket integer PRIMARY KEY, token numeric(20) NOT NULL)`,
      [],
    );
  }

  async tryInsert(key: IdempotencyKey, entry: ProcessingEntry): Promise<InsertResult> {
    // If another claim commits between this statement's look and its insert, the statement claims
    // nothing and cannot see that claim's row yet (its snapshot is older); a second look does.
    for (let attempt = 0; attempt < 3; attempt++) {
      const nonce = randomBytes(16).toString('base64url');
      const { rows } = await this.db.query(
        // The counter moves only when the key is free, and the entry is written only if it is
        // missing or expired: a live entry is never touched by a failed claim.
        `WITH live AS (
           SELECT 1 FROM ${this.#entries} WHERE key = $1 AND expires_at > now()
         ), counter AS (
           INSERT INTO ${this.#counters} AS c (bucket, token)
           SELECT $2, 1 WHERE NOT EXISTS (SELECT FROM live)
           ON CONFLICT (bucket) DO UPDATE SET token = c.token + 1
           RETURNING token
         )
         INSERT INTO ${this.#entries} AS e (key, fingerprint, token, nonce, ttl_ms, expires_at)
         SELECT $1, $3, token, $4, $5::bigint, now() + $5::bigint * interval '1 millisecond' FROM counter
         ON CONFLICT (key) DO UPDATE SET
           fingerprint = excluded.fingerprint, token = excluded.token, nonce = excluded.nonce,
           ttl_ms = excluded.ttl_ms, expires_at = excluded.expires_at,
           status_code = NULL, body = NULL, metadata = NULL
         WHERE e.expires_at <= now()
         RETURNING token::text AS token`,
        [key.toString(), bucketOf(key), entry.fingerprint.toString(), nonce, entry.ttl],
      );
      const claimed = rows[0] as { token: string } | undefined;
      if (claimed !== undefined) {
        return { kind: 'claimed', fencingToken: new FencingToken(BigInt(claimed.token), nonce), entry };
      }
      const live = await this.get(key);
      if (live !== undefined) return { kind: 'exists', entry: live };
    }
    throw new IdempotencyStoreError('the key changed hands during every claim attempt');
  }

  async complete(
    key: IdempotencyKey,
    entry: CompletedEntry,
    fencingToken: FencingToken,
    ttlMs: number,
  ): Promise<FencedOutcome> {
    checkTtl(ttlMs);
    const { statusCode, body, metadata } = entry.response;
    const { rows } = await this.db.query(
      `UPDATE ${this.#entries}
       SET status_code = $5, body = $6, metadata = $7::jsonb,
           ttl_ms = $8::bigint, expires_at = now() + $8::bigint * interval '1 millisecond'
       WHERE key = $1 AND expires_at > now() AND token = $2::numeric AND nonce = $3
         AND fingerprint = $4 AND status_code IS NULL
       RETURNING 1`,
      [
        key.toString(),
        fencingToken.value.toString(),
        fencingToken.nonce ?? null,
        entry.fingerprint.toString(),
        statusCode,
        body,
        JSON.stringify(metadata),
        ttlMs,
      ],
    );
    if (rows.length > 0) return FencedOutcome.Applied;
    const why = await this.#whyRefused(key, fencingToken, entry.fingerprint);
    // Completed by this very claim before (a repeat): the first response stays, and it is Applied.
    if (why === 'completed') return FencedOutcome.Applied;
    return why;
  }

  async remove(key: IdempotencyKey, fencingToken: FencingToken): Promise<FencedOutcome> {
    const { rows } = await this.db.query(
      `DELETE FROM ${this.#entries}
       WHERE key = $1 AND expires_at > now() AND token = $2::numeric AND nonce = $3
       RETURNING 1`,
      [key.toString(), fencingToken.value.toString(), fencingToken.nonce ?? null],
    );
    if (rows.length > 0) return FencedOutcome.Applied;
    const why = await this.#whyRefused(key, fencingToken);
    return why === 'completed' ? changedMeanwhile() : why;
  }

  async touch(key: IdempotencyKey, fencingToken: FencingToken, ttlMs: number): Promise<FencedOutcome> {
    checkTtl(ttlMs);
    const { rows } = await this.db.query(
      `UPDATE ${this.#entries}
       SET ttl_ms = $4::bigint, expires_at = now() + $4::bigint * interval '1 millisecond'
       WHERE key = $1 AND expires_at > now() AND token = $2::numeric AND nonce = $3 AND status_code IS NULL
       RETURNING 1`,
      [key.toString(), fencingToken.value.toString(), fencingToken.nonce ?? null, ttlMs],
    );
    if (rows.length > 0) return FencedOutcome.Applied;
    // A completed entry is never extended: its lease is over.
    const why = await this.#whyRefused(key, fencingToken);
    return why === 'completed' ? FencedOutcome.KeyExpired : why;
  }

  async purge(key: IdempotencyKey): Promise<void> {
    await this.db.query(`DELETE FROM ${this.#entries} WHERE key = $1`, [key.toString()]);
  }

  async get(key: IdempotencyKey): Promise<AnyEntry | undefined> {
    const { rows } = await this.db.query(
      `SELECT fingerprint, ttl_ms::float8 AS ttl_ms, status_code, body, metadata
       FROM ${this.#entries} WHERE key = $1 AND expires_at > now()`,
      [key.toString()],
    );
    const row = rows[0] as EntryRow | undefined;
    if (row === undefined) return undefined;
    const entry = new IdempotencyEntry(Fingerprint.fromHex(row.fingerprint), row.ttl_ms);
    if (row.status_code === null) return entry;
    return entry.complete(
      new CachedResponse({ statusCode: row.status_code, body: row.body ?? '', metadata: row.metadata ?? {} }),
    );
  }

  /** Deletes expired entries (reads already treat them as missing): run it now and then. */
  async sweep(): Promise<void> {
    await this.db.query(`DELETE FROM ${this.#entries} WHERE expires_at <= now()`, []);
  }

  /**
   * Why a token-checked write matched no row, from what the key holds now. The refused write
   * changed nothing, so a later look answers as well as one at the time; `'completed'` means the
   * token holds a completed entry.
   */
  async #whyRefused(
    key: IdempotencyKey,
    fencingToken: FencingToken,
    fingerprint?: Fingerprint,
  ): Promise<FencedOutcome | 'completed'> {
    const { rows } = await this.db.query(
      `SELECT token::text AS token, nonce, fingerprint, status_code IS NOT NULL AS completed
       FROM ${this.#entries} WHERE key = $1 AND expires_at > now()`,
      [key.toString()],
    );
    const row = rows[0] as HolderRow | undefined;
    if (row === undefined) return FencedOutcome.KeyExpired;
    if (row.token !== fencingToken.value.toString() || row.nonce !== fencingToken.nonce) {
      return FencedOutcome.FencingMismatch;
    }
    if (fingerprint !== undefined && row.fingerprint !== fingerprint.toString()) {
      return FencedOutcome.FingerprintMismatch;
    }
    if (row.completed) return 'completed';
    // The token's own live, processing entry, which the write should have matched.
    return changedMeanwhile();
  }
}

/** An error is always a safe answer: callers retry a completion, and a lease outlives a failed touch. */
function changedMeanwhile(): never {
  throw new IdempotencyStoreError('the entry changed during the write; try again');
}

/** The key's counter bucket, from a hash of our own (a Postgres upgrade cannot move keys). */
function bucketOf(key: IdempotencyKey): number {
  return createHash('sha256').update(key.toString()).digest().readUInt32BE(0) % BUCKETS;
}

function checkTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 1) {
    throw new RangeError(`ttlMs must be a whole number of milliseconds from 1, got ${ttlMs}`);
  }
}
