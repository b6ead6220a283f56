# shellcheck shell=bash
# Shared by deploy/setup.sh and deploy/stack.sh (sourced, not run).
#
# Sets DEPLOY_DIR, REPO_ROOT and STATE, and defines the message helpers.
# STATE is ${MLOPS_STATE_DIR:-<repo root>/.state}, made absolute.

DEPLOY_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(dirname -- "$DEPLOY_DIR")

# Prefix of every message; each script sets its own before sourcing.
: "${LOG_PREFIX:=deploy}"

say() { printf '%s: %s\n' "$LOG_PREFIX" "$*"; }
warn() { printf '%s: warning: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$LOG_PREFIX" "$*" >&2
    exit 1
}

# resolve_state: sets STATE to an absolute path and creates it.
resolve_state() {
    local want=${MLOPS_STATE_DIR:-$REPO_ROOT/.state}
    mkdir -p -- "$want" || die "cannot create the state folder $want"
    STATE=$(cd -- "$want" && pwd -P)
    # The state path ends up in Java class paths (':' separates entries), in Kafka's
    # comma-separated log.dirs and in Postgres settings: keep it plain.
    case $STATE in
        *[[:space:],:\;\'\"\\]*)
            die "state folder '$STATE' contains a space, comma, colon, quote or backslash; set MLOPS_STATE_DIR to a plain path"
            ;;
    esac
    export MLOPS_STATE_DIR=$STATE
}

# sha256_of FILE: prints the file's sha256 in hex.
sha256_of() {
    local sum
    sum=$(sha256sum -- "$1") || die "cannot hash $1"
    printf '%s\n' "${sum%% *}"
}

# with_lock NAME: takes an exclusive lock on $STATE/NAME.lock for the rest of the
# script (fd 9), waiting up to 10 minutes for another run to finish. Every long-lived
# process the script starts must be started with 9>&- so it does not keep the lock.
with_lock() {
    local lock=$STATE/$1.lock
    exec 9>"$lock" || die "cannot open lock file $lock"
    if ! flock -n 9; then
        say "waiting for another $1 run to finish (lock $lock)"
        flock -w 600 9 || die "timed out waiting for lock $lock"
    fi
}
