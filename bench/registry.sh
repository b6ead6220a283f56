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
#   bench/registry.sh --mlflow             # and the MLflow tracking server, same routes,
#                                          # same Postgres server (a database of its own)
#
# --mlflow needs the server in $STATE/bench-mlflow-venv:
#   python3 -m venv $STATE/bench-mlflow-venv
#   $STATE/bench-mlflow-venv/bin/pip install -r bench/mlflow-requirements.txt
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
MLFLOW_WORKERS=${MLFLOW_WORKERS:-2}
WITH_MLFLOW=0
[[ ${1:-} == --mlflow ]] && WITH_MLFLOW=1
MLFLOW_VENV=$STATE/bench-mlflow-venv
if ((WITH_MLFLOW)) && [[ ! -x $MLFLOW_VENV/bin/mlflow ]]; then
    echo "bench/registry.sh: --mlflow needs $MLFLOW_VENV (see the header of this script)" >&2
    exit 2
fi
command -v wrk >/dev/null || { echo "bench/registry.sh: wrk not found (apt-get install wrk)" >&2; exit 2; }
[[ -x $BUILD/services/registry/mlops-registry ]] || { echo "bench/registry.sh: build first" >&2; exit 2; }

db=reg_bench_$$
mdb=mlflow_bench_$$
sock=$STATE/run/pg-socket
[[ -s $STATE/pg-base && $(cat "$STATE/pg-base") != "$STATE" ]] && sock=$(cat "$STATE/pg-base")/socket
PSQL=/usr/lib/postgresql/15/bin/psql
[[ -x $PSQL ]] || PSQL=psql
admin() { (cd / && if ((EUID == 0)); then runuser -u postgres -- "$PSQL" -X -q -h "$sock" -p 5433 -U postgres -d postgres -c "$1"; else "$PSQL" -X -q -h "$sock" -p 5433 -U postgres -d postgres -c "$1"; fi); }
work=$(mktemp -d)
pid=""
mpid=""
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    [[ -n $mpid ]] && kill "$mpid" 2>/dev/null && wait "$mpid" 2>/dev/null || true
    admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    admin "DROP DATABASE IF EXISTS $mdb WITH (FORCE)" >/dev/null 2>&1 || true
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
seed() {
"$PY" - "$1" "$2" "$MODELS" "$VERSIONS" <<'PYEOF'
import json, sys, urllib.request
base, tok, nm, nv = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def post(path, body):
    hdrs = {"Content-Type": "application/json"}
    if tok:
        hdrs["Authorization"] = "Bearer " + tok
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers=hdrs)
    urllib.request.urlopen(req).read()
for m in range(nm):
    post("/api/2.0/mlflow/registered-models/create", {"name": f"bench-{m}"})
    for v in range(nv):
        post("/api/2.0/mlflow/model-versions/create",
             {"name": f"bench-{m}", "source": f"s3://bench/{m}/{v}"})
PYEOF
}
seed "$base" "$tok"
echo "registry bench: $MODELS models x $VERSIONS versions, wrk -t$THREADS -c$CONNS -d$DURATION, port $port"
printf '| route | req/s | p50 ms | p90 ms | p99 ms | errors |\n| --- | ---: | ---: | ---: | ---: | ---: |\n'
run() {
    local label=$1 path=$2 out
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency ${tok:+-H "Authorization: Bearer $tok"} "$base$path")
    local rps p50 p90 p99 errs
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p90=$(awk '$1 == "90%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {print "sock:" $0}' <<<"$out" | tr '\n' ' ')
    printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$rps" "$p50" "$p90" "$p99" "${errs:-0}"
}
routes() {
    local who=$1 m=bench-$((MODELS / 2)) v=$((VERSIONS / 2 + 1))
    run "$who: GET model-versions/get" "/api/2.0/mlflow/model-versions/get?name=$m&version=$v"
    run "$who: GET model-versions/search (one model)" "/api/2.0/mlflow/model-versions/search?filter=name%3D%27$m%27"
    run "$who: GET registered-models/search (100)" "/api/2.0/mlflow/registered-models/search?max_results=100"
}
routes mlops-registry
if ((WITH_MLFLOW)); then
    kill "$pid" && wait "$pid" 2>/dev/null || true
    pid=""
    admin "CREATE DATABASE $mdb OWNER mlops" >/dev/null
    mdsn=$(sed -E "s#/[^/?]*(\\?|$)#/$mdb\\1#" "$STATE/secrets/pg_dsn")
    mport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    (cd "$work" && exec "$MLFLOW_VENV/bin/mlflow" server --backend-store-uri "$mdsn" \
        --default-artifact-root "$work/mlruns" --host 127.0.0.1 --port "$mport" \
        --workers "$MLFLOW_WORKERS" >"$work/mlflow.log" 2>&1) &
    mpid=$!
    for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:$mport/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$mport/health" >/dev/null || { echo "mlflow server did not start:" >&2; tail -20 "$work/mlflow.log" >&2; exit 1; }
    base=http://127.0.0.1:$mport
    tok=""
    seed "$base" ""
    routes "mlflow server ($MLFLOW_WORKERS workers)"
fi
