import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

/** What a query answers, as PGlite's `query()` does. */
export interface QueryResult<R> {
  rows: R[];
  affectedRows?: number;
}

/** The part of PGlite's API the tests use: `query`, `exec`, `transaction`. */
export interface SqlClient {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
  exec(sql: string): Promise<void>;
}

/**
 * A real Postgres (PGlite) in a worker thread. PGlite has one connection, so transactions are
 * serialised: `transaction()` holds the connection from BEGIN to COMMIT/ROLLBACK, and queries
 * outside it wait.
 */
export class Postgres implements SqlClient {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #next = 0;
  #lock: Promise<void> = Promise.resolve();

  private constructor() {
    this.#worker = new Worker(join(__dirname, 'pglite-worker.js'));
    this.#worker.on('message', ({ id, result, error }) => {
      const call = this.#pending.get(id);
      this.#pending.delete(id);
      if (error) call?.reject(Object.assign(new Error(error.message), { code: error.code }));
      else call?.resolve(result);
    });
  }

  static async start(): Promise<Postgres> {
    const db = new Postgres();
    await db.query('SELECT 1');
    return db;
  }

  query<R = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<QueryResult<R>> {
    return this.#serialised(() => this.#send('query', sql, params) as Promise<QueryResult<R>>);
  }

  async exec(sql: string): Promise<void> {
    await this.#serialised(() => this.#send('exec', sql));
  }

  /** Runs `fn` in a transaction; a throw rolls it back. */
  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    return this.#serialised(async () => {
      const tx: SqlClient = {
        query: (sql, params = []) => this.#send('query', sql, params) as never,
        exec: async (sql) => void (await this.#send('exec', sql)),
      };
      await this.#send('exec', 'BEGIN');
      try {
        const result = await fn(tx);
        await this.#send('exec', 'COMMIT');
        return result;
      } catch (error) {
        await this.#send('exec', 'ROLLBACK');
        throw error;
      }
    });
  }

  async close(): Promise<void> {
    await this.#serialised(() => this.#send('close'));
    await this.#worker.terminate();
  }

  #serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn);
    this.#lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  #send(op: string, sql?: string, params?: unknown[]): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, op, sql, params });
    });
  }
}
