#!/usr/bin/env bash
# The suite's services as supervised local processes: mlops-registry, -ingest, -trainer,
# -scorer, -monitor and the Slack notifier mlops-notify. A supervisor per service restarts
# it when it dies (backoff 1 s doubling to 30 s, reset after a minute of uptime).
#
#   deploy/services.sh up      [NAME ...]            start (idempotent), wait for /ready
#   deploy/services.sh down    [NAME ...]            SIGTERM (drain), SIGKILL after the timeout
#   deploy/services.sh restart [NAME ...]            down, then up
#   deploy/services.sh status  [NAME ...]            health, version, pid, restarts, lag, counts
#   deploy/services.sh logs    [NAME ...] [-f] [-n LINES]
#
# NAME: registry ingest trainer scorer monitor notify (default: all, in that order).
# Each service reads $SVC/conf/NAME.conf (key = value, the keys of `mlops-NAME --help`),
# written with the local stack's defaults on the first 'up' and yours to edit after;
# the environment (MLOPS_<KEY>) still overrides it. Its log is $SVC/logs/NAME.log.
# 'up' also makes the registry tokens the default configs name ($SVC/secrets, mode 0600):
# a trainer token for mlops-trainer, a reader token for the scorer and the monitor.
#
# Environment: MLOPS_SERVICES_DIR ($SVC, default $STATE/services), MLOPS_BUILD_DIR
# (<repo>/build) or MLOPS_BIN_DIR (installed binaries), MLOPS_STOP_TIMEOUT (40 s),
# MLOPS_START_TIMEOUT (60 s), MLOPS_SLACK_WEBHOOK_URLS (the notifier's webhooks).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

LOG_PREFIX=services
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

readonly ALL_SERVICES=(registry ingest trainer scorer monitor notify)
declare -A DEFAULT_PORT=([registry]=8080 [ingest]=9101 [trainer]=9102 [scorer]=9103
    [monitor]=9104 [notify]=9105)
declare -A BIN_PATH=([registry]=registry/mlops-registry [ingest]=ingest/mlops-ingest
    [trainer]=trainer/mlops-trainer [scorer]=scorer/mlops-scorer
    [monitor]=monitor/mlops-monitor [notify]=monitor/mlops-notify)
