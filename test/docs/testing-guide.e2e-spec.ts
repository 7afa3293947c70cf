/**
 * docs/testing.md's end-to-end test, run as printed: its app and its Jest spec are compiled from
 * the docs, and the spec's tests register here. Plus its AtMostOnceLedger example, and the
 * core API's quick example (docs/core-api.md).
 */
import { materialize } from './snippets';

materialize('testing-app');
// eslint-disable-next-line @typescript-eslint/no-require-imports
require(materialize('testing-e2e'));

describe('docs/testing.md: checking at-most-once yourself', () => {
  it('the ledger example finds no key that ran twice', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { duplicatesRunOnce } = require(materialize('ledger')) as { duplicatesRunOnce: () => Promise<void> };
    await expect(duplicatesRunOnce()).resolves.toBeUndefined();
  });
});

describe('docs/core-api.md: the store API without Nest', () => {
  it('the quick example runs as printed', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { issueCredential } = require(materialize('core-store-api')) as { issueCredential: () => Promise<void> };
    await expect(issueCredential()).resolves.toBeUndefined();
  });
});
