// Runs PGlite (in-process Postgres, WebAssembly) in a worker thread: PGlite loads itself with
// dynamic import(), which Jest's module sandbox does not allow. test/support/pglite.ts talks to it.
const { parentPort } = require('node:worker_threads');
const { PGlite } = require('@electric-sql/pglite');

const db = new PGlite();

parentPort.on('message', async ({ id, op, sql, params }) => {
  try {
    let result;
    if (op === 'query') {
      const { rows, affectedRows } = await db.query(sql, params ?? []);
      result = { rows, affectedRows };
    } else if (op === 'exec') {
      await db.exec(sql);
      result = {};
    } else if (op === 'close') {
      await db.close();
      result = {};
    } else {
      throw new Error(`unknown op ${op}`);
    }
    parentPort.postMessage({ id, result });
  } catch (error) {
    parentPort.postMessage({ id, error: { message: error.message, code: error.code } });
  }
});
