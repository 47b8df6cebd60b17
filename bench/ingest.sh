#!/usr/bin/env bash
# The collector ingest benchmark (BENCHMARKS.md, "Collector ingest"), side
# by side in one run on one corpus:
#   1. raw tantivy: the corpus's NDJSON lines indexed with the causeway
#      schema, one IndexWriter (64 MiB heap, the collector's default), one
#      commit (`causeway-bench raw-index`), timed to the commit and again
#      to the end of the merges tantivy starts after it; then again with a
#      commit every 500 ms, as often as the collector commits (the
#      like-for-like baseline for records searchable within 2 s); then
#      that again decoding OTLP first (`--decode-otlp-batch $BATCH`: the
#      corpus encoded as the OTLP case's exports before the clock starts,
#      each export decoded with prost before its lines are indexed), the
#      baseline that pays the protobuf decode as the OTLP case does;
#   2. native: wire batches posted to `POST /v1/ingest` of a collector
#      started fresh (write-ahead log on, default settings);
#   3. OTLP: the same records as OTLP/HTTP protobuf logs exports to
#      `POST /v1/logs` of another fresh collector;
#   5. agent lines: the corpus lines as the agent sends a JSON-lines file
#      (wire version 2 raw lines, parsed by the collector), to another;
#   4. overload: many posters of the largest batches the collector takes,
#      cycling over the corpus for OVERLOAD_SECS, against a third one.
# Each collector run is measured from its first post to the commit that
# makes the last batch searchable (`causeway-bench ingest-run`), then the
# table is printed (`causeway-bench ingest-report`).
#
# Usage: bench/ingest.sh   (from anywhere; builds first; about 3 minutes
# after the build on 2 cores, and 4 GB of memory at most)
# Settings, as variables: RECORDS (1000000), SEED (7), POSTERS (8),
# BATCH (1000), OVERLOAD_POSTERS (48), OVERLOAD_BATCH (10000),
# OVERLOAD_SECS (45), PORT (14418, and PORT+1 for OTLP/gRPC), WORK_DIR
# (a new /tmp/cw-ingest.* directory; the results and collector logs stay
# there), NO_BUILD=1 to use the binaries as they are, KEEP=1 to keep the
# corpus and the indexes, ROUNDS (1): on a machine whose speed drifts
# between runs, ROUNDS=3 runs raw tantivy committing every 500 ms, native,
# OTLP and agent lines three times interleaved, after one overload run,
# and prints a table per round, so that each ratio compares runs minutes
# apart (raw tantivy decoding OTLP runs right after raw tantivy committing
# every 500 ms, in each round).
# The binaries are taken from $CARGO_TARGET_DIR (default: target).
set -euo pipefail

cd "$(dirname "$0")/.."
# The collectors run with their defaults: no file or variable of the
# caller's may change them.
unset CAUSEWAY_CONFIG CAUSEWAY_DATA_DIR CAUSEWAY_COLLECTOR_TOKENS
RECORDS=${RECORDS:-1000000}
SEED=${SEED:-7}
POSTERS=${POSTERS:-8}
BATCH=${BATCH:-1000}
OVERLOAD_POSTERS=${OVERLOAD_POSTERS:-48}
OVERLOAD_BATCH=${OVERLOAD_BATCH:-10000}
OVERLOAD_SECS=${OVERLOAD_SECS:-45}
PORT=${PORT:-14418}
ROUNDS=${ROUNDS:-1}
TARGET=${CARGO_TARGET_DIR:-target}
B=$TARGET/release/causeway-bench
C=$TARGET/release/causeway
W=${WORK_DIR:-$(mktemp -d /tmp/cw-ingest.XXXXXX)}
mkdir -p "$W"

if [ "${NO_BUILD:-}" != 1 ]; then
    cargo build --release -p causeway-bench -p causeway
fi

COLLECTOR_PID=
stop_collector() {
    if [ -n "$COLLECTOR_PID" ]; then
        kill -TERM "$COLLECTOR_PID" 2>/dev/null || true
        wait "$COLLECTOR_PID" 2>/dev/null || true
        COLLECTOR_PID=
    fi
}
trap stop_collector EXIT

