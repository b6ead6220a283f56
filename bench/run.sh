#!/usr/bin/env bash
# bench/run.sh: benchmark a stage (default: the raw librdkafka passthrough)
# against the broker round trip, on the same broker, in the same invocation.
#
# Usage: bench/run.sh [options]
#
# For each mode (flat-out throughput, then a fixed rate for latency) and each
# repetition, it creates fresh topics and runs
#   baseline: mlops-bench run: loadgen -> topic -> measuring consumer
#   stage:    mlops-bench run: loadgen -> in-topic -> STAGE -> out-topic -> measuring consumer
# then prints one table with the stage's figures divided by the baseline's
# (ratios survive noisy shared machines better than absolute figures), and
# deletes its topics and groups.
#
# Options (each has an environment variable; the option wins):
#   --stage CMD       the stage under test, a shell command with placeholders
#                     {in} {out} {group} {brokers}; it must consume {in} as group
#                     {group}, write one output per input carrying the input's
#                     event_id to {out}, and exit on SIGTERM ($BENCH_STAGE;
#                     default: the passthrough)
#   --label NAME      the stage's name in the table ($BENCH_LABEL; default
#                     passthrough, or stage for a custom --stage)
#   --with-passthrough
#                     also run the raw passthrough as a second stage in every
#                     repetition, and print a second table with the stage's
#                     figures divided by the passthrough's ($BENCH_WITH_PASSTHROUGH=1)
#   --count N         events per run ($BENCH_COUNT; default 200000, CI-sized)
#   --rate R          events/s of the latency mode ($BENCH_RATE; default 20000)
#   --modes LIST      "flat rate", "flat" or "rate" ($BENCH_MODES; default both)
#   --repeat K        repetitions of every run, interleaved ($BENCH_REPEAT; default 1)
#   --partitions P    partitions per topic ($BENCH_PARTITIONS; default 3)
#   --brokers LIST    bootstrap servers ($BENCH_BROKERS; default 127.0.0.1:9092)
#   --build DIR       CMake build folder with bench/ binaries ($BENCH_BUILD_DIR;
#                     default <repo>/build)
#   -X PROP=VALUE     librdkafka property for the load generator and measuring
#                     consumer (repeatable; the stage gets its own in --stage)
#   -h, --help        this help
#
# Output: the table on stdout; every run's output, the stage's log and the
# result JSON lines (results.jsonl, schema bench_result/1) in
# $MLOPS_STATE_DIR/bench/<run id>/ (default <repo>/.state). Exit status: 0
# when every run delivered every event, 1 otherwise, 2 on a usage error.
#
# Examples:
#   bench/run.sh                                    # passthrough vs broker, 200k events
#   BENCH_COUNT=2000000 bench/run.sh --repeat 3     # bigger, three times
#   bench/run.sh --label scorer --stage 'build/services/scorer/mlops-scorer
#       --kafka-brokers {brokers} --features-topic {in} --predictions-topic {out}
#       --group {group}'                            # (flag names: the scorer's own)
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

die() {
    printf 'bench/run.sh: %s\n' "$*" >&2
    exit 2
}

BUILD=${BENCH_BUILD_DIR:-$ROOT/build}
BROKERS=${BENCH_BROKERS:-127.0.0.1:9092}
COUNT=${BENCH_COUNT:-200000}
RATE=${BENCH_RATE:-20000}
MODES=${BENCH_MODES:-flat rate}
REPEAT=${BENCH_REPEAT:-1}
PARTITIONS=${BENCH_PARTITIONS:-3}
STAGE=${BENCH_STAGE:-}
LABEL=${BENCH_LABEL:-}
WITH_PT=${BENCH_WITH_PASSTHROUGH:-0}
XPROPS=()
# Extra mlops-bench run options for every path (e.g. --format features for the
# scorer: bench/score.sh), from $BENCH_RUN_ARGS (split on white space).
read -r -a RUN_ARGS <<<"${BENCH_RUN_ARGS:-}"

