#!/usr/bin/env bash
# `make demo-down`: stops what `make demo` left running: the services of the latest demo
# run (supervised, under <state>/demo/latest/services), its webhook receiver, the stack.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

LOG_PREFIX=demo-down
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
resolve_state

latest=$STATE/demo/latest
if [[ -d $latest/services ]]; then
    svc=$(cd -- "$latest/services" && pwd -P)
    MLOPS_SERVICES_DIR=$svc "$DEPLOY_DIR/services.sh" down
    if [[ -s $svc/run/receiver.pid ]]; then
        pid=$(<"$svc/run/receiver.pid")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            say "webhook receiver stopped (pid $pid)"
        fi
        rm -f -- "$svc/run/receiver.pid"
    fi
else
    say "no demo run under $STATE/demo"
fi
"$DEPLOY_DIR/stack.sh" down