say() { printf '\n== %s (%s)\n' "$1" "$(uptime)" >&2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB" >&2
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?'); work dir: $W" >&2
started=$(date +%s)

say "corpus: $RECORDS records, seed $SEED"
"$B" corpus --records "$RECORDS" --seed "$SEED" --out "$W/corpus.ndjson"

say "raw tantivy"
rm -rf "$W/raw"
"$B" raw-index --corpus "$W/corpus.ndjson" --data-dir "$W/raw" \
    --result "$W/1-raw.json" --merged-result "$W/1-raw-merged.json"
[ "${KEEP:-}" = 1 ] || rm -rf "$W/raw"

# run_collector NUMBER CASE PROTOCOL BATCH POSTERS [OVERLOAD_SECS [SUFFIX]]
run_collector() {
    local n=$1 case=$2 protocol=$3 batch=$4 posters=$5 overload=${6:-} suffix=${7:-}
    local dir="$W/collector-$n"
    rm -rf "$dir"
    say "$case: $protocol, batches of $batch, $posters posters${overload:+, for $overload s}"
    "$C" collector --data-dir "$dir" \
        --collector-http-addr "127.0.0.1:$PORT" \
        --collector-grpc-addr "127.0.0.1:$((PORT + 1))" \
        >"$W/collector-$n.log" 2>&1 &
    COLLECTOR_PID=$!
    "$B" ingest-run --case "$case" --corpus "$W/corpus.ndjson" \
        --collector-url "http://127.0.0.1:$PORT" --collector-pid "$COLLECTOR_PID" \
        --data-dir "$dir" --protocol "$protocol" --batch "$batch" --concurrency "$posters" \
        ${overload:+--overload-secs "$overload"} --result "$W/$n-$protocol$suffix.json"
    stop_collector
    [ "${KEEP:-}" = 1 ] || rm -rf "$dir"
}

# raw_500 SUFFIX
raw_500() {
    say "raw tantivy, a commit every 500 ms (as the collector commits)"
    rm -rf "$W/raw-500"
    "$B" raw-index --corpus "$W/corpus.ndjson" --data-dir "$W/raw-500" \
        --commit-interval-ms 500 --result "$W/1-raw-500$1.json"
    [ "${KEEP:-}" = 1 ] || rm -rf "$W/raw-500"
}

# raw_500_otlp SUFFIX
raw_500_otlp() {
    say "raw tantivy, a commit every 500 ms, decoding OTLP exports of $BATCH records"
    rm -rf "$W/raw-500-otlp"
    "$B" raw-index --corpus "$W/corpus.ndjson" --data-dir "$W/raw-500-otlp" \
        --commit-interval-ms 500 --decode-otlp-batch "$BATCH" \
        --result "$W/1-raw-500-otlp$1.json"
    [ "${KEEP:-}" = 1 ] || rm -rf "$W/raw-500-otlp"
}

report() {
    "$B" ingest-report "$W/1-raw.json" "$W/1-raw-merged.json" "$W/1-raw-500$1.json" \
        "$W/1-raw-500-otlp$1.json" "$W/2-native$1.json" "$W/3-otlp$1.json" \
        "$W/5-lines$1.json" "$W/4-native.json"
}

if [ "$ROUNDS" = 1 ]; then
    raw_500 ""
    raw_500_otlp ""
    run_collector 2 "native /v1/ingest" native "$BATCH" "$POSTERS"
    run_collector 3 "OTLP/HTTP protobuf /v1/logs" otlp "$BATCH" "$POSTERS"
    run_collector 5 "agent lines /v1/ingest" lines "$BATCH" "$POSTERS"
    run_collector 4 "overload: native, $OVERLOAD_POSTERS posters x $OVERLOAD_BATCH records" \
        native "$OVERLOAD_BATCH" "$OVERLOAD_POSTERS" "$OVERLOAD_SECS"
else
    run_collector 4 "overload: native, $OVERLOAD_POSTERS posters x $OVERLOAD_BATCH records" \
        native "$OVERLOAD_BATCH" "$OVERLOAD_POSTERS" "$OVERLOAD_SECS"
    for round in $(seq 1 "$ROUNDS"); do
        raw_500 "-r$round"
        raw_500_otlp "-r$round"
        run_collector 2 "native /v1/ingest" native "$BATCH" "$POSTERS" "" "-r$round"
        run_collector 3 "OTLP/HTTP protobuf /v1/logs" otlp "$BATCH" "$POSTERS" "" "-r$round"
        run_collector 5 "agent lines /v1/ingest" lines "$BATCH" "$POSTERS" "" "-r$round"
    done
fi

say "done in $(($(date +%s) - started)) s"
[ "${KEEP:-}" = 1 ] || rm -f "$W/corpus.ndjson"
if [ "$ROUNDS" = 1 ]; then
    echo
    report ""
else
    for round in $(seq 1 "$ROUNDS"); do
        printf '\nround %s of %s\n\n' "$round" "$ROUNDS"
        report "-r$round"
    done
fi
