#!/bin/bash
# The query benchmark at 10 M records (BENCHMARKS.md, "Second run"):
# lookups, list reads and memory idle, after a maximum ingest, while
# ingesting at 10 000 records/s, and idle again, against one `causeway up`.
# Needs `cargo build --release -p causeway-bench -p causeway` and an index
# from `causeway-bench build-index --records 10000000 --seed 7 --start now
# --data-dir $D`. ARENAS=2 runs the daemon with MALLOC_ARENA_MAX=2.
# Usage: bench/query-10m.sh [DATA_DIR [OUT_DIR]]
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/target/release/causeway-bench
C=$ROOT/target/release/causeway
D=${1:-/tmp/cw-bench-10m}
O=${2:-/tmp/bench-run}
Q=http://127.0.0.1:18686
CU=http://127.0.0.1:14318
mkdir -p "$O"
env ${ARENAS:+MALLOC_ARENA_MAX=$ARENAS} $C up --data-dir "$D" --collector-http-addr 127.0.0.1:14318 --collector-grpc-addr 127.0.0.1:14317 --query-addr 127.0.0.1:18686 > "$O"/daemon.log 2>&1 &
PID=$!
echo $PID > "$O"/pid
for i in $(seq 1 120); do curl -sf $Q/healthz >/dev/null && break; sleep 1; done
rss() { echo "== $1 $(date +%T)"; grep -E 'VmHWM|VmRSS|RssAnon|RssFile' /proc/$PID/status; }
rss start
echo "### idle 1"; date +%T
$B flow-lookup --data-dir "$D" --query-url $Q --requests 4000 --warmup 200
$B flow-list --query-url $Q --requests 30 --warmup 3
rss after-idle-1
$B phases --data-dir "$D" --requests 300 --warmup 30 --list-requests 5
echo "### ingest max"; date +%T
$B ingest --collector-url $CU --rate max --duration 30 --seed 9 --concurrency 32
rss after-max
echo "### ingesting 1"; date +%T
$B ingest --collector-url $CU --rate 10000 --duration 200 --seed 10 --concurrency 32 > "$O"/ingest-half-1.txt 2>&1 &
IP=$!
sleep 10
$B flow-lookup --data-dir "$D" --query-url $Q --requests 4000 --warmup 200
$B flow-list --query-url $Q --requests 30 --warmup 3
rss during-ingest-1
wait $IP
cat "$O"/ingest-half-1.txt
echo "### idle 2"; date +%T
$B flow-lookup --data-dir "$D" --query-url $Q --requests 4000 --warmup 200
$B flow-list --query-url $Q --requests 100 --warmup 3
rss after-idle-2
du -sh "$D"/index "$D"/wal
echo "### done"; date +%T
kill $PID
wait $PID 2>/dev/null
