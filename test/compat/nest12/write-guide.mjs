// Writes docs/testing.md's app and end-to-end spec (the blocks marked `testing-app` and
// `testing-e2e`), as printed, into test/ here, where `nest new` puts e2e specs: run-nest12.sh
// then runs them with Vitest as a Nest CLI 12 project does (`vitest run --config ./vitest.config.e2e.ts`).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const page = readFileSync(new URL('../../../docs/testing.md', import.meta.url), 'utf8');
const block = (name) => {
  const match = new RegExp(`<!-- snippet: ${name} -->\\s*\`\`\`ts\\n([\\s\\S]*?)^\`\`\`$`, 'm').exec(page);
  if (match === null) throw new Error(`docs/testing.md has no ts block marked <!-- snippet: ${name} -->`);
  return match[1];
};
mkdirSync(new URL('./test/', import.meta.url), { recursive: true });
writeFileSync(new URL('./test/testing-app.ts', import.meta.url), block('testing-app'));
writeFileSync(new URL('./test/payments.e2e-spec.ts', import.meta.url), block('testing-e2e'));
