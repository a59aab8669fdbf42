#!/usr/bin/env bash
# Install and start a throwaway PostgreSQL server from Debian's packages for the storage tests.
# Prints the URL the tests read from ANOMASCOPE_TEST_POSTGRES_URL.
set -euo pipefail
# Only the URL goes to stdout (the caller captures it); everything else goes to stderr.
exec 3>&1 1>&2
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main status >/dev/null
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='anomascope'\" | grep -q 1 || psql -q -c \"CREATE ROLE anomascope LOGIN SUPERUSER PASSWORD 'anomascope'\""
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='anomascope_test'\" | grep -q 1 || createdb -O anomascope anomascope_test"
echo "postgresql+psycopg2://anomascope:anomascope@127.0.0.1:5432/anomascope_test" >&3