STOP_TIMEOUT=${MLOPS_STOP_TIMEOUT:-40}
START_TIMEOUT=${MLOPS_START_TIMEOUT:-60}

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 && !/shellcheck/ { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

init_paths() {
    resolve_state
    SVC=${MLOPS_SERVICES_DIR:-$STATE/services}
    mkdir -p -- "$SVC/conf" "$SVC/logs" "$SVC/run" "$SVC/secrets"
    chmod 700 "$SVC/secrets"
    SVC=$(cd -- "$SVC" && pwd -P)
}

bin_of() { # bin_of NAME: the service's executable
    if [[ -n ${MLOPS_BIN_DIR:-} ]]; then
        printf '%s/mlops-%s\n' "$MLOPS_BIN_DIR" "$1"
    else
        printf '%s/services/%s\n' "${MLOPS_BUILD_DIR:-$REPO_ROOT/build}" "${BIN_PATH[$1]}"
    fi
}
mlopsctl() {
    if [[ -n ${MLOPS_BIN_DIR:-} ]]; then
        "$MLOPS_BIN_DIR/mlopsctl" "$@"
    else
        "${MLOPS_BUILD_DIR:-$REPO_ROOT/build}/cli/mlopsctl" "$@"
    fi
}

conf_of() { printf '%s/conf/%s.conf\n' "$SVC" "$1"; }
conf_get() { # conf_get NAME KEY: the key's value in the service's conf file ('' if unset)
    awk -v k="$2" -F= '{ key = $1; gsub(/[ \t]/, "", key) }
        key == k { v = substr($0, index($0, "=") + 1); gsub(/^[ \t]+|[ \t]+$/, "", v); val = v }
        END { print val }' "$(conf_of "$1")" 2>/dev/null
}
port_of() {
    local p
    p=$(conf_get "$1" metrics_port)
    printf '%s\n' "${p:-${DEFAULT_PORT[$1]}}"
}
registry_url() {
    local p
    p=$(conf_get registry metrics_port)
    printf 'http://127.0.0.1:%s\n' "${p:-${DEFAULT_PORT[registry]}}"
}

# write_conf NAME: the first-start configuration file (kept if it exists).
write_conf() {
    local name=$1 f
    f=$(conf_of "$name")
    [[ -e $f ]] && return 0
    {
        printf '# mlops-%s settings (every key: mlops-%s --help). Written by deploy/services.sh\n' \
            "$name" "$name"
        printf '# on the first up; edit freely, then: deploy/services.sh restart %s\n' "$name"
        printf 'metrics_port = %s\n' "${DEFAULT_PORT[$name]}"
        case $name in
            registry) ;;
            ingest) printf 'spec = %s\n' "$REPO_ROOT/examples/attrition/spec.json" ;;
            trainer)
                printf 'registry_url = %s\nregistry_token_file = %s\n' "$(registry_url)" \
                    "$SVC/secrets/trainer_token"
                ;;
            scorer)
                printf 'registry_url = %s\nregistry_token_file = %s\nmodel_name = attrition\n' \
                    "$(registry_url)" "$SVC/secrets/reader_token"
                ;;
            monitor)
                printf 'registry_url = %s\nregistry_token_file = %s\n' "$(registry_url)" \
                    "$SVC/secrets/reader_token"
                ;;
            notify)
                printf '# slack_webhook_urls: from MLOPS_SLACK_WEBHOOK_URLS, or set it here\n'
                ;;
        esac
    } >"$f.tmp"
    mv -f -- "$f.tmp" "$f"
}

# ensure_token ROLE FILE: a registry token with ROLE in FILE; a new one when the file is
# missing or the registry no longer knows it (a wiped database).
ensure_token() {
    local role=$1 file=$2 url code tok
    url=$(registry_url)
    if [[ -s $file ]]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat -- "$file")" \
            "$url/api/2.0/mlflow/registered-models/search?max_results=1" || true)
        [[ $code == 200 ]] && return 0
        say "$role token in $file is refused by the registry (HTTP $code): making a new one"
    fi
    tok=$(mlopsctl token create --registry-url "$url" --role "$role" \
        --name "services-$role-$(date +%s)" | tail -n 1) ||
        die "cannot create a $role token (mlopsctl token create)"
    (
        umask 077
        printf '%s\n' "$tok" >"$file.tmp"
    )
    mv -f -- "$file.tmp" "$file"
}

# ---------------------------------------------------------------------- supervision

sup_pidfile() { printf '%s/run/%s.supervisor.pid\n' "$SVC" "$1"; }
child_pidfile() { printf '%s/run/%s.pid\n' "$SVC" "$1"; }
restarts_file() { printf '%s/run/%s.restarts\n' "$SVC" "$1"; }

