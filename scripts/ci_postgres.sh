#!/usr/bin/env bash
# Install (Debian's package), start and prepare a local PostgreSQL server for the team-ledger and sweep-storage
# tests; print its URL on stdout. Fails (non-zero) where it cannot: no apt, not root, no server. Used by .ci/run.
set -euo pipefail
log() { echo "ci_postgres: $*" >&2; }
if ! command -v pg_lsclusters >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1)
[ -n "${version:-}" ] || { log "no PostgreSQL cluster"; exit 1; }
if [ "$status" != "online" ]; then
  pg_ctlcluster "$version" "$cluster" start >&2
fi
as_postgres() { runuser -u postgres -- psql -q -p "$port" -v ON_ERROR_STOP=1 "$@"; }
role=greenlm_ci password=greenlm-ci
if [ "$(as_postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != "1" ]; then
  as_postgres -c "CREATE ROLE $role LOGIN PASSWORD '$password'" >&2
fi
if [ "$(as_postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$role'")" != "1" ]; then
  as_postgres -c "CREATE DATABASE $role OWNER $role" >&2
fi
log "PostgreSQL $version/$cluster on port $port, database $role"
echo "postgresql://$role:$password@127.0.0.1:$port/$role"