while (($#)); do
    case $1 in
    --stage) STAGE=${2?--stage needs a command}; shift 2 ;;
    --label) LABEL=${2?--label needs a name}; shift 2 ;;
    --with-passthrough) WITH_PT=1; shift ;;
    --count) COUNT=${2?--count needs a number}; shift 2 ;;
    --rate) RATE=${2?--rate needs a number}; shift 2 ;;
    --modes) MODES=${2?--modes needs a list}; shift 2 ;;
    --repeat) REPEAT=${2?--repeat needs a number}; shift 2 ;;
    --partitions) PARTITIONS=${2?--partitions needs a number}; shift 2 ;;
    --brokers) BROKERS=${2?--brokers needs a list}; shift 2 ;;
    --build) BUILD=${2?--build needs a folder}; shift 2 ;;
    -X) XPROPS+=(-X "${2?-X needs prop=value}"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

for v in COUNT RATE REPEAT PARTITIONS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, not '${!v}'"
done
for m in $MODES; do
    [[ $m == flat || $m == rate ]] || die "unknown mode '$m' in '$MODES' (flat, rate)"
done

BENCH=$BUILD/bench/mlops-bench
PASSTHROUGH=$BUILD/bench/mlops-bench-passthrough
for bin in "$BENCH" "$PASSTHROUGH"; do
    [[ -x $bin ]] || die "$bin not found: build first (cmake -S . -B build -G Ninja && ninja -C build) or set --build"
done
PT_CMD="$PASSTHROUGH --brokers {brokers} --in {in} --out {out} --group {group}"
if [[ -z $STAGE ]]; then
    STAGE=$PT_CMD
    LABEL=${LABEL:-passthrough}
    WITH_PT=0
fi
LABEL=${LABEL:-stage}
[[ $LABEL != broker ]] || die "--label broker is the baseline's name; pick another"
# the stages of every repetition: labels and commands, in run order
STAGE_LABELS=()
STAGE_CMDS=()
if [[ $WITH_PT == 1 ]]; then
    [[ $LABEL != passthrough ]] || die "--label passthrough is taken by --with-passthrough"
    STAGE_LABELS+=(passthrough)
    STAGE_CMDS+=("$PT_CMD")
fi
STAGE_LABELS+=("$LABEL")
STAGE_CMDS+=("$STAGE")

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)-$$
STATE=${MLOPS_STATE_DIR:-$ROOT/.state}
DIR=$STATE/bench/$RUN_ID
mkdir -p -- "$DIR"
RESULTS=$DIR/results.jsonl
: >"$RESULTS"

TOPICS=()
GROUPS_=()
STAGE_PID=
RUN_PID=
FAILED=0