alive_pid() { # alive_pid FILE: prints the pid in FILE if that process is alive
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

sup_note() { # sup_note LOG TEXT: a supervisor line in the service's log, as JSON
    printf '{"ts":"%s","level":"%s","service":"supervisor","msg":"%s"}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$2" "$3" >>"$1"
}

# supervise NAME: runs the service, restarts it when it exits, until SIGTERM. On SIGTERM
# it forwards the signal (the service drains) and exits with the service.
supervise() {
    local name=$1 bin conf log child='' rc started backoff=1 n=0 stopping=0
    bin=$(bin_of "$name")
    conf=$(conf_of "$name")
    log=$SVC/logs/$name.log
    trap 'stopping=1; [[ -n $child ]] && kill -TERM "$child" 2>/dev/null' TERM INT
    trap '' HUP
    printf '%s\n' 0 >"$(restarts_file "$name")"
    while :; do
        started=$SECONDS
        "$bin" --config "$conf" </dev/null >>"$log" 2>&1 9>&- &
        child=$!
        printf '%s\n' "$child" >"$(child_pidfile "$name")"
        rc=0
        wait "$child" || rc=$?
        # a trapped signal interrupts wait: wait again until the service has exited
        while kill -0 "$child" 2>/dev/null; do
            rc=0
            wait "$child" || rc=$?
        done
        child=''
        rm -f -- "$(child_pidfile "$name")"
        if ((stopping)); then
            sup_note "$log" info "mlops-$name exited with status $rc after SIGTERM; supervisor stops"
            exit 0
        fi
        if ((rc == 2)); then # MLOPS_EXIT_USAGE: starting it again would fail the same way
            sup_note "$log" error "mlops-$name refused its configuration (status 2); not restarting: fix $conf, then deploy/services.sh up $name"
            exit 1
        fi
        n=$((n + 1))
        printf '%s\n' "$n" >"$(restarts_file "$name")"
        ((SECONDS - started >= 60)) && backoff=1
        if ((rc > 128)); then
            sup_note "$log" warn "mlops-$name killed by signal $((rc - 128)); restart $n in $backoff s"
        else
            sup_note "$log" warn "mlops-$name exited with status $rc; restart $n in $backoff s"
        fi
        sleep "$backoff" &
        wait $! 2>/dev/null || true
        ((stopping)) && exit 0
        backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
    done
}

wait_ready() { # wait_ready NAME
    local name=$1 port t0=$SECONDS
    port=$(port_of "$name")
    while ! curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/ready" 2>/dev/null; do
        if ! alive_pid "$(sup_pidfile "$name")" >/dev/null; then
            tail -n 15 -- "$SVC/logs/$name.log" >&2 || true
            die "mlops-$name: its supervisor exited (log: $SVC/logs/$name.log)"
        fi
        # a scorer that follows the registry cannot serve before the model has a champion:
        # the supervisor starts it again (backoff to 30 s) until one is promoted
        if [[ $name == scorer ]] && ((SECONDS - t0 >= 3)) &&
            tail -c "+$((LOG_START + 1))" -- "$SVC/logs/$name.log" | grep -q 'no servable version behind'; then
            say "scorer: no champion of '$(conf_get scorer model_name)' yet; its supervisor retries (every 30 s at most) until one is promoted (mlopsctl models promote NAME VERSION --alias champion)"
            return 1
        fi
        if ((SECONDS - t0 >= START_TIMEOUT)); then
            tail -n 15 -- "$SVC/logs/$name.log" >&2 || true
            die "mlops-$name: not ready on 127.0.0.1:$port after ${START_TIMEOUT}s (log: $SVC/logs/$name.log)"
        fi
        sleep 0.2
    done
}

svc_up() {
    local name=$1 bin pid port
    write_conf "$name"
    if pid=$(alive_pid "$(sup_pidfile "$name")"); then
        say "$name: already supervised (supervisor pid $pid)"
        return 0
    fi
    if [[ $name == notify && -z ${MLOPS_SLACK_WEBHOOK_URLS:-} && -z $(conf_get notify slack_webhook_urls) ]]; then
        say "notify: not started: no Slack webhook (set MLOPS_SLACK_WEBHOOK_URLS or slack_webhook_urls in $(conf_of notify))"
        return 0
    fi
    bin=$(bin_of "$name")
    [[ -x $bin ]] || die "$bin is not built (make build), or set MLOPS_BIN_DIR"
    port=$(port_of "$name")
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "$name: port 127.0.0.1:$port is taken by another process (ss -ltnp; or set metrics_port in $(conf_of "$name"))"
    fi
    # the tokens this folder makes: only for a config that reads one from $SVC/secrets
    local tf
    tf=$(conf_get "$name" registry_token_file)
    case $tf in
        "$SVC/secrets/trainer_token") ensure_token trainer "$tf" ;;
        "$SVC/secrets/reader_token") ensure_token reader "$tf" ;;
    esac
    printf '\n' >>"$SVC/logs/$name.log"
    LOG_START=$(stat -c %s -- "$SVC/logs/$name.log")
    sup_note "$SVC/logs/$name.log" info "deploy/services.sh: starting mlops-$name"
    setsid "${BASH_SOURCE[0]}" _supervise "$name" </dev/null >>"$SVC/logs/$name.log" 2>&1 9>&- &
    printf '%s\n' "$!" >"$(sup_pidfile "$name")"
    wait_ready "$name" || return 0
    say "$name: ready on 127.0.0.1:$port (pid $(cat -- "$(child_pidfile "$name")" 2>/dev/null || echo ?), log $SVC/logs/$name.log)"
}

