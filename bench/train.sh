#!/usr/bin/env bash
# bench/train.sh: training benchmark, ours vs the Python peers, side by side.
#
# Usage: bench/train.sh [ROWS] [TREES] [DEPTH]     (default 500000 100 6)
#
# 1. `mlopsctl datagen attrition` writes ROWS synthetic rows (42 model inputs
#    after the spec's derived features; 63 slots for logreg after one-hot).
# 2. `mlops-trainer fit` trains logreg (C=1) and gbdt (TREES trees, depth
#    DEPTH, rate 0.1, lambda 1, 256 bins, no early stopping, 2 threads) and
#    dumps the encoded rows (--dump-matrix); the fit time is the artifact's
#    lineage.timings_ms.fit (the model fit alone: the CSV cleaning and the
#    dump are not in it).
# 3. bench/train_peers.py fits scikit-learn LogisticRegression and XGBoost
#    hist with the same parameters on the same rows and reports fit time,
#    held-out AUC and single-row predict latency.
# 4. mlops-bench-predict times our single-row scoring (model_encode +
#    model_predict, the scorer's path).
# The machine is shared: run it more than once and report every run.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build}
STATE=${MLOPS_STATE_DIR:-$ROOT/.state}
PY=${MLOPS_PYTHON:-$STATE/venv/bin/python}
ROWS=${1:-500000}
TREES=${2:-100}
DEPTH=${3:-6}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mlops-bench-train.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
SPEC=$ROOT/examples/attrition/spec.json

"$BUILD/cli/mlopsctl" datagen attrition --rows "$ROWS" --seed 42 --out "$WORK/data.csv" >&2
"$BUILD/services/trainer/mlops-trainer" fit --data "$WORK/data.csv" --spec "$SPEC" \
    --algo logreg --out "$WORK/lr.json" --dump-matrix "$WORK/lr.csv" --threads 2 >&2
"$BUILD/services/trainer/mlops-trainer" fit --data "$WORK/data.csv" --spec "$SPEC" \
    --algo gbdt --n-trees "$TREES" --max-depth "$DEPTH" --learning-rate 0.1 --early-stopping 0 \
    --out "$WORK/gb.json" --dump-matrix "$WORK/gb.csv" --threads 2 >&2
echo "# commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $ROWS rows, $(date -u +%FT%TZ)"
"$PY" "$ROOT/bench/train_peers.py" "$WORK/lr.csv" "$WORK/lr.json" "$WORK/gb.csv" "$WORK/gb.json"
for m in lr gb; do
    "$BUILD/bench/mlops-bench-predict" "$WORK/$m.json" "$WORK/data.csv" 10000
done
