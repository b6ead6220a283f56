#!/usr/bin/env bash
# bench/score.sh: mlops-scorer (Redis enrichment on: every record needs two
# profile inputs that only the online row has, through the LRU cache) against
# the raw librdkafka passthrough and the broker round trip, in one invocation
# (bench/run.sh --with-passthrough). Goals (issue 7): >= 0.6x the
# passthrough's events/s; p99 <= 1.5x the passthrough's at the same rate.
#
# Usage: bench/score.sh [--eos] [--algo logreg|gbdt] [--peer message|batch]
#                       [bench/run.sh options...]
#   --eos    exactly-once (Kafka transactions; default: at-least-once)
#   --algo   the model: logreg (default) or gbdt (200 trees, depth 6)
#   --peer   measure the Python peer (bench/score_peer.py: confluent-kafka,
#            redis-py, scikit-learn or XGBoost) instead of mlops-scorer, per
#            message or batched (one Redis pipeline and one predict_proba per
#            poll of up to 500 records)
# Every path's load generator sends features/1-shaped events
# (mlops-bench run --format features); the model is trained once on
# bench/score_data.py's data and kept under $MLOPS_STATE_DIR/bench/score/.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build}
STATE=${MLOPS_STATE_DIR:-$ROOT/.state}
PY=${BENCH_PYTHON:-$STATE/venv/bin/python}
REDIS_PORT=${BENCH_REDIS_PORT:-6380}
MODE=--no-exactly-once
ALGO=logreg
PEER=
while [[ $# -gt 0 ]]; do
    case $1 in
    --eos) MODE=--exactly-once; shift ;;
    --algo) ALGO=$2; shift 2 ;;
    --peer) PEER=$2; shift 2 ;;
    *) break ;;
    esac
done
case $ALGO in logreg | gbdt) ;; *) echo "bench/score.sh: --algo logreg|gbdt" >&2; exit 2 ;; esac
LABEL=scorer-$ALGO-$([[ $MODE == --exactly-once ]] && echo eos || echo alos)
DIR=$STATE/bench/score
mkdir -p -- "$DIR"
if [[ ! -s $DIR/train.csv || ! -s $DIR/rows.resp ]]; then
    "$PY" "$ROOT/bench/score_data.py" "$DIR/train.csv" "$DIR/rows.resp"
fi
if [[ ! -s $DIR/$ALGO.json ]]; then
    extra=()
    [[ $ALGO == gbdt ]] && extra=(--n-trees 200 --max-depth 6 --early-stopping 0)
    "$BUILD/services/trainer/mlops-trainer" fit --data "$DIR/train.csv" \
        --spec "$ROOT/bench/score_spec.json" --algo "$ALGO" --out "$DIR/$ALGO.json" \
        --quiet "${extra[@]}"
fi
# the online rows of the load generator's 10,000 entities (profile features)
redis-cli -p "$REDIS_PORT" --pipe <"$DIR/rows.resp" >/dev/null
if [[ -n $PEER ]]; then
    BENCH_RUN_ARGS="--format features ${BENCH_RUN_ARGS:-}" exec "$ROOT/bench/run.sh" \
        --with-passthrough --label "peer-$PEER-$ALGO" --stage \
        "$PY $ROOT/bench/score_peer.py --brokers {brokers} --in {in} --out {out} \
--group {group} --train $DIR/train.csv --algo $ALGO --mode $PEER --redis-port $REDIS_PORT" "$@"
fi
BENCH_RUN_ARGS="--format features ${BENCH_RUN_ARGS:-}" "$ROOT/bench/run.sh" --with-passthrough \
    --label "$LABEL" --stage \
    "$BUILD/services/scorer/mlops-scorer --model $DIR/$ALGO.json $MODE \
--kafka-brokers {brokers} --input-topic {in} --predictions-topic {out} --group-id {group} \
--transactional-id {group}-tx --redis-url redis://127.0.0.1:$REDIS_PORT --metrics-port 0 \
--log-level warn" "$@"
