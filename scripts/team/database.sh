#!/usr/bin/env bash
# The team's store on an existing PostgreSQL server: a role and a database for spell-jupyter,
# then the URL every user's server sets as SPELL_DB_URL (or SpellJupyter.db_url). The schema
# is created (and later upgraded) by the first server that connects.
#
#   sudo -u postgres bash scripts/team/database.sh [NAME] [PASSWORD]
set -euo pipefail
name=${1:-spell}
password=${2:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')}
psql -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${name}') THEN
    CREATE ROLE "${name}" LOGIN PASSWORD '${password}';
  ELSE
    ALTER ROLE "${name}" PASSWORD '${password}';
  END IF;
END \$\$;
SQL
if ! psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${name}'" | grep -q 1; then
  createdb -O "$name" "$name"
fi
echo "SPELL_DB_URL=postgresql://${name}:${password}@$(hostname -f):5432/${name}"