svc_down() {
    local name=$1 sup child t0
    sup=$(alive_pid "$(sup_pidfile "$name")") || sup=''
    child=$(alive_pid "$(child_pidfile "$name")") || child=''
    if [[ -z $sup && -z $child ]]; then
        rm -f -- "$(sup_pidfile "$name")" "$(child_pidfile "$name")"
        return 0
    fi
    if [[ -n $sup ]]; then kill -TERM "$sup" 2>/dev/null || true; fi
    if [[ -z $sup && -n $child ]]; then kill -TERM "$child" 2>/dev/null || true; fi
    t0=$SECONDS
    while { [[ -n $sup ]] && kill -0 "$sup" 2>/dev/null; } ||
        { [[ -n $child ]] && kill -0 "$child" 2>/dev/null; }; do
        if ((SECONDS - t0 >= STOP_TIMEOUT)); then
            warn "$name: still running after ${STOP_TIMEOUT}s: SIGKILL"
            [[ -n $child ]] && kill -KILL "$child" 2>/dev/null
            [[ -n $sup ]] && kill -KILL "$sup" 2>/dev/null
            break
        fi
        sleep 0.1
    done
    rm -f -- "$(sup_pidfile "$name")" "$(child_pidfile "$name")"
    say "$name: stopped ($((SECONDS - t0)) s)"
}

# metric_of PORT NAME: the sum of a metric over its label sets ('-' if absent).
metric_of() {
    printf '%s\n' "$METRICS" | awk -v m="$2" '
        index($1, m "{") == 1 || $1 == m { v += $2; seen = 1 }
        END { if (seen) printf "%.0f\n", v; else print "-" }'
}

svc_status() {
    local name=$1 port health state version pid restarts lag key down
    port=$(port_of "$name")
    pid=$(alive_pid "$(child_pidfile "$name")") || pid=-
    restarts=$(cat -- "$(restarts_file "$name")" 2>/dev/null || echo -)
    down=starting # supervised, not answering (starting, or waiting to be restarted)
    if ! alive_pid "$(sup_pidfile "$name")" >/dev/null; then
        restarts=-
        down=stopped
    fi
    health=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null) || health=''
    if [[ -z $health ]]; then
        printf '%-9s %-10s %-9s %-7s %-9s %-8s %s\n' "$name" "$down" - "$pid" "$restarts" - \
            "127.0.0.1:$port"
        return 1
    fi
    state=$(sed -n 's/.*"state": *"\([^"]*\)".*/\1/p' <<<"$health")
    version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' <<<"$health")
    METRICS=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null || true)
    lag=-
    case $name in
        ingest)
            lag=$(metric_of "$port" mlops_ingest_lag)
            key="features $(metric_of "$port" mlops_ingest_features_total), dlq $(metric_of "$port" mlops_ingest_dlq_total)"
            ;;
        scorer)
            lag=$(metric_of "$port" mlops_scorer_lag)
            key="events $(metric_of "$port" mlops_scorer_events_total), predictions $(metric_of "$port" mlops_scorer_predictions_total), degraded $(metric_of "$port" mlops_scorer_degraded_total)"
            ;;
        trainer)
            key="requests $(metric_of "$port" mlops_trainer_requests_total), last version $(metric_of "$port" mlops_trainer_last_version), busy $(metric_of "$port" mlops_trainer_busy)"
            ;;
        monitor)
            key="records $(metric_of "$port" mlops_monitor_records_total), alerts $(metric_of "$port" mlops_monitor_alerts_total), retrain requests $(metric_of "$port" mlops_monitor_retrain_requests_total)"
            ;;
        notify)
            key="alerts sent $(metric_of "$port" mlops_notify_alerts_sent_total), firing $(metric_of "$port" mlops_notify_firing), queue $(metric_of "$port" mlops_notify_queue)"
            ;;
        registry)
            key="http requests $(metric_of "$port" mlops_http_requests_total), writes $(metric_of "$port" mlops_registry_writes_total), outbox published $(metric_of "$port" mlops_registry_outbox_published_total)"
            ;;
    esac
    printf '%-9s %-10s %-9s %-7s %-9s %-8s %s\n' "$name" "${state:-?}" "${version:-?}" "$pid" \
        "$restarts" "$lag" "127.0.0.1:$port  $key"
    [[ $state == ready || $state == running || $state == up ]]
}

