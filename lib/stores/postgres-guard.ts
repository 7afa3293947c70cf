/*
 * The client a transactional handler writes through is the library's transaction: the library
 * stores the response in it and commits. A handler that ends it (a `COMMIT`, a `ROLLBACK`, an
 * ORM's own `transaction()`, which sends BEGIN ... COMMIT on the client it is given) would commit
 * its effects without the response, or store a response without them; one that releases the
 * client would hand the open transaction to another caller of the pool. The client handed out
 * refuses those, so the misuse is an error the handler sees at once, and both-or-neither holds.
 */

/** Why a handler's statement is refused, or `undefined` when it may run. @internal */
export function transactionControlIn(sql: string): string | undefined {
  for (const statement of statementsOf(sql)) {
    const words = statement
      .trim()
      .split(/\s+/, 3)
      .map((word) => word.toUpperCase());
    const [first, second, third] = words;
    switch (first) {
      case 'BEGIN':
      case 'COMMIT':
      case 'END':
      case 'ABORT':
        return first;
      case 'START':
      case 'PREPARE':
        if (second === 'TRANSACTION') return `${first} TRANSACTION`;
        break;
      case 'ROLLBACK':
        // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name: a savepoint, allowed.
        if (second === 'TO' || ((second === 'WORK' || second === 'TRANSACTION') && third === 'TO')) break;
        return first;
    }
  }
  return undefined;
}

/**
 * The statements of `sql`, with comments, string literals, quoted identifiers and dollar-quoted
 * bodies blanked out (a `;` or a keyword inside them is not a statement).
 */
function statementsOf(sql: string): string[] {
  const statements: string[] = [];
  let current = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end + 1;
      current += ' ';
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else {
          i++;
        }
      }
      current += ' ';
    } else if (c === "'" || c === '"') {
      // E'...' strings take backslash escapes; standard ones and identifiers double the quote.
      const escapes = c === "'" && /[eE]$/.test(current) && !/[\w$]$/.test(current.slice(0, -1));
      i++;
      while (i < sql.length) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === c && sql[i + 1] === c) i += 2;
        else if (sql[i] === c) break;
        else i++;
      }
      i++;
      current += ' ';
    } else if (c === '$' && !/[\w$]$/.test(current)) {
      const tag = /^\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$/.exec(sql.slice(i, i + 64))?.[0];
      if (tag === undefined) {
        current += c;
        i++;
        continue;
      }
      const end = sql.indexOf(tag, i + tag.length);
      i = end < 0 ? sql.length : end + tag.length;
      current += ' ';
    } else if (c === ';') {
      statements.push(current);
      current = '';
      i++;
    } else {
      current += c;
      i++;
    }
  }
  statements.push(current);
  return statements;
}

/** The error a refused call rejects (or throws) with. */
function refusal(what: string): Error {
  const error = new Error(
    `${what} on the idempotent transaction's client is refused: the library commits the transaction with ` +
      'the stored response. Use SAVEPOINT for a part that may fail; with Drizzle, write through drizzle(tx) ' +
      'without db.transaction().',
  );
  error.name = 'IdempotencyTransactionError';
  return error;
}

/**
 * `client`, as the work receives it: `query` refuses statements that begin, end or prepare a
 * transaction, and `release` is refused; everything else is the client itself. @internal
 */
export function guardedTransactionClient<C extends object>(client: C): C {
  const raw = client as unknown as {
    query(...args: unknown[]): unknown;
  };
  const query = function (this: unknown, ...args: unknown[]): unknown {
    const first = args[0] as { text?: unknown; submit?: unknown } | string | undefined;
    const text = typeof first === 'string' ? first : typeof first?.text === 'string' ? first.text : undefined;
    const refused = text === undefined ? undefined : transactionControlIn(text);
    if (refused === undefined) return raw.query(...args);
    const error = refusal(refused);
    const callback = args[args.length - 1];
    if (typeof callback === 'function') {
      process.nextTick(() => (callback as (error: Error) => void)(error));
      return undefined;
    }
    // A submittable (a cursor, a stream) is answered at once; a query, as a failed query.
    if (typeof first === 'object' && typeof first?.submit === 'function') throw error;
    return Promise.reject(error);
  };
  const release = (): never => {
    throw refusal('release()');
  };
  return new Proxy(client, {
    get(target, property, receiver) {
      if (property === 'query') return query;
      if (property === 'release') return release;
      return Reflect.get(target, property, receiver) as unknown;
    },
  });
}
