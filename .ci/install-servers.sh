#!/usr/bin/env bash
# Installs valkey-server 8 (bookworm-backports), redis-server 7 and PostgreSQL 15 (Debian's
# postgresql) when missing, and stops any service the packages start: the tests start their own
# servers on free ports (test/support/valkey-server.ts, test/support/postgres-server.ts).
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

if ! command -v valkey-server >/dev/null || ! command -v redis-server >/dev/null; then
  if ! command -v valkey-server >/dev/null && [ ! -f /etc/apt/sources.list.d/backports.sources ]; then
    awk 'BEGIN{RS="";ORS="\n\n"} NR==1' /etc/apt/sources.list.d/debian.sources \
      | sed 's/^Suites: .*/Suites: bookworm-backports/' \
      | $SUDO tee /etc/apt/sources.list.d/backports.sources >/dev/null
  fi
  $SUDO apt-get update -qq
  command -v valkey-server >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports valkey-server
  command -v redis-server >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server
fi
# PostgreSQL: the tests run /usr/lib/postgresql/<version>/bin/{initdb,postgres} (or those on PATH)
# as the `postgres` user the package creates.
have_postgres() {
  { command -v postgres && command -v initdb; } >/dev/null 2>&1 ||
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
if ! have_postgres; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql
fi
# Packaged services may have started on the default port; the tests do not use them.
for svc in valkey-server redis-server postgresql; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
valkey-server --version
redis-server --version
postgres_bin="$(command -v postgres || ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)"
"$postgres_bin" --version