# -------------------------------------------------------------------------- commands

cmd_up() {
    local name start=$SECONDS
    with_lock services
    for name in "$@"; do svc_up "$name"; done
    say "up: $* ($((SECONDS - start)) s); status: deploy/services.sh status"
}

cmd_down() {
    local i
    with_lock services
    for ((i = $# ; i >= 1; i--)); do svc_down "${!i}"; done
}

cmd_status() {
    local name rc=0
    printf '%-9s %-10s %-9s %-7s %-9s %-8s %s\n' service state version pid restarts lag \
        "endpoint  key counters"
    for name in "$@"; do svc_status "$name" || rc=1; done
    return "$rc"
}

cmd_logs() {
    local follow=0 lines=50 names=() files=() n
    while (($#)); do
        case $1 in
            -f | --follow) follow=1 ;;
            -n)
                [[ ${2:-} =~ ^[0-9]+$ ]] || die "logs: -n needs a number"
                lines=$2
                shift
                ;;
            *)
                is_service "$1" || die "logs: unknown service '$1' (${ALL_SERVICES[*]})"
                names+=("$1")
                ;;
        esac
        shift
    done
    ((${#names[@]})) || names=("${ALL_SERVICES[@]}")
    for n in "${names[@]}"; do [[ -e $SVC/logs/$n.log ]] && files+=("$SVC/logs/$n.log"); done
    ((${#files[@]})) || die "logs: no logs yet in $SVC/logs"
    if ((follow)); then exec tail -n "$lines" -F -- "${files[@]}"; fi
    tail -n "$lines" -- "${files[@]}"
}

is_service() {
    local s
    for s in "${ALL_SERVICES[@]}"; do [[ $s == "$1" ]] && return 0; done
    return 1
}

main() {
    local cmd=${1:-} names=() n a
    (($#)) && shift
    case $cmd in
        up | down | restart | status | logs) ;;
        _supervise)
            init_paths
            supervise "$1"
            return
            ;;
        -h | --help | help)
            usage
            return 0
            ;;
        *)
            usage >&2
            die "unknown command '${cmd}'"
            ;;
    esac
    init_paths
    if [[ $cmd == logs ]]; then
        cmd_logs "$@"
        return
    fi
    for n in "$@"; do
        is_service "$n" || die "unknown service '$n' (${ALL_SERVICES[*]})"
    done
    # always in the suite's order, whatever the order given
    for n in "${ALL_SERVICES[@]}"; do
        if (($# == 0)); then
            names+=("$n")
        else
            for a in "$@"; do [[ $a == "$n" ]] && names+=("$n") && break; done
        fi
    done
    if [[ $cmd == restart ]]; then
        cmd_down "${names[@]}"
        exec 9>&-
        cmd_up "${names[@]}"
        return
    fi
    "cmd_$cmd" "${names[@]}"
}

main "$@"