# shellcheck disable=SC2317 # (called by the EXIT trap)
cleanup() {
    local rc=$?
    if [[ -n $RUN_PID ]] && kill -0 "$RUN_PID" 2>/dev/null; then
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    if [[ -n $STAGE_PID ]] && kill -0 "$STAGE_PID" 2>/dev/null; then
        kill -TERM "$STAGE_PID" 2>/dev/null || true
        wait "$STAGE_PID" 2>/dev/null || true
    fi
    if ((${#TOPICS[@]} + ${#GROUPS_[@]})); then
        local gargs=() g
        for g in "${GROUPS_[@]}"; do gargs+=(-g "$g"); done
        "$BENCH" delete --brokers "$BROKERS" "${gargs[@]}" "${TOPICS[@]}" \
            2>>"$DIR/cleanup.log" ||
            printf 'bench/run.sh: cleanup failed, see %s\n' "$DIR/cleanup.log" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_stage: SIGTERM, wait up to 30 s, then SIGKILL; 1 if it did not exit 0.
stop_stage() {
    local i rc=0
    kill -TERM "$STAGE_PID" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$STAGE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$STAGE_PID" 2>/dev/null; then
        printf 'bench/run.sh: the stage did not exit 30 s after SIGTERM; killing it\n' >&2
        kill -KILL "$STAGE_PID" 2>/dev/null || true
    fi
    wait "$STAGE_PID" || rc=$?
    STAGE_PID=
    return "$rc"
}

# bench_run LOG ARGS...: mlops-bench run ARGS in the background (so that a
# signal to this script is served at once), stopping it if the stage dies
# (it would wait for its --ready-timeout or --idle-timeout). Returns its status.
bench_run() {
    local log=$1 rc=0
    shift
    "$BENCH" run "$@" >"$log" 2>&1 &
    RUN_PID=$!
    while kill -0 "$RUN_PID" 2>/dev/null; do
        if [[ -n $STAGE_PID ]] && ! kill -0 "$STAGE_PID" 2>/dev/null; then
            printf 'bench/run.sh: the stage exited during the run; stopping the run\n' >&2
            kill -TERM "$RUN_PID" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    wait "$RUN_PID" || rc=$?
    RUN_PID=
    return "$rc"
}

# one_run MODE REP PATH: run one measurement (PATH: broker, or the index of a
# stage in STAGE_CMDS).
one_run() {
    local mode=$1 rep=$2 path=$3 base=bench-$RUN_ID-$1-$2
    local rate_args=() rc=0 name=broker
    [[ $path == broker ]] || name=${STAGE_LABELS[$path]}
    local log=$DIR/$mode-$rep-$name.out
    base=$base-$name
    [[ $mode == rate ]] && rate_args=(--rate "$RATE")
    if [[ $path == broker ]]; then
        TOPICS+=("$base")
        "$BENCH" create --brokers "$BROKERS" --partitions "$PARTITIONS" "$base" ||
            { FAILED=1; return; }
        bench_run "$log" --brokers "$BROKERS" --in "$base" --count "$COUNT" \
            "${rate_args[@]}" --label broker --json "$RESULTS" "${XPROPS[@]}" "${RUN_ARGS[@]}" || rc=$?
    else
        local in=$base-in out=$base-out group=$base-stage cmd=${STAGE_CMDS[$path]}
        TOPICS+=("$in" "$out")
        GROUPS_+=("$group")
        "$BENCH" create --brokers "$BROKERS" --partitions "$PARTITIONS" "$in" "$out" ||
            { FAILED=1; return; }
        cmd=${cmd//\{in\}/$in}
        cmd=${cmd//\{out\}/$out}
        cmd=${cmd//\{group\}/$group}
        cmd=${cmd//\{brokers\}/$BROKERS}
        printf '%s\n' "$cmd" >"$DIR/$mode-$rep-$name.cmd"
        bash -c "exec $cmd" >"$DIR/$mode-$rep-$name.log" 2>&1 &
        STAGE_PID=$!
        bench_run "$log" --brokers "$BROKERS" --in "$in" --out "$out" --count "$COUNT" \
            "${rate_args[@]}" --label "$name" --json "$RESULTS" "${XPROPS[@]}" "${RUN_ARGS[@]}" || rc=$?
        if ! stop_stage; then
            printf 'bench/run.sh: the stage exited with an error; its log (%s) ends:\n' \
                "$DIR/$mode-$rep-$name.log" >&2
            tail -n 5 "$DIR/$mode-$rep-$name.log" >&2
            FAILED=1
        fi
    fi
    if ((rc)); then
        printf 'bench/run.sh: %s run (%s, repetition %s) failed with status %s; %s ends:\n' \
            "$path" "$mode" "$rep" "$rc" "$log" >&2
        tail -n 12 "$log" >&2
        FAILED=1
    else
        grep -v '^{' "$log" >&2 || true # the summary, without the JSON lines
    fi
}

printf 'bench/run.sh: %s events per run, modes: %s (rate %s/s), %s repetition(s), %s partitions, broker %s\n' \
    "$COUNT" "$MODES" "$RATE" "$REPEAT" "$PARTITIONS" "$BROKERS" >&2
for i in "${!STAGE_CMDS[@]}"; do
    printf 'bench/run.sh: stage %s: %s\n' "${STAGE_LABELS[$i]}" "${STAGE_CMDS[$i]}" >&2
done
printf 'bench/run.sh: logs and results in %s\n' "$DIR" >&2
for ((rep = 1; rep <= REPEAT; rep++)); do
    for mode in $MODES; do
        one_run "$mode" "$rep" broker
        for i in "${!STAGE_CMDS[@]}"; do
            one_run "$mode" "$rep" "$i"
        done
    done
done

echo
printf 'Benchmark %s: %s vs broker round trip, %s events per run, %s partitions\n' \
    "$RUN_ID" "$LABEL" "$COUNT" "$PARTITIONS"
printf 'host %s (%s cores), librdkafka %s\n\n' "$(uname -n)" "$(nproc)" \
    "$(sed -n 's/.*"librdkafka":"\([^"]*\)".*/\1/p' "$RESULTS" | head -n 1)"
"$BENCH" report --baseline broker "$RESULTS" || FAILED=1
if [[ $WITH_PT == 1 ]]; then
    printf '\n%s vs the raw passthrough (same runs):\n\n' "$LABEL"
    grep -v -E '"label": ?"broker"' "$RESULTS" | "$BENCH" report --baseline passthrough - || FAILED=1
fi
printf '\nresults: %s\n' "$RESULTS"
exit "$FAILED"
