#!/usr/bin/env bash
# bench/registry.sh: mlops-registry read throughput with wrk (Debian's `wrk` package).
#
# Starts the registry on a free port against a database of its own on the local
# stack's PostgreSQL (created through the superuser's private socket, dropped at the
# end), seeds MODELS models with VERSIONS versions each, then runs wrk on
#   get      GET /api/2.0/mlflow/model-versions/get?name=...&version=...
#   search   GET /api/2.0/mlflow/model-versions/search?filter=name='...'
# and prints req/s and latency percentiles.
#
#   bench/registry.sh                      # 10 s per route, 2 threads, 32 connections
#   DURATION=30s CONNS=64 bench/registry.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${MLOPS_STATE_DIR:-$ROOT/.state}
BUILD=${MLOPS_BUILD_DIR:-$ROOT/build}
PY=${MLOPS_PYTHON:-$STATE/venv/bin/python}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
MODELS=${MODELS:-20}
VERSIONS=${VERSIONS:-20}
command -v wrk >/dev/null || { echo "bench/registry.sh: wrk not found (apt-get install wrk)" >&2; exit 2; }
[[ -x $BUILD/services/registry/mlops-registry ]] || { echo "bench/registry.sh: build first" >&2; exit 2; }

db=reg_bench_$$
sock=$STATE/run/pg-socket
[[ -s $STATE/pg-base && $(cat "$STATE/pg-base") != "$STATE" ]] && sock=$(cat "$STATE/pg-base")/socket
PSQL=/usr/lib/postgresql/15/bin/psql
[[ -x $PSQL ]] || PSQL=psql
admin() { (cd / && if ((EUID == 0)); then runuser -u postgres -- "$PSQL" -X -q -h "$sock" -p 5433 -U postgres -d postgres -c "$1"; else "$PSQL" -X -q -h "$sock" -p 5433 -U postgres -d postgres -c "$1"; fi); }
work=$(mktemp -d)
pid=""
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf -- "$work"
}
trap cleanup EXIT
admin "CREATE DATABASE $db OWNER mlops" >/dev/null
dsn=$(sed -E "s#/[^/?]*(\\?|$)#/$db\\1#" "$STATE/secrets/pg_dsn")
"$BUILD/services/registry/mlops-registry" --pg-dsn "$dsn" --metrics-port 0 --state-dir "$work" \
    --no-outbox-relay --log-level warn 2>"$work/log" &
pid=$!
for _ in $(seq 100); do [[ -s $work/registry/admin_token ]] && break; sleep 0.1; done
# the port: from /proc, the one socket the process listens on
port=""
for _ in $(seq 50); do
    port=$(ss -ltnpH 2>/dev/null | awk -v p="pid=$pid," '$0 ~ p {split($4, a, ":"); print a[length(a)]; exit}')
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || { echo "bench/registry.sh: the registry did not come up:" >&2; cat "$work/log" >&2; exit 1; }
tok=$(cat "$work/registry/admin_token")
base=http://127.0.0.1:$port
"$PY" - "$base" "$tok" "$MODELS" "$VERSIONS" <<'PYEOF'
import json, sys, urllib.request
base, tok, nm, nv = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + tok})
    urllib.request.urlopen(req).read()
for m in range(nm):
    post("/api/2.0/mlflow/registered-models/create", {"name": f"bench-{m}"})
    for v in range(nv):
        post("/api/2.0/mlflow/model-versions/create",
             {"name": f"bench-{m}", "source": f"s3://bench/{m}/{v}", "run_id": f"r{v}"})
PYEOF
echo "registry bench: $MODELS models x $VERSIONS versions, wrk -t$THREADS -c$CONNS -d$DURATION, port $port"
printf '| route | req/s | p50 ms | p90 ms | p99 ms | errors |\n| --- | ---: | ---: | ---: | ---: | ---: |\n'
run() {
    local label=$1 path=$2 out
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $tok" "$base$path")
    local rps p50 p90 p99 errs
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p90=$(awk '$1 == "90%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {print "sock:" $0}' <<<"$out" | tr '\n' ' ')
    printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$rps" "$p50" "$p90" "$p99" "${errs:-0}"
}
run "GET model-versions/get" "/api/2.0/mlflow/model-versions/get?name=bench-7&version=5"
run "GET model-versions/search (one model)" "/api/2.0/mlflow/model-versions/search?filter=name%3D%27bench-7%27"
run "GET registered-models/search (all)" "/api/2.0/mlflow/registered-models/search?max_results=100"
