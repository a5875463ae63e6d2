#!/usr/bin/env bash
# Start Debian's PostgreSQL on 127.0.0.1 with a role and a database for the tests (tests/test_postgres.py);
# prints the storage URL as its last line. Installs the server where apt-get can.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$ver main" || pg_createcluster "$ver" main >/dev/null
pg_ctlcluster "$ver" main start 2>/dev/null || true  # already running is fine
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
pg_isready -q -h 127.0.0.1
su postgres -c "psql -q -v ON_ERROR_STOP=1" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'epnas') THEN
    CREATE ROLE epnas LOGIN PASSWORD 'epnas' CREATEDB;
  END IF;
END $$;
SQL
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'epnas_test'\"" | grep -q 1 \
  || su postgres -c "createdb -O epnas epnas_test"
echo "postgresql://epnas:epnas@127.0.0.1/epnas_test"
