import { createHash } from 'node:crypto';

/** Where a `PostgresStore` keeps its entries: a table, and the schema it is in. */
export interface PostgresTableOptions {
  /**
   * The table of entries (a plain identifier: a letter or `_`, then letters, digits or `_`, at
   * most 48 characters; quoted as given, so `Keys` and `keys` are two tables). Its fencing-token
   * sequence is `<table>_token_seq`, its expiry index `<table>_expires_at`.
   * @default 'idempotency_keys'
   */
  table?: string;
  /**
   * The schema of the table and its sequence (a plain identifier, at most 63 characters; it must
   * exist). By default they are unqualified, found through the connection's `search_path`
   * (`public` unless it was changed).
   * @default none
   */
  schema?: string;
}

/** The SQL names of one store's objects, quoted. @internal */
export interface PostgresNames {
  /** `"schema"."table"` or `"table"`. */
  readonly table: string;
  /** The sequence the fencing tokens are drawn from. */
  readonly sequence: string;
  /** The sequence's name as a string literal, for `nextval()`. */
  readonly sequenceLiteral: string;
  /** The expiry index's name (unqualified: an index lives in its table's schema). */
  readonly index: string;
  /** The LISTEN/NOTIFY channel (a plain identifier). */
  readonly channel: string;
  /** The unquoted `schema.table`, for messages. */
  readonly display: string;
}

const DEFAULT_TABLE = 'idempotency_keys';
const TABLE = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/;
const SCHEMA = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** `"name"`, for an identifier already checked to be plain. */
function quote(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

/**
 * Checks and quotes the table and schema names.
 * @throws TypeError naming the option when a name is not a plain identifier
 * @internal
 */
export function postgresNames(options: PostgresTableOptions = {}): PostgresNames {
  const table = options.table ?? DEFAULT_TABLE;
  const schema = options.schema;
  if (typeof table !== 'string' || !TABLE.test(table)) {
    throw new TypeError(
      `PostgresStore: table must be a plain identifier (a letter or _, then letters, digits or _; at most 48 ` +
        `characters), got ${JSON.stringify(table)}`,
    );
  }
  if (schema !== undefined && (typeof schema !== 'string' || !SCHEMA.test(schema))) {
    throw new TypeError(
      `PostgresStore: schema must be a plain identifier (a letter or _, then letters, digits or _; at most 63 ` +
        `characters), got ${JSON.stringify(schema)}`,
    );
  }
  const qualify = (name: string) => (schema === undefined ? quote(name) : `${quote(schema)}.${quote(name)}`);
  const sequence = qualify(`${table}_token_seq`);
  const display = schema === undefined ? table : `${schema}.${table}`;
  return {
    table: qualify(table),
    sequence,
    sequenceLiteral: `'${sequence}'`,
    index: quote(`${table}_expires_at`),
    // Derived from the qualified name, so every instance on one table shares it; a hash keeps it
    // within the 63 bytes of an identifier whatever the names' lengths.
    channel: `idempotency_${createHash('sha256').update(display).digest('hex').slice(0, 24)}`,
    display,
  };
}

/**
 * The SQL that creates what a `PostgresStore` needs, idempotently (`IF NOT EXISTS`): the table of
 * entries, the sequence its fencing tokens are drawn from, and the index its sweeper uses.
 * `store.migrate()` runs it; a migration tool can run it as it is (the schema must exist).
 *
 * ```ts
 * console.log(postgresMigrationSql({ table: 'idempotency_keys' }));
 * ```
 * @throws TypeError when a name is not a plain identifier
 */
export function postgresMigrationSql(options: PostgresTableOptions = {}): string {
  const n = postgresNames(options);
  return `CREATE SEQUENCE IF NOT EXISTS ${n.sequence} AS bigint MINVALUE 1 NO CYCLE;
CREATE TABLE IF NOT EXISTS ${n.table} (
  key         text COLLATE "C" PRIMARY KEY,
  token       bigint NOT NULL,  -- fencing token, from ${n.sequence}
  nonce       text NOT NULL,    -- the claim's random nonce
  fingerprint text NOT NULL,    -- 32 hex digits
  ttl_ms      bigint NOT NULL,  -- the lease while processing, the replay window once completed
  expires_at  timestamptz NOT NULL,
  status_code integer,          -- NULL while processing
  metadata    json,
  body        bytea
);
CREATE INDEX IF NOT EXISTS ${n.index} ON ${n.table} (expires_at);
`;
}
