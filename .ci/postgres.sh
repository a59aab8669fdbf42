#!/usr/bin/env bash
# Install and start a throwaway PostgreSQL server from Debian's packages for the storage tests,
# with the role and database that .ci/run's ANOMASCOPE_TEST_POSTGRES_URL names.
# `start` and `stop` are the two verbs; .ci/run stops the server when the tests end.
set -euo pipefail
action=${1:-start}
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if [ "$action" = stop ]; then
  pg_ctlcluster "$version" main stop </dev/null >/dev/null 2>&1 || true
  exit 0
fi
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
# The server outlives this script: it must not hold the caller's stdout or stderr open,
# or whoever reads them (a $(...) or the CI log) waits for it forever.
pg_ctlcluster "$version" main start </dev/null >/dev/null 2>&1 || pg_ctlcluster "$version" main status >/dev/null
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
pg_isready -q -h 127.0.0.1 || { echo "PostgreSQL $version did not start" >&2; exit 1; }
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='anomascope'\" | grep -q 1 || psql -q -c \"CREATE ROLE anomascope LOGIN SUPERUSER PASSWORD 'anomascope'\""
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='anomascope_test'\" | grep -q 1 || createdb -O anomascope anomascope_test"
