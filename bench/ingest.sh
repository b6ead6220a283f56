#!/usr/bin/env bash
# bench/ingest.sh: mlops-ingest (validation, cleaning, derived and rolling
# features, dedup and the Redis online store all on) against the raw
# librdkafka passthrough and the broker round trip, in one invocation
# (bench/run.sh --with-passthrough). The goal (issue: ingest) is >= 0.5x the
# passthrough's events/s.
#
# Usage: bench/ingest.sh [--eos] [bench/run.sh options...]
#   --eos   exactly-once (Kafka transactions; default: at-least-once)
# The events are the load generator's bench_event/1 (30 fields, ~780 bytes),
# checked against bench/ingest_spec.json; every one must reach the output
# (a DLQ record would count as lost).
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build}
MODE=--no-exactly-once
LABEL=ingest-alos
if [[ ${1:-} == --eos ]]; then
    MODE=--exactly-once
    LABEL=ingest-eos
    shift
fi
# A spec name of its own per invocation: dedup, rolling state and online rows
# start empty (the state of an earlier run would otherwise hold its events)
# and are deleted from Redis at the end.
STATE=${MLOPS_STATE_DIR:-$ROOT/.state}
NAME=bench_payments_$(date -u +%Y%m%d%H%M%S)_$$
SPEC=$STATE/bench/$NAME.spec.json
REDIS_PORT=${BENCH_REDIS_PORT:-${MLOPS_REDIS_PORT:-6380}}
mkdir -p -- "$STATE/bench"
sed "s/\"bench_payments\"/\"$NAME\"/g" "$ROOT/bench/ingest_spec.json" >"$SPEC"
cleanup() {
    local rc=$?
    redis-cli -p "$REDIS_PORT" --scan --pattern "mlops:*:$NAME:*" |
        xargs -r -n 500 redis-cli -p "$REDIS_PORT" DEL >/dev/null || true
    rm -f -- "$SPEC"
    exit "$rc"
}
trap cleanup EXIT
"$ROOT/bench/run.sh" --with-passthrough --label "$LABEL" --stage \
    "$BUILD/services/ingest/mlops-ingest --spec $SPEC $MODE \
--kafka-brokers {brokers} --input-topic {in} --features-topic {out} --dlq-topic {out} \
--group-id {group} --metrics-port 0 --log-level warn" "$@"
