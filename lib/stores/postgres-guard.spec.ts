import { guardedTransactionClient, transactionControlIn } from './postgres-guard';

describe('transactionControlIn', () => {
  it('finds statements that begin, end or prepare a transaction, in any case, anywhere in the text', () => {
    for (const sql of [
      'COMMIT',
      'commit;',
      '  begin isolation level serializable',
      'START TRANSACTION',
      'end',
      'abort',
      'rollback',
      'ROLLBACK AND CHAIN',
      'PREPARE TRANSACTION $$x$$',
      'INSERT INTO t VALUES (1); COMMIT',
      '/* a */ -- b\n COMMIT',
    ]) {
      expect(transactionControlIn(sql)).toBeDefined();
    }
  });

  it('lets savepoints and statements that only mention the words through', () => {
    for (const sql of [
      'SAVEPOINT a',
      'ROLLBACK TO SAVEPOINT a',
      'rollback to a',
      'ROLLBACK WORK TO SAVEPOINT a',
      'RELEASE SAVEPOINT a',
      "INSERT INTO t (note) VALUES ('x; COMMIT')",
      "INSERT INTO t (note) VALUES (E'it\\'s; COMMIT')",
      'SELECT "commit;" FROM t',
      'SELECT $1::int',
      'DO $body$ BEGIN PERFORM 1; END $body$',
      'SELECT 1 -- ; commit',
      'SELECT 1 /* ; /* commit */ ; commit */',
      'UPDATE t SET "end" = 1',
    ]) {
      expect(transactionControlIn(sql)).toBeUndefined();
    }
  });
});

describe('guardedTransactionClient', () => {
  const calls: unknown[] = [];
  const client = {
    query: (...args: unknown[]) => {
      calls.push(args);
      return Promise.resolve({ rows: [] });
    },
    release: () => calls.push('release'),
    processID: 7,
  };
  const guarded = guardedTransactionClient(client);

  it('passes queries through and refuses transaction control and release()', async () => {
    await guarded.query('SELECT 1');
    await guarded.query({ text: 'SELECT 2' });
    await expect(guarded.query('COMMIT')).rejects.toThrow(/COMMIT on the idempotent transaction's client is refused/);
    await expect(guarded.query({ text: 'begin' })).rejects.toThrow(/BEGIN/);
    expect(() => guarded.release()).toThrow(/release\(\)/);
    expect(guarded.processID).toBe(7);
    expect(calls).toEqual([['SELECT 1'], [{ text: 'SELECT 2' }]]);
  });

  it('answers a callback with the refusal', async () => {
    const error = await new Promise((resolve) => (guarded.query as (...a: unknown[]) => void)('ROLLBACK', resolve));
    expect(String(error)).toMatch(/ROLLBACK/);
  });
});
