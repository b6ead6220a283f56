#!/usr/bin/env bash
# What `make demo` shows (called after setup, build and `stack.sh up`): the whole loop on the
# real local stack, with the five services supervised (deploy/services.sh), in numbered steps.
#
#   1. events        500,000 synthetic attrition events and their labels to Kafka
#   2. ingest        features and the DLQ by reason (the data has bad rows on purpose)
#   3. train         one exact offset range of features: GBDT and logistic regression by
#                    mlops-trainer, both registered; the better one promoted to champion
#   4. score         mlops-scorer streams predictions: events/s, latency from /metrics
#   5. drift         covariate and concept drift; the monitor's dataset-drift alert, as
#                    the local Slack-compatible HTTPS receiver got it; the retrain request
#                    it filed, answered by mlops-trainer with a challenger
#   6. canary        the challenger on 10 % of the entities; realized AUC of both on
#                    labelled events; promotion; a one-command rollback; alias history
#
# The services keep running afterwards (their /metrics, the CLI); `make demo-down` stops
# them and the stack. Environment: DEMO_ROWS (500000), DEMO_DRIFT_ROWS (60000),
# DEMO_CANARY_ROWS (60000), DEMO_CANARY_SHARE (0.1), DEMO_RECEIVER_PORT (18443),
# MLOPS_SLACK_WEBHOOK_URLS (also post the alerts to a real Slack webhook).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

LOG_PREFIX=demo
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
resolve_state

ROOT=$REPO_ROOT
BUILD=${MLOPS_BUILD_DIR:-$ROOT/build}
M=$BUILD/cli/mlopsctl
RUN=$STATE/demo/$(date -u +%Y%m%dT%H%M%SZ)
SVC=$RUN/services
export MLOPS_SERVICES_DIR=$SVC
ROWS=${DEMO_ROWS:-500000}
DRIFT_ROWS=${DEMO_DRIFT_ROWS:-60000}
CANARY_ROWS=${DEMO_CANARY_ROWS:-60000}
CANARY_SHARE=${DEMO_CANARY_SHARE:-0.1}
MODEL=attrition # the model's name in the registry (the spec's name)
SPEC=$ROOT/examples/attrition/spec.json
PY=$STATE/venv/bin/python
RECV_PORT=${DEMO_RECEIVER_PORT:-18443}
SEED0=$(($(date +%s) % 1000000)) # seeds of this run: a second demo's events are new events
t0=$(date +%s%N)
declare -A TOOK=()

step() {
    STEP_T0=$(date +%s%N)
    STEP_NAME=$1
    shift
    printf '\n== %s. %s  [%s]\n' "$STEP_NAME" "$*" "$(elapsed "$t0")"
}
step_done() { TOOK[$STEP_NAME]=$(elapsed "$STEP_T0"); }
elapsed() { # elapsed T0_NS: seconds since then, one decimal
    local ms=$((($(date +%s%N) - $1) / 1000000))
    printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100))
}
metric_sum() { # metric_sum PORT NAME [LABEL_FILTER]: the sum over its label sets (0 if absent)
    { curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } |
        awk -v m="$2" -v f="${3:-}" '(index($1, m "{") == 1 || $1 == m) && index($1, f) { v += $2 }
            END { printf "%.0f\n", v }'
}
# hist_quantile PORT HISTOGRAM Q [LABEL_FILTER]: the Q quantile of a Prometheus histogram,
# interpolated inside its bucket as PromQL's histogram_quantile does, in milliseconds.
hist_quantile() {
    { curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } | awk -v m="$2_bucket" -v q="$3" -v f="${4:-}" '
        index($1, m "{") == 1 && index($1, f) {
            le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le)
            c[le] += $2; if (!(le in seen)) { seen[le] = 1; les[n++] = le }
        }
        END {
            if (!n) { print "-"; exit }
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++)
                if ((les[j] == "+Inf") ? 0 : (les[i] == "+Inf" || les[j] + 0 < les[i] + 0)) {
                    t = les[i]; les[i] = les[j]; les[j] = t }
            total = c[les[n - 1]]; if (total <= 0) { print "-"; exit }
            rank = q * total; lo = 0; prev = 0
            for (i = 0; i < n; i++) {
                if (c[les[i]] >= rank) {
                    if (les[i] == "+Inf") { printf "> %.3g\n", lo * 1000; exit }
                    hi = les[i] + 0; w = c[les[i]] - prev
                    v = (w > 0) ? lo + (hi - lo) * (rank - prev) / w : hi
                    printf "%.3g\n", v * 1000; exit
                }
                lo = les[i] + 0; prev = c[les[i]]
            }
        }'
}
card_json() { "$M" models card "$MODEL" --json; }
py_json() { # py_json EXPR < JSON: a value from JSON on stdin (d is the document)
    python3 -c 'import json,sys; d=json.load(sys.stdin); v=eval(sys.argv[1], {"d": d}); print("" if v is None else v)' "$1"
}
# ends TOPIC: "P=END ..." of each partition
ends() { "$M" offsets "$1" 2>/dev/null | tr ',' '\n' | sed -n 's/^[^:]*:\([0-9]*\):[0-9]*-\([0-9]*\)$/\1=\2/p'; }
# show TEXT: a progress line rewritten in place on a terminal (nothing in a log file);
# shown_done ends it with the last text.
show() {
    SHOWN=$1
    if [[ -t 1 ]]; then printf '\r%s\033[K' "$1"; fi
}
shown_done() { if [[ -t 1 ]]; then printf '\n'; else printf '%s\n' "$SHOWN"; fi; }
wait_until() { # wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 2; i++)); do
        "$@" && return 0
        sleep 0.5
    done
    die "timed out after ${secs}s waiting for $what (logs: $SVC/logs)"
}

