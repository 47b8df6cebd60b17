#!/usr/bin/env bash
# End-to-end load (BENCHMARKS.md, "Examples: the saga end to end"): the
# release `causeway demo` over the in-process bus, RabbitMQ (:5672) and
# NATS JetStream (:4222), one after the other, each placing RATE orders
# per second for SECS seconds (scenario `happy`: every fourth card
# declined and compensated). Each run is everything a user runs: the
# services write log files through the middleware, the agent ships them,
# the collector makes them durable and indexes them, and the demo reads
# every flow back from the query API; it prints the flows settled per
# second and the time from placing an order to its flow showing its final
# status in the query API (p50, p99, max).
#
# Usage: bench/demo-load.sh   (builds first; RATE=50 SECS=30 by default;
# BROKERS="inproc amqp nats" to pick; NO_BUILD=1 to use the binary as is)
set -euo pipefail

cd "$(dirname "$0")/.."
unset CAUSEWAY_CONFIG CAUSEWAY_DATA_DIR
RATE=${RATE:-50}
SECS=${SECS:-30}
BROKERS=${BROKERS:-"inproc amqp nats"}
TARGET=${CARGO_TARGET_DIR:-target}

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -p causeway --features amqp,nats
fi
echo "== $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== rate $RATE orders/s for $SECS s"
for broker in $BROKERS; do
    case $broker in
        inproc) flag=() ;;
        amqp) flag=(--broker amqp://guest:guest@127.0.0.1:5672/%2f) ;;
        nats) flag=(--broker nats://127.0.0.1:4222) ;;
        *) echo "unknown broker $broker" >&2; exit 2 ;;
    esac
    dir=$(mktemp -d /tmp/cw-demo-load.XXXXXX)
    echo "== $broker"
    CAUSEWAY_COLLECTOR_HTTP_ADDR=127.0.0.1:0 CAUSEWAY_COLLECTOR_GRPC_ADDR=127.0.0.1:0 \
        CAUSEWAY_QUERY_ADDR=127.0.0.1:0 \
        "$TARGET/release/causeway" demo --rate "$RATE" --duration "$SECS" \
        --scenario happy --exit --timeout-secs 120 --data-dir "$dir" "${flag[@]}" \
        | grep -E "^flows:|flows settled in|reached the query API|did not settle"
    echo "   load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    rm -rf "$dir"
done
