#!/usr/bin/env bash
# What `make demo` shows (called after setup, build and `stack.sh up`): the loop from
# raw events to a served, monitored model, on the real local stack, in numbered steps.
#
#   1. the stack            Kafka, PostgreSQL, Redis on 127.0.0.1
#   2. train                synthetic attrition data; GBDT and logistic regression
#   3. register, promote    both into mlops-registry; the better one becomes champion
#   4. the services         ingest, scorer (champion from the registry), monitor,
#                           the Slack notifier to a local HTTPS webhook receiver
#   5. events               events with covariate drift from the middle on, and labels
#   6. what happened        features and DLQ, predictions, drift per feature, the
#                           alert as Slack received it, the retrain request
#   7. drain                SIGTERM to every service
#
# Environment: DEMO_ROWS (events, default 30000), DEMO_TRAIN_ROWS (default 40000),
# MLOPS_SLACK_WEBHOOK_URLS (also post the alerts to a real Slack webhook).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

LOG_PREFIX=demo
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
resolve_state

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MLOPS_BUILD_DIR:-$ROOT/build}
M=$BUILD/cli/mlopsctl
RUN=$STATE/demo/$(date -u +%Y%m%dT%H%M%SZ)
LOGS=$RUN/logs
mkdir -p "$LOGS"
ROWS=${DEMO_ROWS:-30000}
TRAIN_ROWS=${DEMO_TRAIN_ROWS:-40000}
MODEL=attrition # the artifact's own name (the trainer names it after the spec)
SPEC=$ROOT/examples/attrition/spec.json
PY=$STATE/venv/bin/python
RECV_PORT=${DEMO_RECEIVER_PORT:-18443}
declare -A PORTS=([ingest]=9101 [registry]=8080 [scorer]=9103 [monitor]=9104 [notify]=9105)
declare -A PIDS=()
t0=$(date +%s%N)

step() { printf '\n== %s  [%s]\n' "$*" "$(elapsed)"; }
elapsed() {
    local ms=$((($(date +%s%N) - t0) / 1000000))
    printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100))
}
metric() { # metric PORT NAME_WITH_LABELS: prints the value (0 if absent)
    curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk -v m="$2" '$1 == m { v = $2 } END { printf "%d\n", (v == "" ? 0 : v) }'
}
metric_sum() { # metric_sum PORT NAME: the sum over all its label sets
    curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk -v m="$2" 'index($1, m "{") == 1 || $1 == m { v += $2 } END { printf "%d\n", v }'
}
json_field() { # json_field FILE EXPR: a value from a JSON file (python, not a service)
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"
}