[[ -x $M ]] || die "$M is not built (make build)"
mkdir -p "$RUN" "$SVC/conf"
ln -sfn "$RUN" "$STATE/demo/latest"

# ------------------------------------------------------------------------------ 0. services
step 0 "the local stack and the services (supervised; configs and logs in $SVC)"
"$ROOT/deploy/stack.sh" status | sed 's/^/  /'
# the demo's own webhook receiver: HTTPS with a CA of this run, so the notifier's real path runs
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
if (exec 3<>"/dev/tcp/127.0.0.1/$RECV_PORT") 2>/dev/null; then
    die "port $RECV_PORT (the demo's webhook receiver) is taken: is another demo running? (make demo-down)"
fi
mkdir -p "$SVC/logs" "$SVC/run"
setsid "$PY" "$ROOT/deploy/slack_receiver.py" --cert "$RUN/recv.pem" --key "$RUN/recv.key" \
    --port "$RECV_PORT" --out "$RUN/slack.jsonl" </dev/null >"$SVC/logs/receiver.log" 2>&1 9>&- &
printf '%s\n' "$!" >"$SVC/run/receiver.pid"
HOOKS="https://127.0.0.1:$RECV_PORT/services/DEMO/LOCAL/webhook"
[[ -n ${MLOPS_SLACK_WEBHOOK_URLS:-} ]] && HOOKS="$HOOKS,$MLOPS_SLACK_WEBHOOK_URLS"
# the demo's settings on top of the defaults deploy/services.sh writes
cat >"$SVC/conf/trainer.conf" <<EOF
metrics_port = 9102
registry_url = http://127.0.0.1:8080
registry_token_file = $SVC/secrets/trainer_token
spec = $SPEC
alias = challenger
# requests of this run only: an earlier demo may have left one unanswered
group_id = mlops-trainer-demo-${RUN##*/}
kafka.auto.offset.reset = latest
EOF
cat >"$SVC/conf/monitor.conf" <<EOF
metrics_port = 9104
registry_url = http://127.0.0.1:8080
registry_token_file = $SVC/secrets/reader_token
# windows of 2000 events; the demo's drift moves about a third of the features
windows = 2000
drift_share = 0.3
# state of this run only, so an earlier demo's alerts and retrain cooldown do not apply
alert_state_key = mlops:demo:${RUN##*/}:alerts
group_id = mlops-monitor-demo-${RUN##*/}
# this run's events only (a new group would otherwise start at the oldest features)
kafka.auto.offset.reset = latest
retrain_latest = 20000
EOF
cat >"$SVC/conf/notify.conf" <<EOF
metrics_port = 9105
slack_webhook_urls = $HOOKS
slack_ca_file = $RUN/ca.pem
group_id = mlops-notify-demo-${RUN##*/}
group_wait_ms = 2000
kafka.auto.offset.reset = latest
EOF
"$ROOT/deploy/services.sh" up registry ingest trainer monitor notify | sed 's/^/  /'
step_done

# -------------------------------------------------------------------------------- 1. events
step 1 "$ROWS synthetic attrition events and their labels to events.raw and labels"
declare -A F0=()
while IFS== read -r p e; do F0[$p]=$e; done < <(ends features)
f0=$(metric_sum 9101 mlops_ingest_features_total)
d0=$(metric_sum 9101 mlops_ingest_dlq_total)
"$M" datagen attrition --rows "$ROWS" --seed "$SEED0" --topic events.raw --step-s 60 \
    --start 2025-01-01T00:00:00Z --bad-fraction 0.01 2>&1 | tr '\r' '\n' | grep -v '^$' | tail -n 1 |
    sed 's/^/  /'
step_done

# -------------------------------------------------------------------------------- 2. ingest
step 2 "mlops-ingest cleans them: features, and the DLQ by reason"
placed() {
    f=$(($(metric_sum 9101 mlops_ingest_features_total) - f0))
    d=$(($(metric_sum 9101 mlops_ingest_dlq_total) - d0))
    show "$(printf '  ingest: %d features, %d to the DLQ (%d%%)' "$f" "$d" $(((f + d) * 100 / ROWS)))"
    ((f + d >= ROWS))
}
wait_until 600 "ingest to place every event" placed
shown_done
FEATURES=$f DLQ=$d
curl -fsS http://127.0.0.1:9101/metrics | awk '/^mlops_ingest_dlq_total/ && $2 > 0 {
    r = $1; sub(/.*reason="/, "", r); sub(/".*/, "", r); printf "    DLQ %-18s %d\n", r, $2 }'
printf '  (each refused event is on events.dlq with its reason and bytes: %s dlq list --since -1h)\n' "$M"
step_done

# --------------------------------------------------------------------------------- 3. train
step 3 "mlops-trainer: GBDT and logistic regression on one exact offset range of features"
RANGE=''
while IFS== read -r p e; do
    RANGE+="${RANGE:+,}features:$p:${F0[$p]:-0}-$e"
done < <(ends features)
printf '  range: %s\n' "$RANGE"
declare -A VERSION=() AUC=()
for algo in gbdt logreg; do
    out=$("$M" train "$MODEL" --range "$RANGE" --algo "$algo" --seed 1 \
        --reason "demo: first model ($algo)" --wait --timeout-s 900 2>"$RUN/train-$algo.err") ||
        {
            cat "$RUN/train-$algo.err" >&2
            die "training $algo failed (trainer log: $SVC/logs/trainer.log)"
        }
    sed "s/^/  $algo: /" <<<"$out"
    VERSION[$algo]=$(sed -n 's/.* version \([0-9]*\) registered.*/\1/p' <<<"$out")
done
card=$(card_json)
for algo in gbdt logreg; do
    AUC[$algo]=$(py_json "[v['metrics']['auc'] for v in d['versions'] if v['version'] == ${VERSION[$algo]}][0]" <<<"$card")
done
best=gbdt
if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" \
    "${AUC[logreg]}" "${AUC[gbdt]}"; then
    best=logreg
fi
CHAMPION=${VERSION[$best]}
printf '  held-out AUC: gbdt %.4f (v%s), logreg %.4f (v%s): the champion is %s v%s\n' \
    "${AUC[gbdt]}" "${VERSION[gbdt]}" "${AUC[logreg]}" "${VERSION[logreg]}" "$best" "$CHAMPION"
"$M" models promote "$MODEL" "$CHAMPION" --alias champion | sed 's/^/  /'
"$M" models card "$MODEL" | sed 's/^/  | /'
step_done

# --------------------------------------------------------------------------------- 4. score
step 4 "mlops-scorer streams predictions with the champion (Redis online features)"
p0=$(metric_sum 9103 mlops_scorer_events_total)
m0=$(metric_sum 9104 mlops_monitor_predictions_total)
ts=$(date +%s%N)
"$ROOT/deploy/services.sh" up scorer | sed 's/^/  /'
scored() {
    p=$(($(metric_sum 9103 mlops_scorer_events_total) - p0))
    lag=$(metric_sum 9103 mlops_scorer_lag)
    show "$(printf '  scorer: %d predictions, lag %d' "$p" "$lag")"
    ((p >= FEATURES && lag == 0))
}
wait_until 600 "the scorer to score the features" scored
shown_done
secs=$(awk -v a="$ts" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
SCORE_RATE=$(awk -v n="$p" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
printf '  %d events in %s s from the scorer'"'"'s start: %s events/s (one process, exactly-once)\n' \
    "$p" "$secs" "$SCORE_RATE"
for stage in predict redis; do
    printf '  %-8s p50 %s ms, p99 %s ms (per %s)\n' "$stage" \
        "$(hist_quantile 9103 mlops_scorer_stage_seconds 0.5 "stage=\"$stage\"")" \
        "$(hist_quantile 9103 mlops_scorer_stage_seconds 0.99 "stage=\"$stage\"")" \
        "$([[ $stage == redis ]] && echo batch || echo event)"
done
monitored() { (($(metric_sum 9104 mlops_monitor_predictions_total) - m0 >= p)); }
wait_until 600 "the monitor to read the predictions" monitored
printf '  mlops-monitor has read them too (prediction drift, realized performance with the labels)\n'
BATCH_P50=$(hist_quantile 9103 mlops_scorer_batch_seconds 0.5)
BATCH_P99=$(hist_quantile 9103 mlops_scorer_batch_seconds 0.99)
printf '  batch    p50 %s ms, p99 %s ms (decode, enrich, score, produce of one batch)\n' \
    "$BATCH_P50" "$BATCH_P99"
step_done

# --------------------------------------------------------------------------------- 5. drift
step 5 "drift: $DRIFT_ROWS events whose inputs moved (covariate) and whose meaning changed (concept)"
r0=$(metric_sum 9104 mlops_monitor_retrain_requests_total)
"$M" datagen attrition --rows "$DRIFT_ROWS" --seed $((SEED0 + 1)) --topic events.raw --step-s 60 \
    --start 2026-01-01T00:00:00Z --drift covariate,concept --drift-at 0 --bad-fraction 0.01 2>&1 |
    tr '\r' '\n' | grep -v '^$' | tail -n 1 | sed 's/^/  /'
alerted() { grep -q "dataset_drift.*version=\`$CHAMPION\`" "$SVC/logs/receiver.log" 2>/dev/null; }
wait_until 180 "the dataset-drift alert at the webhook receiver" alerted
printf '  the monitor: drift per feature in its latest window against the champion'"'"'s reference\n'
{ "$M" drift status --model "$MODEL" 2>&1 || true; } | head -n 16 | sed 's/^/    /'
printf '  the local Slack-compatible receiver got (HTTPS, the demo'"'"'s CA):\n'
grep 'slack>' "$SVC/logs/receiver.log" | grep -A4 -m1 "dataset_drift.*version=\`$CHAMPION\`" |
    sed 's/^/    /' || true
requested() { (($(metric_sum 9104 mlops_monitor_retrain_requests_total) > r0)); }
wait_until 60 "the monitor's retrain request" requested
printf '  the monitor filed a retrain request on train.requests (the latest 20000 labelled events):\n'
grep '"retrain requested' "$SVC/logs/monitor.log" | tail -n 1 | sed 's/^/    /' | cut -c1-220
challenger() {
    CHALLENGER=$(card_json | py_json "d['deployment'].get('challenger')")
    [[ -n $CHALLENGER && $CHALLENGER -gt ${VERSION[gbdt]} && $CHALLENGER -gt ${VERSION[logreg]} ]]
}
wait_until 600 "mlops-trainer to register the retrained model as challenger" challenger
card=$(card_json)
NEW_AUC=$(py_json "[v['metrics']['auc'] for v in d['versions'] if v['version'] == $CHALLENGER][0]" <<<"$card")
printf '  mlops-trainer answered it: v%s registered as challenger (held-out AUC on post-drift data %.4f)\n' \
    "$CHALLENGER" "$NEW_AUC"
step_done

# -------------------------------------------------------------------------------- 6. canary
step 6 "canary: v$CHALLENGER on $(awk -v s="$CANARY_SHARE" 'BEGIN { print s * 100 }') % of the entities, then promotion and a rollback"
"$M" models deploy "$MODEL" --canary-share "$CANARY_SHARE" | sed 's/^/  /'
swapped() { (($(metric_sum 9103 mlops_scorer_predictions_total 'role="challenger"') > 0 ||
    $(metric_sum 9103 mlops_scorer_model_swaps_total) > 0)); }
wait_until 60 "the scorer to load the challenger" swapped
c0=$(metric_sum 9103 mlops_scorer_events_total)
"$M" datagen attrition --rows "$CANARY_ROWS" --seed $((SEED0 + 2)) --topic events.raw \
    --step-s 60 --start 2026-03-01T00:00:00Z --drift covariate,concept --drift-at 0 2>&1 |
    tr '\r' '\n' | grep -v '^$' | tail -n 1 | sed 's/^/  /'
canaried() {
    p=$(($(metric_sum 9103 mlops_scorer_events_total) - c0))
    ((p >= CANARY_ROWS * 95 / 100 && $(metric_sum 9103 mlops_scorer_lag) == 0))
}
wait_until 300 "the scorer to score the canary events" canaried
sleep 3 # the monitor joins the last predictions with their labels
perf=$(curl -fsS "http://127.0.0.1:9104/api/v1/drift?model=$MODEL" 2>/dev/null || echo '{}')
# per role: the AUC of the latest window of 2000 labelled predictions, and labelled in all
realized() {
    python3 -c '
import json, sys
d = json.load(sys.stdin)
out = {}
for m in d.get("models", []):
    for v in m.get("variants", []):
        ws = [w["performance"] for w in v.get("windows", []) if w["performance"]["auc"] is not None]
        out[v["role"]] = ("%.4f" % ws[0]["auc"] if ws else "nan", v.get("labelled", 0))
print(*out.get("champion", ("nan", 0)), *out.get("challenger", ("nan", 0)))'
}
read -r CH_AUC CH_N CA_AUC CA_N < <(realized <<<"$perf")
printf '  realized AUC on labelled post-drift events (monitor, latest window of 2000):\n'
printf '    champion   v%-4s AUC %s (%s labelled predictions in all)\n' "$CHAMPION" "$CH_AUC" "$CH_N"
printf '    challenger v%-4s AUC %s (%s labelled predictions in all)\n' "$CHALLENGER" "$CA_AUC" "$CA_N"
if python3 -c "import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if b > a else 1)" "$CH_AUC" "$CA_AUC"; then
    printf '  the challenger wins on realized performance: promote it\n'
    "$M" models promote "$MODEL" "$CHALLENGER" --alias champion | sed 's/^/  /'
    "$M" models deploy "$MODEL" --canary-share 0 | sed 's/^/  /'
    printf '  ... and roll back with one command (say the business asks for the old model):\n'
    "$M" models rollback "$MODEL" --alias champion | sed 's/^/  /'
else
    warn "the challenger did not beat the champion on realized AUC: not promoted"
fi
printf '  alias history (who moved which alias when, and why):\n'
"$M" models history "$MODEL" 2>&1 | awk 'NF == 0 { exit } { print }' | tail -n 9 | sed 's/^/    /' 
step_done

# -------------------------------------------------------------------------------- summary
printf '\n== done in %s\n\n' "$(elapsed "$t0")"
printf '  %-4s %-52s %s\n' step what took
printf '  %-4s %-52s %s\n' 0 "stack status, services up (supervised)" "${TOOK[0]}"
printf '  %-4s %-52s %s\n' 1 "$ROWS events + labels produced" "${TOOK[1]}"
printf '  %-4s %-52s %s\n' 2 "ingest: $FEATURES features, $DLQ to the DLQ" "${TOOK[2]}"
printf '  %-4s %-52s %s\n' 3 "trained gbdt v${VERSION[gbdt]}, logreg v${VERSION[logreg]}; champion v$CHAMPION" "${TOOK[3]}"
printf '  %-4s %-52s %s\n' 4 "scored at $SCORE_RATE events/s, batch p99 $BATCH_P99 ms" "${TOOK[4]}"
printf '  %-4s %-52s %s\n' 5 "drift alert delivered; retrained v$CHALLENGER" "${TOOK[5]}"
printf '  %-4s %-52s %s\n' 6 "canary: AUC $CH_AUC (v$CHAMPION) vs $CA_AUC (v$CHALLENGER)" "${TOOK[6]}"
"$ROOT/deploy/services.sh" status | sed 's/^/  /' || true
cat <<MSG

Everything of this run is in $RUN (service logs: $SVC/logs).
The services keep running; next:
  $M models card $MODEL          versions, gates, metrics, deployment
  $M drift status                 the monitor's drift table
  $M dlq list --since -1h         what ingest refused, and why
  MLOPS_SERVICES_DIR=$SVC deploy/services.sh status
  curl -s 127.0.0.1:9103/metrics  (scorer; ingest 9101, trainer 9102, monitor 9104, notify 9105)
make demo-down stops the services and the stack.
MSG
