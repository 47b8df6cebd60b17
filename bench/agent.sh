#!/usr/bin/env bash
# The agent shipping benchmark (BENCHMARKS.md, "Agent shipping"), side by
# side in one run on the same JSON-lines files of the corpus:
#   1. raw limit: `cat FILES | nc -N 127.0.0.1 PORT` into a TCP sink that
#      reads and discards (`causeway-bench discard-receiver --mode tcp`);
#   2. rsyslog (Debian's package), in the foreground with its own config
#      and work directory: `imfile` reading the files, `omfwd` (TCP, the
#      line as it is) to the same kind of sink;
#   3. `causeway agent`, release build, reading the files from the
#      beginning and shipping to `discard-receiver --mode ingest`, which
#      answers `POST /v1/ingest` as the collector does for a good batch.
# Each shipper is timed from its start until the sink counted every line
# (`GET /count`); then its CPU seconds (utime + stime of /proc/PID/stat;
# cat and nc summed) and peak RSS (VmHWM; for cat | nc the larger) are
# read before it is stopped. MB/s per core = MB / CPU s.
#
# Usage: bench/agent.sh   (from anywhere; builds first)
# Settings, as variables: RECORDS (2000000, about 1.5 GB), FILES (4),
# SEED (7), PORT (14518; PORT..PORT+5 are used), WORK_DIR (a new
# /tmp/cw-agent.* directory), NO_BUILD=1, KEEP=1 to keep the files,
# ONLY="cat rsyslog agent" (which shippers, in that order; agent_plain is
# the agent with `compression = "none"`), PERF=1 to `perf record -g` the
# agent (perf.data in WORK_DIR/agent). BASELINE=<path to another causeway
# binary> adds the shippers agent_baseline and agent_baseline_plain: the
# same agent rows run by that binary (an earlier build, to compare).
# The binaries are taken from $CARGO_TARGET_DIR (default: target).
set -euo pipefail

cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-2000000}
FILES=${FILES:-4}
SEED=${SEED:-7}
PORT=${PORT:-14518}
ONLY=${ONLY:-cat rsyslog agent}
TARGET=${CARGO_TARGET_DIR:-target}
BENCH="$TARGET/release/causeway-bench"
CAUSEWAY="$TARGET/release/causeway"
WORK_DIR=${WORK_DIR:-$(mktemp -d /tmp/cw-agent.XXXXXX)}
mkdir -p "$WORK_DIR"
WORK_DIR=$(cd "$WORK_DIR" && pwd)

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -p causeway-bench -p causeway
fi
# The baselines are Debian's packages: installed when missing.
if ! command -v rsyslogd >/dev/null || ! command -v nc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq rsyslog netcat-openbsd >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq rsyslog netcat-openbsd >/dev/null; }
  fi
fi
command -v rsyslogd >/dev/null || { echo "rsyslogd missing: apt-get install -y rsyslog" >&2; exit 1; }
NC=$(command -v nc || true)
[ -n "$NC" ] || command -v socat >/dev/null || { echo "need nc or socat" >&2; exit 1; }

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -z "${KEEP:-}" ]; then rm -rf "$WORK_DIR/logs"; fi
}
trap cleanup EXIT

# The files: the corpus cut into FILES JSON-lines files of equal count.
mkdir -p "$WORK_DIR/logs"
per=$((RECORDS / FILES))
for i in $(seq 1 "$FILES"); do
  # Kept files (KEEP=1 and the same WORK_DIR) are taken as they are.
  [ -s "$WORK_DIR/logs/app-$i.jsonl" ] && [ -n "${KEEP:-}" ] && continue
  "$BENCH" corpus --records "$per" --seed $((SEED + i)) --out "$WORK_DIR/logs/app-$i.jsonl"
done
LINES=$(cat "$WORK_DIR"/logs/*.jsonl | wc -l)
BYTES=$(cat "$WORK_DIR"/logs/*.jsonl | wc -c)
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
echo "files: $FILES x $per records, $LINES lines, $MB MB in $WORK_DIR/logs" >&2
# Warm the page cache, so that every shipper reads from memory.
cat "$WORK_DIR"/logs/*.jsonl >/dev/null

cpu_s() { # utime + stime of a pid, seconds (USER_HZ = 100)
  awk '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / 100 }' "/proc/$1/stat"
}
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
count() { # records the sink at $1 counted so far
  curl -s "http://$1/count" | sed 's/.*"records":\([0-9]*\).*/\1/'
}
now() { date +%s.%N; }
wait_count() { # until the sink at $1 counted LINES records, or 600 s
  local addr=$1 deadline=$(( $(date +%s) + 600 ))
  until [ "$(count "$addr")" -ge "$LINES" ] 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "timed out at $(count "$addr") of $LINES lines" >&2; return 1
    fi
    sleep 0.05
  done
}
start_sink() { # mode, port, count port -> pid in SINK_PID
  local args=(discard-receiver --mode "$1" --addr "127.0.0.1:$2")
  [ "$1" = tcp ] && args+=(--count-addr "127.0.0.1:$3")
  "$BENCH" "${args[@]}" 2>>"$WORK_DIR/sink.log" &
  SINK_PID=$!
  PIDS+=("$SINK_PID")
  local http_port=$2; [ "$1" = tcp ] && http_port=$3
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$http_port/count" >/dev/null && return; sleep 0.05; done
  echo "sink on $2 did not start" >&2; exit 1
}
ROWS=()
row() { # name, wall s, cpu s, peak rss KiB
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  ROWS+=("$(n="$1" awk -v w="$2" -v c="$3" -v r="$4" -v mb="$MB" -v l="$load" 'BEGIN {
    printf "| %s | %.2f | %.1f | %.2f | %.0f | %.1f | %.1f | %s |", ENVIRON["n"], w, mb / w, c, mb / c, c / (mb / 1000), r / 1024, l }')")
  echo "done: ${ROWS[-1]}" >&2
}

