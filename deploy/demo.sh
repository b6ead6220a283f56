#!/usr/bin/env bash
# What `make demo` shows (called after setup, build and `stack.sh up`).
#
# Today: the local stack with a smoke test of each server, and the five services
# started as local processes, checked through their /ready and /metrics endpoints, then
# drained with SIGTERM. Each later issue adds its step of the loop here (produce events,
# ingest, train, promote, score, drift alert, retrain).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

LOG_PREFIX=demo
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
resolve_state

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MLOPS_BUILD_DIR:-$ROOT/build}
LOGS=$STATE/logs/demo
mkdir -p "$LOGS"
SERVICES=(ingest trainer registry scorer monitor)
declare -A PORTS=([ingest]=9101 [trainer]=9102 [registry]=8080 [scorer]=9103 [monitor]=9104)
declare -A PIDS=()
t0=$(date +%s%N)

step() { printf '\n== %s ==\n' "$*"; }
elapsed() {
    local ms=$((($(date +%s%N) - t0) / 1000000))
    printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100))
}

cleanup() {
    for svc in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$svc]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

step "1. the local stack (Kafka 3.9 KRaft, PostgreSQL 15, Redis 7 on 127.0.0.1)"
"$ROOT/deploy/stack.sh" status
"$ROOT/deploy/smoke.sh"

step "2. the five services, started as local processes (logs in $LOGS)"
for svc in "${SERVICES[@]}"; do
    bin=$BUILD/services/$svc/mlops-$svc
    [[ -x $bin ]] || die "$bin is not built (make build)"
    if (exec 3<>"/dev/tcp/127.0.0.1/${PORTS[$svc]}") 2>/dev/null; then
        die "port ${PORTS[$svc]} for mlops-$svc is taken: is another demo running? (ss -ltnp)"
    fi
    "$bin" >"$LOGS/$svc.log" 2>&1 9>&- &
    PIDS[$svc]=$!
done
msg_of() { sed -n 's/.*"msg":"\([^"]*\)".*/\1/p' | head -n 1; }
printf '%-10s %-6s %-8s %-10s %s\n' service port ready rss_MiB "first log line"
for svc in "${SERVICES[@]}"; do
    port=${PORTS[$svc]}
    ready=no
    for _ in $(seq 50); do
        if curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then
            ready=yes
            break
        fi
        sleep 0.1
    done
    rss=$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null |
        awk '/^process_resident_memory_bytes/ { printf "%.1f", $2 / 1048576 }')
    printf '%-10s %-6s %-8s %-10s %s\n' "$svc" "$port" "$ready" "${rss:-?}" \
        "$(head -n 1 "$LOGS/$svc.log" | msg_of)"
    [[ $ready == yes ]] || die "mlops-$svc did not become ready; see $LOGS/$svc.log"
done

step "3. graceful drain: SIGTERM to each service"
for svc in "${SERVICES[@]}"; do
    kill -TERM "${PIDS[$svc]}"
    rc=0
    wait "${PIDS[$svc]}" || rc=$?
    unset "PIDS[$svc]"
    printf '%-10s exit %s  (%s)\n' "$svc" "$rc" "$(tail -n 1 "$LOGS/$svc.log" | msg_of)"
done

step "done in $(elapsed)"
cat <<'MSG'
The stack stays up (make stack-down stops it). The event loop itself (produce events,
ingest, train, register and promote, score, drift alerts to Slack, retrain) is added step
by step by the open issues; `make demo` will show each step as it lands.
MSG
