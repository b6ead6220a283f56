#!/usr/bin/env bash
# bench/drift.sh: drift benchmark, the monitor's drift code vs SciPy and vs
# Evidently computing the same report on the same windows, side by side.
#
# Usage: bench/drift.sh [options]
#
# 1. bench/drift_peers.py gen writes the data: 20 features (15 numeric, 5
#    categorical), a reference of --reference rows and --windows windows of
#    --window rows (no drift, a few features, most features, subtle shifts
#    near the thresholds, all features, in turn), from a fixed seed.
# 2. mlops-bench-drift (bench/drift.c) runs our side in-process: the
#    reference as a model/1 profile loaded by dstate_new(), every row through
#    dstate_add(), each window's tick (Evidently's default test per feature,
#    the dataset-drift share) timed, over --passes passes.
# 3. bench/drift_peers.py run times SciPy (the same tests with numpy and
#    scipy calls) and Evidently's legacy DataDriftPreset report on the same
#    windows, checks that every decision (drift yes/no per feature, dataset
#    drift) and every test name is the same on all three, and prints the
#    table with the ratios.
#
# Options (each has an environment variable; the option wins):
#   --windows W           windows ($BENCH_DRIFT_WINDOWS; default 10)
#   --window N            rows per window ($BENCH_DRIFT_WINDOW; default 10000)
#   --reference R         reference rows ($BENCH_DRIFT_REFERENCE; default 10000)
#   --seed S              data seed ($BENCH_DRIFT_SEED; default 42)
#   --passes P            passes over the windows for ours and SciPy
#                         ($BENCH_DRIFT_PASSES; default 3)
#   --evidently-passes E  passes for Evidently, 0 to skip it
#                         ($BENCH_DRIFT_EVIDENTLY_PASSES; default 1)
#   --drift-share S       dataset drift when the share of drifted features is
#                         >= S, for all three ($BENCH_DRIFT_SHARE; default 0.5)
#   --build DIR           CMake build folder ($BENCH_BUILD_DIR; default <repo>/build)
#   -h, --help            this help
#
# Output: the table on stdout; the data, our JSON lines and the peers' output
# stay in $MLOPS_STATE_DIR/bench/drift-<run id>/. Exit status: 0 when every
# decision is identical, 1 on a mismatch or an error, 2 on a usage error.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

die() {
    printf 'bench/drift.sh: %s\n' "$*" >&2
    exit 2
}

BUILD=${BENCH_BUILD_DIR:-$ROOT/build}
STATE=${MLOPS_STATE_DIR:-$ROOT/.state}
PY=${MLOPS_PYTHON:-$STATE/venv/bin/python}
WINDOWS=${BENCH_DRIFT_WINDOWS:-10}
WINDOW=${BENCH_DRIFT_WINDOW:-10000}
REFERENCE=${BENCH_DRIFT_REFERENCE:-10000}
SEED=${BENCH_DRIFT_SEED:-42}
PASSES=${BENCH_DRIFT_PASSES:-3}
EV_PASSES=${BENCH_DRIFT_EVIDENTLY_PASSES:-1}
SHARE=${BENCH_DRIFT_SHARE:-0.5}
# for a check of the check: a different share for our side only (the run must fail)
OURS_SHARE=${BENCH_DRIFT_OURS_SHARE:-}

while (($#)); do
    case $1 in
    --windows) WINDOWS=${2?--windows needs a number}; shift 2 ;;
    --window) WINDOW=${2?--window needs a number}; shift 2 ;;
    --reference) REFERENCE=${2?--reference needs a number}; shift 2 ;;
    --seed) SEED=${2?--seed needs a number}; shift 2 ;;
    --passes) PASSES=${2?--passes needs a number}; shift 2 ;;
    --evidently-passes) EV_PASSES=${2?--evidently-passes needs a number}; shift 2 ;;
    --drift-share) SHARE=${2?--drift-share needs a number}; shift 2 ;;
    --build) BUILD=${2?--build needs a folder}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
for v in WINDOWS WINDOW REFERENCE PASSES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, not '${!v}'"
done
[[ $SEED =~ ^[0-9]+$ ]] || die "SEED must be a whole number, not '$SEED'"
[[ $EV_PASSES =~ ^[0-9]+$ ]] || die "EV_PASSES must be a whole number, not '$EV_PASSES'"
[[ $SHARE =~ ^(0?\.[0-9]*[1-9][0-9]*|1|1\.0*)$ ]] || die "SHARE must be in (0, 1], not '$SHARE'"

BIN=$BUILD/bench/mlops-bench-drift
[[ -x $BIN ]] || die "$BIN not found: build first (make build, or cmake --build build) or set --build"
[[ -x $PY ]] || die "$PY not found: run deploy/setup.sh venv (or set MLOPS_PYTHON)"

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)-$$
DIR=$STATE/bench/drift-$RUN_ID
mkdir -p -- "$DIR"
printf 'bench/drift.sh: %s windows of %s rows, reference %s, seed %s, passes %s (Evidently %s); files in %s\n' \
    "$WINDOWS" "$WINDOW" "$REFERENCE" "$SEED" "$PASSES" "$EV_PASSES" "$DIR" >&2

"$PY" "$ROOT/bench/drift_peers.py" gen "$DIR/data" --windows "$WINDOWS" --window "$WINDOW" \
    --reference "$REFERENCE" --seed "$SEED"
"$BIN" --data "$DIR/data" --repeat "$PASSES" --drift-share "${OURS_SHARE:-$SHARE}" >"$DIR/ours.jsonl"
echo "# commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%FT%TZ)"
"$PY" "$ROOT/bench/drift_peers.py" run "$DIR/data" "$DIR/ours.jsonl" --passes "$PASSES" \
    --evidently-passes "$EV_PASSES" --drift-share "$SHARE" | tee "$DIR/result.txt"
