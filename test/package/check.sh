#!/usr/bin/env bash
# Checks the package the way users get it: `npm pack`, then publint and are-the-types-wrong on the
# tarball, then consumer projects with the tarball installed that compile a file using every
# documented export (strict, skipLibCheck: false) under moduleResolution node10 (what
# `"module": "commonjs"` Nest apps get), node16 and bundler:
#   1. inside the repository, where the consumer finds every peer (optional ones included) in the
#      root node_modules; usage-ioredis.ts compiles there against the repository's ioredis 5;
#   2. outside the repository (a temp dir with no node_modules above it), with only the required
#      peers installed (versions from package-lock.json) and no optional peer at all: the
#      published types must not reach an optional peer's;
#   3. the same project with ioredis 6 added, following README's install advice for it.
# Run `npm run build` first (npm run test:package does). Needs the npm registry (or its cache).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
[ -f dist/index.js ] || { echo "build the library first: npm run build" >&2; exit 1; }

# The optional peers (package.json's peerDependenciesMeta, plus pg for the coming PostgresStore).
optional_peers=(@opentelemetry/api ioredis pg @nestjs/graphql graphql @nestjs/microservices @nestjs/swagger
  class-transformer)
# ioredis 6 and what README's install section says to add with it (kept in step with README below).
ioredis6=6.1.0
redis_errors_types=1.2.3

work="$(mktemp -d "$root/.package-check.XXXXXX")"
outside="$(mktemp -d "${TMPDIR:-/tmp}/nestjs-idempotent-consumer.XXXXXX")"
trap 'rm -rf "$work" "$outside"' EXIT

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

# compile DIR WITH_IOREDIS TSC LABEL: tsc -p for each moduleResolution; a non-empty WITH_IOREDIS
# adds usage-ioredis.ts to the compiled files.
compile() {
  local dir="$1" with_ioredis="$2" tsc="$3" label="$4" config
  for resolution in node10 node16 bundler; do
    config="tsconfig.$resolution.json"
    if [ -n "$with_ioredis" ]; then
      config="tsconfig.$resolution.ioredis.json"
      printf '{ "extends": "./tsconfig.%s.json", "files": ["usage.ts", "usage-ioredis.ts"] }\n' "$resolution" \
        >"$dir/$config"
    fi
    echo "consumer ($label): tsc -p $config"
    (cd "$dir" && "$tsc" -p "$config")
  done
}

# 1. Inside the repository.
consumer="$work/consumer"
mkdir -p "$consumer/node_modules/nestjs-idempotent"
tar -xzf "$tarball" -C "$consumer/node_modules/nestjs-idempotent" --strip-components=1
cp test/package/consumer/*.ts test/package/consumer/tsconfig.*.json "$consumer/"
compile "$consumer" ioredis "$root/node_modules/.bin/tsc" "in the repository"

# 2. Outside the repository, only the required peers.
dir="$(cd "$outside" && pwd -P)"
while [ "$dir" != / ]; do
  dir="$(dirname "$dir")"
  [ ! -e "$dir/node_modules" ] && [ ! -e "$dir/package.json" ] ||
    { echo "the outside consumer would see $dir/node_modules or package.json: set TMPDIR elsewhere" >&2; exit 1; }
done
locked() { node -p "require('./package-lock.json').packages['node_modules/$1'].version"; }
node -e '
  const [tarball, ...pins] = process.argv.slice(1);
  const dependencies = { "nestjs-idempotent": "file:" + tarball };
  for (const pin of pins) { const at = pin.lastIndexOf("@"); dependencies[pin.slice(0, at)] = pin.slice(at + 1); }
  console.log(JSON.stringify({ name: "consumer", private: true, dependencies }, null, 2));
' "$tarball" "@nestjs/common@$(locked @nestjs/common)" "@nestjs/core@$(locked @nestjs/core)" \
  "reflect-metadata@$(locked reflect-metadata)" "rxjs@$(locked rxjs)" "typescript@$(locked typescript)" \
  "@types/node@$(locked @types/node)" >"$outside/package.json"
cp test/package/consumer/*.ts test/package/consumer/tsconfig.*.json "$outside/"
echo "consumer (outside, required peers only): npm install $(node -p 'Object.entries(require(process.argv[1]).dependencies).filter(([n]) => n !== "nestjs-idempotent").map(([n, v]) => n + "@" + v).join(" ")' "$outside/package.json")"
(cd "$outside" && npm install --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
for peer in "${optional_peers[@]}"; do
  [ ! -e "$outside/node_modules/$peer" ] || { echo "optional peer $peer got installed in the consumer" >&2; exit 1; }
  if grep -Eq "from '$peer(/[^']*)?'" "$outside/usage.ts"; then echo "usage.ts imports optional peer $peer" >&2; exit 1; fi
done
compile "$outside" "" "$outside/node_modules/.bin/tsc" "outside, required peers only"

# 3. With ioredis 6. Its declarations import `redis-errors`, which ships no types (ioredis keeps
# @types/redis-errors among its devDependencies), so a strict app with skipLibCheck: false gets
# TS7016 in ioredis' own files, with or without this package; README's install section says what
# to add. Shown failing without it (drop the advice when a pinned ioredis stops needing it), then
# compiled with it.
advice='npm install --save-dev @types/redis-errors'
grep -qF "$advice" README.md || { echo "README's install section lost: $advice" >&2; exit 1; }
echo "consumer (outside, ioredis@$ioredis6): npm install ioredis@$ioredis6"
(cd "$outside" && npm install --prefer-offline --no-audit --no-fund --loglevel=error "ioredis@$ioredis6" >/dev/null)
printf '{ "extends": "./tsconfig.node16.json", "files": ["usage-ioredis.ts"] }\n' >"$outside/tsconfig.bare.json"
if bare="$(cd "$outside" && node_modules/.bin/tsc -p tsconfig.bare.json 2>&1)"; then
  echo "ioredis@$ioredis6 compiles without @types/redis-errors now: drop that advice from README and here" >&2
  exit 1
fi
grep -q "TS7016: Could not find a declaration file for module 'redis-errors'" <<<"$bare" ||
  { echo "ioredis@$ioredis6 without @types/redis-errors failed otherwise than expected:" >&2; echo "$bare" >&2; exit 1; }
echo "consumer (outside, ioredis@$ioredis6): without @types/redis-errors, ioredis@$ioredis6 gives TS7016 as README says; $advice"
(cd "$outside" && $advice@$redis_errors_types --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
compile "$outside" ioredis "$outside/node_modules/.bin/tsc" "outside, ioredis@$ioredis6"
echo "package check: ok"
