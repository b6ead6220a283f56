#!/usr/bin/env bash
# Run the libFuzzer targets of tests/fuzz (built by `make fuzz` into build-fuzz/).
#
#   tests/fuzz/run.sh [TARGET...]        default: every target (ingest registry spec model slack)
#
# For each target: first every file of tests/fuzz/regress/TARGET/ once (the crashers
# found before), then FUZZ_SECONDS of fuzzing from tests/fuzz/corpus/TARGET/ (read
# only) plus a working corpus under FUZZ_WORK/TARGET/corpus that grows from run to
# run. A crash, leak, UB report, timeout (FUZZ_TIMEOUT s per input) or failed check
# stops the target; its input is written under FUZZ_WORK/TARGET/crashes/ and the
# path is printed. Exit status: 0 when no target crashed, 1 otherwise.
#
# Environment: FUZZ_SECONDS (10), FUZZ_TIMEOUT (10), FUZZ_BUILD (build-fuzz),
# FUZZ_WORK ($FUZZ_BUILD/fuzz-work), FUZZ_ARGS (more libFuzzer flags, e.g. -jobs=2).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd -- "$HERE/../.." && pwd)
SECONDS_EACH=${FUZZ_SECONDS:-10}
TIMEOUT=${FUZZ_TIMEOUT:-10}
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
WORK=${FUZZ_WORK:-$BUILD/fuzz-work}
read -r -a EXTRA <<<"${FUZZ_ARGS:-}"
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(ingest registry spec model slack)

# Leak reports stay on (our own leaks must fail); ASan's quarantine is kept small so
# five targets on a shared machine stay well under the RSS limit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
summary=()
for t in "${TARGETS[@]}"; do
    bin=$BUILD/tests/fuzz/fuzz_$t
    [[ -x $bin ]] || { echo "fuzz: $bin not built (make fuzz builds it)" >&2; exit 2; }
    mkdir -p "$WORK/$t/corpus" "$WORK/$t/crashes"
    log=$WORK/$t/fuzz.log

    mapfile -t regress < <(find "$HERE/regress/$t" -maxdepth 1 -type f ! -name '.*' ! -name '*.md' | sort)
    if ((${#regress[@]})); then
        if ! "$bin" -timeout="$TIMEOUT" "${regress[@]}" >"$WORK/$t/regress.log" 2>&1; then
            echo "fuzz: $t: a regression case fails again (log: $WORK/$t/regress.log):" >&2
            grep -a -E "^replay|Running: |ERROR|fuzz check failed|runtime error" "$WORK/$t/regress.log" | head -20 >&2 || true
            summary+=("$(printf '%-9s regress FAILED (%d cases)' "$t" "${#regress[@]}")")
            status=1
            continue
        fi
    fi

    rc=0
    "$bin" -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$WORK/$t/crashes/" "${EXTRA[@]}" \
        "$WORK/$t/corpus" "$HERE/corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    units=$(find "$WORK/$t/corpus" -type f | wc -l)
    crasher=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if ((rc)) || [[ -n $crasher ]]; then
        status=1
        echo "fuzz: $t: CRASH (exit $rc), input written to ${crasher:-?} (log: $log)" >&2
        grep -a -E "ERROR: |fuzz check failed|runtime error|SUMMARY" "$log" | head -10 >&2 || true
        summary+=("$(printf '%-9s %8s execs %6s/s  1 crash: %s' "$t" "${execs:-?}" "${rate:-?}" "${crasher:-?}")")
    else
        summary+=("$(printf '%-9s %8s execs %6s/s  0 crashes  %d regress cases  corpus %d' "$t" \
            "${execs:-?}" "${rate:-?}" "${#regress[@]}" "$units")")
    fi
done
echo "== fuzz (${SECONDS_EACH} s per target) =="
printf '%s\n' "${summary[@]}"
exit "$status"
