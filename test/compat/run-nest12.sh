#!/usr/bin/env bash
# Checks the built package on NestJS 12 (ESM-only): installs Nest 12 in test/compat/nest12 (its
# own lock file), puts dist/ there as node_modules/nestjs-idempotent, and runs check.mjs; then
# docs/testing.md's app and e2e spec under Vitest, set up as Nest CLI 12's `nest new` does (ESM,
# Vitest 4 globals, no SWC plugin: vitest.config.e2e.ts and tsconfig.json as it writes them).
# Run `npm run build` first (npm run test:nest12 does).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root/test/compat/nest12"
[ -f "$root/dist/index.js" ] || { echo "build the library first: npm run build" >&2; exit 1; }
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
pkg=node_modules/nestjs-idempotent
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r "$root/dist" "$root/package.json" "$pkg/"
node check.mjs
node write-guide.mjs
npx vitest run --config ./vitest.config.e2e.ts
