#!/bin/bash
# Server benchmark: SierraDB-in-Python (EAPPEND, durable) side by side with Redis 7 Streams
# (XADD, appendfsync always) and PostgreSQL 15 (append with a unique (stream, version) index),
# interleaved per round so machine noise hits all alike. Also ESCAN of a 100-event stream vs
# XRANGE, EPSCAN throughput, and append-reply -> subscription-push latency.
#
# Needs: redis-server redis-tools (apt), PostgreSQL 15 (/usr/lib/postgresql/15/bin), the venv.
# Usage: bench/server_bench.sh OUTDIR [REPEATS] [REQUESTS]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=$(cd "$ROOT/../shared/bench" && pwd)
OUT=${1:-/tmp/sbench}; REPEATS=${2:-3}; N=${3:-200000}
PY=${PY:-$ROOT/.venv/bin/python}
PORT=${PORT:-9390}
PAYLOAD=$(tr -d '\n' < "$SHARED/payload.json")
mkdir -p "$OUT"; : > "$OUT/sierradb.csv"
start_node() {  # $1 = data dir
  rm -rf "$1"
  "$PY" -m sierradb.node --dir "$1" --client-address 127.0.0.1:$PORT --log-level warning &
  NPID=$!
  for _ in $(seq 100); do redis-cli -p $PORT ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "node did not start" >&2; exit 1
}
stop_node() { kill -TERM "$NPID"; wait "$NPID" 2>/dev/null; rm -rf "$1"; }
row() {  # tag, then redis-benchmark args
  local tag=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  redis-benchmark -h 127.0.0.1 -p $PORT --csv "$@" 2>/dev/null | tail -n +2 \
    | sed "s/^/$tag,load=$load,/" >> "$OUT/sierradb.csv"
}
[ -d /usr/lib/postgresql/15/bin ] && bash "$SHARED/pg_cluster.sh" start
for r in $(seq "$REPEATS"); do
  for P in 1 16; do
    d=/tmp/sdb-bench-$P
    start_node "$d"
    row "eappend,P$P,run$r" -n "$N" -c 50 -P $P -r 100000 EAPPEND 'stream-__rand_int__' UserCreated "$PAYLOAD"
    if [ "$P" = 1 ]; then
      for i in $(seq 100); do redis-cli -p $PORT EAPPEND rs UserCreated "$PAYLOAD" >/dev/null; done
      row "escan100,P1,run$r" -n 50000 -c 50 -P 1 ESCAN rs - +
      row "escan100,P16,run$r" -n 100000 -c 50 -P 16 ESCAN rs - +
      row "epscan1000,P1,run$r" -n 5000 -c 10 -P 1 EPSCAN 5 - + COUNT 1000
      "$PY" "$HERE/sub_latency.py" $PORT 2000 | sed "s/^/sublatency,run$r,/" >> "$OUT/sierradb.csv"
    fi
    stop_node "$d"
  done
  bash "$SHARED/bench_redis.sh" "$OUT/redis-$r.csv" 1 always
  if [ -d /usr/lib/postgresql/15/bin ]; then
    WORKLOADS="maxver" bash "$SHARED/bench_pg.sh" "$OUT/pg-$r" 1 15 >/dev/null 2>&1
  fi
  "$PY" "$SHARED/disk_fsync.py" /tmp/sdb-fsync 3 | head -1 | sed "s/^/fsync,run$r,/" >> "$OUT/sierradb.csv"
done
[ -d /usr/lib/postgresql/15/bin ] && bash "$SHARED/pg_cluster.sh" stop
"$PY" "$HERE/summarize.py" "$OUT"
