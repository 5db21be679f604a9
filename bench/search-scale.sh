#!/usr/bin/env bash
# The search benchmark at 150k and at the 10x scale-up, on PostgreSQL
# (docs/performance.md): loads ../shared/data/synthea with `hearth import`,
# copies that database and imports nine renamed copies of the bundles into it,
# then measures the reference searches on both. Every step is resumable and
# skips what is done (imported files are recorded; the copies are kept).
#
#   bench/search-scale.sh [SYNTHEA_DIR]
#
# Environment: PG (server URL without a database; default
# postgres://postgres@127.0.0.1:5432), WORK (where keys, copies and markers go;
# default target/search-scale), RUNS (per query, default 200). The 10x store
# takes about 30 GB and, on 2 cores, about 30 minutes to load.
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTHEA=${1:-../shared/data/synthea}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
WORK=${WORK:-target/search-scale}
RUNS=${RUNS:-200}

cargo build --release -p hearth --bin hearth -p hearth-bench --bin hearth-search-bench
mkdir -p "$WORK/150k" "$WORK/10x"
# The bench opens the stores with a master key of 32 bytes of 42 ('*').
key="$WORK/master.key"
if [ ! -f "$key" ]; then
  printf '%.0s*' $(seq 32) >"$key"
  chmod 600 "$key"
fi

has_db() { psql "$PG/postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = '$1'" | grep -q 1; }
load() { # database, data dir, files
  HEARTH_DATA_DIR="$2" HEARTH_DATABASE_URL="$PG/$1" HEARTH_MASTER_KEY_FILE="$key" \
    ./target/release/hearth import "$3"
  psql "$PG/$1" -qc 'VACUUM ANALYZE'
  echo "$1" >"$2/loaded"
}

has_db hearth_bench || psql "$PG/postgres" -qc 'CREATE DATABASE hearth_bench'
[ -f "$WORK/150k/loaded" ] || load hearth_bench "$WORK/150k" "$SYNTHEA"

python3 bench/synthea-scale.py "$SYNTHEA" "$WORK/synthea-copies" --copies 9
has_db hearth_bench10 || psql "$PG/postgres" -qc 'CREATE DATABASE hearth_bench10 TEMPLATE hearth_bench'
[ -f "$WORK/10x/loaded" ] || load hearth_bench10 "$WORK/10x" "$WORK/synthea-copies"

for scale in 150k 10x; do
  db=hearth_bench
  [ "$scale" = 10x ] && db=hearth_bench10
  echo "== $scale ($db)"
  ./target/release/hearth-search-bench "$SYNTHEA" --data-dir "$WORK/$scale" \
    --database-url "$PG/$db" --runs "$RUNS"
done