cleanup() {
    for name in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

start() { # start NAME CMD...: a local process, its log in $LOGS/NAME.log
    local name=$1
    shift
    "$@" >"$LOGS/$name.log" 2>&1 9>&- &
    PIDS[$name]=$!
}
wait_ready() { # wait_ready NAME PORT
    for _ in $(seq 100); do
        if curl -fsS "http://127.0.0.1:$2/ready" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "${PIDS[$1]}" 2>/dev/null || die "mlops-$1 exited; see $LOGS/$1.log"
        sleep 0.1
    done
    die "mlops-$1 did not become ready; see $LOGS/$1.log"
}
wait_log() { # wait_log NAME TEXT SECONDS
    for _ in $(seq $(($3 * 10))); do
        grep -q -- "$2" "$LOGS/$1.log" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

for name in "${!PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/${PORTS[$name]}") 2>/dev/null; then
        die "port ${PORTS[$name]} (mlops-$name) is taken: is another demo or service running? (ss -ltnp)"
    fi
done
for bin in "$M" "$BUILD"/services/{ingest,trainer,registry,scorer,monitor}/mlops-*; do
    [[ -x $bin ]] || die "$bin is not built (make build)"
done

step "1. the local stack (Kafka 3.9 KRaft, PostgreSQL 15, Redis 7 on 127.0.0.1)"
"$ROOT/deploy/stack.sh" status
"$ROOT/deploy/smoke.sh"

step "2. train: $TRAIN_ROWS synthetic attrition rows, GBDT and logistic regression"
"$M" datagen attrition --rows "$TRAIN_ROWS" --seed 11 --out "$RUN/train.csv"
"$BUILD/services/trainer/mlops-trainer" fit --data "$RUN/train.csv" --spec "$SPEC" \
    --algo gbdt --seed 1 --out "$RUN/gbdt.json" 2>&1 | tail -n 2
"$BUILD/services/trainer/mlops-trainer" fit --data "$RUN/train.csv" --spec "$SPEC" \
    --algo logreg --out "$RUN/logreg.json" 2>&1 | tail -n 2

step "3. register both in mlops-registry and promote the better one to champion"
start registry "$BUILD/services/registry/mlops-registry"
wait_ready registry 8080
TRAINER_TOKEN=$("$M" token create --role trainer --name "demo-trainer-$(date +%s)" | tail -n 1)
declare -A VERSION=() AUC=()
for algo in gbdt logreg; do
    out=$(MLOPS_TOKEN=$TRAINER_TOKEN "$M" models register "$MODEL" --file "$RUN/$algo.json")
    printf '  %s\n' "$out"
    VERSION[$algo]=$(sed -n 's/.* version \([0-9]*\) .*/\1/p' <<<"$out")
    AUC[$algo]=$(json_field "$RUN/$algo.json" 'd["metrics"]["auc"]')
done
best=gbdt
if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" \
    "${AUC[logreg]}" "${AUC[gbdt]}"; then
    best=logreg
fi
printf '  held-out AUC: gbdt %.4f (v%s), logreg %.4f (v%s): champion = %s\n' \
    "${AUC[gbdt]}" "${VERSION[gbdt]}" "${AUC[logreg]}" "${VERSION[logreg]}" "$best"
"$M" models promote "$MODEL" "${VERSION[$best]}" --alias champion
"$M" models card "$RUN/$best.json" | sed -n '1,12p' | sed 's/^/  | /'

step "4. the services: ingest, scorer, monitor, and the Slack notifier (logs in $LOGS)"
# a CA of the demo's own and a certificate for the local webhook receiver
(
    cd "$RUN"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj "/CN=mlops demo CA" -addext basicConstraints=critical,CA:TRUE >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -keyout recv.key -out recv.csr -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1\n' >recv.ext
    openssl x509 -req -in recv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile recv.ext -out recv.pem >/dev/null 2>&1
) || die "openssl could not make the demo certificates"
start receiver "$PY" "$ROOT/deploy/slack_receiver.py" --cert "$RUN/recv.pem" \
    --key "$RUN/recv.key" --port "$RECV_PORT" --out "$RUN/slack.jsonl"
wait_log receiver "slack receiver" 10 || die "the webhook receiver did not start; see $LOGS/receiver.log"
HOOKS="https://127.0.0.1:$RECV_PORT/services/DEMO/LOCAL/webhook"
[[ -n ${MLOPS_SLACK_WEBHOOK_URLS:-} ]] && HOOKS="$HOOKS,$MLOPS_SLACK_WEBHOOK_URLS"
TOKEN_FILE=$STATE/registry/admin_token
start ingest "$BUILD/services/ingest/mlops-ingest" --spec "$SPEC"
start scorer "$BUILD/services/scorer/mlops-scorer" --registry-url http://127.0.0.1:8080 \
    --registry-token-file "$TOKEN_FILE" --model-name "$MODEL"
start monitor "$BUILD/services/monitor/mlops-monitor" --registry-url http://127.0.0.1:8080 \
    --registry-token-file "$TOKEN_FILE" --model "$RUN/$best.json" --windows 2000 \
    --drift-share 0.3 --alert-state-key "mlops:demo:${RUN##*/}:alerts"
# (--drift-share 0.3: the demo's drift moves about a third of the features; an alert
# state of its own, so the alerts of an earlier demo run are not still firing)
MLOPS_SLACK_WEBHOOK_URLS=$HOOKS start notify "$BUILD/services/monitor/mlops-notify" \
    --slack-ca-file "$RUN/ca.pem" --group-id "mlops-notify-demo-$(date +%s)" \
    -X auto.offset.reset=latest --group-wait-ms 2000
for name in ingest scorer monitor notify; do
    wait_ready "$name" "${PORTS[$name]}"
done
for name in ingest scorer monitor notify; do
    wait_log "$name" "partitions assigned" 30 || warn "mlops-$name has no partitions yet"
done
printf '  %-9s %-6s %s\n' service port "first lines of its log"
for name in registry ingest scorer monitor notify; do
    printf '  %-9s %-6s %s\n' "$name" "${PORTS[$name]}" \
        "$(sed -n 's/.*"msg":"\([^"]*\)".*/\1/p' "$LOGS/$name.log" | grep -v -e NOTICE -e thrd: |
            head -n 2 | paste -sd'|')"
done

step "5. events: $ROWS attrition events (covariate drift from the middle on) and their labels"
f0=$(metric 9101 mlops_ingest_features_total)
d0=$(metric_sum 9101 mlops_ingest_dlq_total)
p0=$(metric 9103 mlops_scorer_events_total)
ts=$(date +%s%N)
# a seed of its own per run: event ids differ, so a second demo is not all duplicates
"$M" datagen attrition --rows "$ROWS" --seed "$(($(date +%s) % 1000000))" --topic events.raw \
    --drift-at 0.5 --drift covariate --bad-fraction 0.01 2>&1 | tail -n 1
for _ in $(seq 900); do # until ingest has placed every event and the scorer scored them
    f=$(($(metric 9101 mlops_ingest_features_total) - f0))
    d=$(($(metric_sum 9101 mlops_ingest_dlq_total) - d0))
    p=$(($(metric 9103 mlops_scorer_events_total) - p0))
    ((f + d >= ROWS && p >= f)) && break
    sleep 0.2
done
te=$(date +%s%N)

step "6. what happened"
secs=$(awk -v a="$ts" -v b="$te" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
printf '  ingest:  %d features, %d to the DLQ (the data has bad rows on purpose)\n' "$f" "$d"
curl -fsS http://127.0.0.1:9101/metrics | awk '/^mlops_ingest_dlq_total/ && $2 > 0 {
    sub(/mlops_ingest_dlq_total/, "", $1); printf "           DLQ %s: %d (since the service started)\n", $1, $2 }'
printf '  scorer:  %d predictions in %s s from the first event produced (%.0f events/s end to end)\n' \
    "$p" "$secs" "$(awk -v n="$p" -v s="$secs" 'BEGIN { print (s > 0 ? n / s : 0) }')"
curl -fsS http://127.0.0.1:9103/metrics | grep -E '^mlops_scorer_predictions_total' |
    sed 's/^/           /' || true
printf '  monitor: drift per feature (window of 2000 events against the training reference)\n'
"$M" drift status 2>&1 | head -n 14 | sed 's/^/           /'
printf '  alerts:  waiting for the notifier to deliver to the local webhook receiver\n'
wait_log receiver "dataset_drift" 40 || true
grep 'slack>' "$LOGS/receiver.log" | grep -A3 -e 'alerts:' -e 'dataset_drift' | head -n 14 |
    sed 's/^/           /' ||
    printf '           (no message received yet: see %s)\n' "$LOGS/notify.log"
printf '  retrain: %s\n' \
    "$(grep -c 'retrain requested' "$LOGS/monitor.log" || true) request(s) filed on train.requests"
"$M" models history "$MODEL" 2>&1 | awk 'NF == 0 { exit } { print }' |
    sed -n '1p;$p' | sed 's/^/  history: /'

step "7. graceful drain: SIGTERM to each service"
for name in notify monitor scorer ingest registry receiver; do
    kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    rc=0
    wait "${PIDS[$name]}" 2>/dev/null || rc=$?
    unset "PIDS[$name]"
    printf '  %-9s exit %s\n' "$name" "$rc"
done

step "done in $(elapsed)"
cat <<MSG
Logs and artifacts of this run: $RUN
Next: build/cli/mlopsctl models list | drift status | alerts silences | dlq list --since -1h
      curl -s 127.0.0.1:9103/metrics   (while mlops-scorer runs)
The stack stays up (make stack-down stops it). Still to come in make demo (issue 9): the
streaming trainer answering the retrain request, a canary of the retrained model and a
rollback, with supervision of the services.
MSG
