#!/usr/bin/env bash
# Checks the package the way users get it: `npm pack`, then publint and are-the-types-wrong on the
# tarball, then a consumer project with the tarball installed that compiles a file using every
# documented export (strict, skipLibCheck: false) under moduleResolution node10 (what `"module": "commonjs"` Nest apps get), node16 and bundler.
# Run `npm run build` first (npm run test:package does).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
[ -f dist/index.js ] || { echo "build the library first: npm run build" >&2; exit 1; }

# Inside the repository, so the consumer finds the peer dependencies (Nest, ioredis, ...) in the
# root node_modules, as an app would in its own.
work="$(mktemp -d "$root/.package-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

npm pack --silent --pack-destination "$work" >/dev/null
tarball="$(ls "$work"/*.tgz)"
files="$(tar -tzf "$tarball")"
echo "package: $(basename "$tarball") ($(wc -l <<<"$files") files)"

# Nothing but the build, the changelog, README, LICENSE and package.json ships.
unexpected="$(grep -Ev '^package/(dist/.*|CHANGELOG\.md|README\.md|LICENSE|package\.json)$' <<<"$files" || true)"
[ -z "$unexpected" ] || { echo "unexpected files in the package:" >&2; echo "$unexpected" >&2; exit 1; }
grep -qx 'package/LICENSE' <<<"$files" || { echo "the package has no LICENSE" >&2; exit 1; }
if grep -q '\.spec\.' <<<"$files"; then echo "test files in the package" >&2; exit 1; fi

npx --no-install publint run "$tarball" --strict
npx --no-install attw "$tarball" --format table-flipped

consumer="$work/consumer"
mkdir -p "$consumer/node_modules/nestjs-idempotent"
tar -xzf "$tarball" -C "$consumer/node_modules/nestjs-idempotent" --strip-components=1
cp test/package/consumer/*.ts test/package/consumer/tsconfig.*.json "$consumer/"
for config in tsconfig.node10.json tsconfig.node16.json tsconfig.bundler.json; do
  echo "consumer: tsc -p $config"
  npx --no-install tsc -p "$consumer/$config"
done
echo "package check: ok"