run_cat() {
  start_sink tcp $((PORT)) $((PORT + 1))
  local sink=$SINK_PID t0 t1 send
  if [ -n "$NC" ]; then send="$NC -N 127.0.0.1 $((PORT))"; else send="socat -u - TCP:127.0.0.1:$((PORT))"; fi
  # A shell runs the pipeline and, once it reaped cat and nc, writes its
  # own stat: their CPU seconds are its children's (cutime + cstime).
  t0=$(now)
  sh -c 'cat "$@" | '"$send"'; cat /proc/$$/stat >"'"$WORK_DIR"'/cat.stat"' sh "$WORK_DIR"/logs/*.jsonl &
  local shell=$! hwm=0 h
  while kill -0 "$shell" 2>/dev/null; do
    for p in $(pgrep -P "$shell"); do
      h=$(hwm_kib "$p" 2>/dev/null || echo 0); [ "${h:-0}" -gt "$hwm" ] && hwm=$h
    done
    sleep 0.02
  done
  wait_count 127.0.0.1:$((PORT + 1))
  t1=$(now)
  local cpu
  cpu=$(awk '{ sub(/^.*\) /, ""); printf "%.2f", ($14 + $15) / 100 }' "$WORK_DIR/cat.stat")
  row "cat \| $(basename "${NC:-socat}")" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$cpu" "$hwm"
  kill "$sink"
}

run_rsyslog() {
  start_sink tcp $((PORT + 2)) $((PORT + 3))
  local sink=$SINK_PID dir="$WORK_DIR/rsyslog"
  rm -rf "$dir"; mkdir -p "$dir/work"
  cat >"$dir/rsyslog.conf" <<EOF
global(workDirectory="$dir/work" maxMessageSize="256k")
module(load="imfile")
template(name="line" type="string" string="%rawmsg%\n")
input(type="imfile" File="$WORK_DIR/logs/*.jsonl" Tag="app" ruleset="ship")
ruleset(name="ship") {
  action(type="omfwd" target="127.0.0.1" port="$((PORT + 2))" protocol="tcp" template="line")
}
EOF
  local t0 t1 pid
  t0=$(now)
  rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/rsyslogd.pid" 2>"$dir/rsyslogd.log" &
  pid=$!
  PIDS+=("$pid")
  wait_count 127.0.0.1:$((PORT + 3))
  t1=$(now)
  row "rsyslog $(rsyslogd -v | head -1 | awk '{ print $2 }' | tr -d ,) imfile -> omfwd" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$(cpu_s "$pid")" "$(hwm_kib "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  kill "$sink"
}

run_agent_plain() { COMPRESSION=none run_agent; }
run_agent_baseline() { AGENT_BIN=$BASELINE LABEL=" baseline" run_agent; }
run_agent_baseline_plain() { COMPRESSION=none AGENT_BIN=$BASELINE LABEL=" baseline" run_agent; }

run_agent() {
  local compression=${COMPRESSION:-gzip}
  start_sink ingest $((PORT + 4))
  local sink=$SINK_PID dir="$WORK_DIR/agent"
  rm -rf "$dir"; mkdir -p "$dir"
  cat >"$dir/causeway.toml" <<EOF
[agent]
paths = ["$WORK_DIR/logs/*.jsonl"]
collector_url = "http://127.0.0.1:$((PORT + 4))"
checkpoint_path = "$dir/agent.checkpoint.json"
status_addr = "127.0.0.1:$((PORT + 5))"
compression = "$compression"
EOF
  local t0 t1 pid
  t0=$(now)
  "${AGENT_BIN:-$CAUSEWAY}" agent --config "$dir/causeway.toml" 2>"$dir/agent.log" &
  pid=$!
  PIDS+=("$pid")
  local perf_pid=
  if [ -n "${PERF:-}" ]; then
    perf record -g -o "$dir/perf.data" -p "$pid" 2>"$dir/perf.log" &
    perf_pid=$!
  fi
  wait_count 127.0.0.1:$((PORT + 4))
  t1=$(now)
  row "causeway agent${LABEL:-} ($compression)" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$(cpu_s "$pid")" "$(hwm_kib "$pid")"
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  kill "$sink"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
echo "corpus: $FILES files, $LINES lines, $MB MB; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| shipper | wall s | MB/s wall | CPU s | MB/s per core | CPU s per GB | peak RSS MiB | load 1/5/15 |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for who in $ONLY; do
  "run_$who"
done
for r in "${ROWS[@]}"; do echo "$r"; done
