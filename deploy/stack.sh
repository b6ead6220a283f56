#!/usr/bin/env bash
# The project's local stack: Apache Kafka 3.9 (one KRaft node), PostgreSQL 15 and Redis 7,
# on 127.0.0.1 only, with their data under $STATE (see pg_paths for the one exception).
#
#   deploy/stack.sh up     [kafka|postgres|redis ...]   start (idempotent) and wait until ready;
#                                                       kafka: also create deploy/topics.conf
#   deploy/stack.sh down   [kafka|postgres|redis ...]   stop by recorded pid
#   deploy/stack.sh status [kafka|postgres|redis ...]   one line each; exit 1 if any is down
#   deploy/stack.sh logs   [kafka|postgres|redis ...] [-f] [-n LINES]   show (or follow) the logs
#   deploy/stack.sh wipe   [kafka|postgres|redis ...]   delete the data of stopped components
#   deploy/stack.sh env                                 print export lines for the services
#   --services   up, status: also the suite's services, supervised (deploy/services.sh);
#                down stops supervised services first in any case; down --services: only them
#
# Needs `deploy/setup.sh` first (packages and Kafka jars).
# STATE is ${MLOPS_STATE_DIR:-<repo root>/.state}. Other environment:
#   MLOPS_KAFKA_PORT (9092), MLOPS_KAFKA_CONTROLLER_PORT (9093), MLOPS_PG_PORT (5433),
#   MLOPS_REDIS_PORT (6380), MLOPS_STOP_TIMEOUT (30 s before SIGKILL),
#   MLOPS_START_TIMEOUT (60 s per component), MLOPS_KAFKA_HEAP (-Xms256m -Xmx512m),
#   MLOPS_KAFKA_LIBS (the jars, $STATE/kafka-libs: a second broker can share another
#   state folder's), MLOPS_KAFKA_TOPICS (deploy/topics.conf: the topics 'up' creates;
#   /dev/null for none, as a test's private broker wants).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

LOG_PREFIX=stack
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

readonly HOST=127.0.0.1
KAFKA_PORT=${MLOPS_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${MLOPS_KAFKA_CONTROLLER_PORT:-9093}
PG_PORT=${MLOPS_PG_PORT:-5433}
REDIS_PORT=${MLOPS_REDIS_PORT:-6380}
STOP_TIMEOUT=${MLOPS_STOP_TIMEOUT:-30}
START_TIMEOUT=${MLOPS_START_TIMEOUT:-60}
PG_BIN=${MLOPS_PG_BIN:-/usr/lib/postgresql/15/bin}
readonly PG_USER=mlops PG_DB=mlops
readonly ALL_COMPONENTS=(kafka postgres redis)

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 && !/shellcheck/ { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------------------- helpers

init_paths() {
    resolve_state
    RUN=$STATE/run
    LOGS=$STATE/logs
    SECRETS=$STATE/secrets
    KAFKA_LIBS=${MLOPS_KAFKA_LIBS:-$STATE/kafka-libs}
    KAFKA_DIR=$STATE/kafka
    KAFKA_DATA=$KAFKA_DIR/data
    KAFKA_PROPS=$KAFKA_DIR/server.properties
    KAFKA_PIDFILE=$RUN/kafka.pid
    KAFKA_OUT=$LOGS/kafka.out
    KAFKA_LOG=$LOGS/kafka-server.log
    REDIS_DIR=$STATE/redis
    REDIS_CONF=$REDIS_DIR/redis.conf
    REDIS_PIDFILE=$RUN/redis.pid
    REDIS_LOG=$LOGS/redis.log
    PG_PIDFILE=$RUN/postgres.pid
    PG_LOG=$LOGS/postgres.log
    PG_PASSWORD_FILE=$SECRETS/pg_password
    PG_PASSFILE=$SECRETS/pgpass
    PG_DSN_FILE=$SECRETS/pg_dsn
    local p
    for p in KAFKA_PORT KAFKA_CONTROLLER_PORT PG_PORT REDIS_PORT STOP_TIMEOUT START_TIMEOUT; do
        [[ ${!p} =~ ^[0-9]+$ ]] || die "$p must be a number, not '${!p}'"
    done
}

ensure_dirs() {
    mkdir -p -- "$RUN" "$LOGS" "$KAFKA_DATA" "$REDIS_DIR" "$SECRETS"
    chmod 0700 -- "$SECRETS"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# alive PID: the process exists and is not a zombie.
alive() {
    local stat
    stat=$({ cat "/proc/$1/stat"; } 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# live_pid PIDFILE PATTERN: prints the pid recorded in PIDFILE if that process is alive
# and its command line matches the glob PATTERN (so a recycled pid is never taken for ours).
live_pid() {
    local pid cmd
    [[ -r $1 ]] || return 1
    read -r pid <"$1" 2>/dev/null || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
    alive "$pid" || return 1
    # shellcheck disable=SC2053 # $2 is a glob on purpose
    [[ $cmd == $2 ]] || return 1
    printf '%s\n' "$pid"
}

# tail_log FILE...: the last 20 lines of each file, to stderr.
tail_log() {
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        printf '%s: ---- last 20 lines of %s ----\n' "$LOG_PREFIX" "$f" >&2
        tail -n 20 -- "$f" >&2
    done
}

# fail COMPONENT MESSAGE LOGFILE...: error naming the component and its logs, with their tails.
fail() {
    local comp=$1 msg=$2
    shift 2
    tail_log "$@"
    die "$comp: $msg (log: $*)"
}

# stop_pid COMPONENT PID FIRST_SIGNAL [SECOND_SIGNAL]: signal, wait STOP_TIMEOUT seconds,
# then SECOND_SIGNAL (if given, another 10 s), then SIGKILL.
stop_pid() {
    local comp=$1 pid=$2 sig=$3 sig2=${4:-} waited=0
    say "$comp: stopping (pid $pid, SIG$sig)"
    kill -s "$sig" "$pid" 2>/dev/null || return 0
    while alive "$pid" && ((waited < STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if [[ -n $sig2 ]] && alive "$pid"; then
        warn "$comp: still running after ${STOP_TIMEOUT}s, sending SIG$sig2"
        kill -s "$sig2" "$pid" 2>/dev/null || true
        waited=0
        while alive "$pid" && ((waited < 100)); do
            sleep 0.1
            waited=$((waited + 1))
        done
    fi
    if alive "$pid"; then
        warn "$comp: still running, sending SIGKILL to pid $pid"
        kill -s KILL "$pid" 2>/dev/null || true
        waited=0
        while alive "$pid" && ((waited < 100)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        ! alive "$pid" || die "$comp: pid $pid survived SIGKILL"
    fi
    say "$comp: stopped"
}

need_cmd() {
    command -v "$1" >/dev/null || die "$1 not found: run deploy/setup.sh first"
}

# ------------------------------------------------------------------------------ kafka

# stop_component LABEL PIDFN PIDFILE SIGNAL...: stop the process PIDFN reports (see
# stop_pid for the signals), then forget its pid file.
stop_component() {
    local label=$1 pidfn=$2 pidfile=$3 pid
    shift 3
    if pid=$("$pidfn"); then
        stop_pid "$label" "$pid" "$@"
    else
        say "$label: not running"
    fi
    rm -f -- "$pidfile"
}

# component_state PIDFN PORT: print "running  pid N" (with " (not answering)" when the
# port is closed) or "stopped"; fails when stopped.
component_state() {
    local pid
    if pid=$("$1"); then
        printf 'running  pid %s%s' "$pid" "$(port_open "$2" || printf ' (not answering)')"
    else
        printf 'stopped'
        return 1
    fi
}

kafka_pid() {
    live_pid "$KAFKA_PIDFILE" "*java*kafka.Kafka $KAFKA_PROPS*"
}

# kafka_java MAIN_CLASS ARGS...: runs one of Kafka's tools on the project's class path.
kafka_java() {
    java -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$DEPLOY_DIR/kafka/tools-log4j.properties" \
        -cp "$KAFKA_LIBS/*" "$@" 9>&-
}

kafka_write_config() {
    local tmp=$KAFKA_PROPS.tmp
    cat >"$tmp" <<EOF
# Generated by deploy/stack.sh on every 'up'; edit the script, not this file.
# One combined KRaft node (broker + controller) on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA

# One node: replication factor 1 everywhere, including the internal topics that
# consumer groups and transactions need.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
min.insync.replicas=1
default.replication.factor=1
num.partitions=1

# Topics come from deploy/topics.conf or from the tests, never from a typo.
auto.create.topics.enable=false
delete.topic.enable=true
# No three-second wait before the first rebalance of a new group (tests).
group.initial.rebalance.delay.ms=0
# After a crash (kill -9) the restarted node cannot register until its previous
# registration's session expires (9 s by default); 6 s shortens crash tests.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1500

# Small footprint on a 2-core machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=2097152
log.cleaner.io.buffer.size=262144
log.retention.hours=168
log.retention.check.interval.ms=300000
EOF
    mv -f -- "$tmp" "$KAFKA_PROPS"
}

# kafka_cluster_id: prints the cluster id, made once (22 chars of base64url, Kafka's Uuid form).
kafka_cluster_id() {
    local file=$KAFKA_DIR/cluster.id id
    if [[ -s $file ]]; then
        read -r id <"$file"
    else
        id=-
        while [[ $id == -* ]]; do
            id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        done
        printf '%s\n' "$id" >"$file"
    fi
    printf '%s\n' "$id"
}

kafka_start() {
    local pid
    if pid=$(kafka_pid); then
        say "kafka: already running (pid $pid, $HOST:$KAFKA_PORT)"
        return 0
    fi
    need_cmd java
    need_cmd kcat
    compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null ||
        die "kafka: no Kafka jars in $KAFKA_LIBS: run deploy/setup.sh kafka"
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        ! port_open "$port" ||
            die "kafka: port $HOST:$port is already taken by another process (not the pid in $KAFKA_PIDFILE)"
    done
    kafka_write_config
    if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
        local id
        id=$(kafka_cluster_id)
        say "kafka: formatting storage $KAFKA_DATA (cluster id $id)"
        if ! kafka_java kafka.tools.StorageTool format -t "$id" -c "$KAFKA_PROPS" \
            --ignore-formatted >>"$KAFKA_OUT" 2>&1; then
            fail kafka "formatting the storage failed" "$KAFKA_OUT"
        fi
    fi
    printf '\n==== %s stack.sh: starting kafka\n' "$(date '+%F %T')" >>"$KAFKA_OUT"
    local heap
    read -r -a heap <<<"${MLOPS_KAFKA_HEAP:--Xms256m -Xmx512m}"
    # setsid: own session, so the broker outlives this shell and its terminal.
    setsid java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$DEPLOY_DIR/kafka/log4j.properties" \
        -Dkafka.logs.dir="$LOGS" -Dkafka.log.name=kafka-server \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
        </dev/null >>"$KAFKA_OUT" 2>&1 9>&- &
    printf '%s\n' "$!" >"$KAFKA_PIDFILE"
    say "kafka: started (pid $!), waiting for $HOST:$KAFKA_PORT"
}

# kafka_metadata: kcat's metadata listing (fails if the broker does not answer in 5 s).
kafka_metadata() {
    kcat -L -b "$HOST:$KAFKA_PORT" -m 5 2>/dev/null
}

kafka_wait() {
    local deadline=$((SECONDS + START_TIMEOUT)) md pid
    # By pid only: right after the launch the child may not have exec'd java yet.
    read -r pid <"$KAFKA_PIDFILE" || die "kafka: no pid file $KAFKA_PIDFILE"
    while :; do
        alive "$pid" || fail kafka "the broker exited during start" "$KAFKA_OUT" "$KAFKA_LOG"
        if md=$(kcat -L -b "$HOST:$KAFKA_PORT" -m 2 2>/dev/null) && [[ $md == *" 1 brokers:"* ]]; then
            break
        fi
        ((SECONDS < deadline)) || fail kafka "not ready after ${START_TIMEOUT}s" "$KAFKA_OUT" "$KAFKA_LOG"
        sleep 0.5
    done
    say "kafka: ready on $HOST:$KAFKA_PORT"
}

# kafka_topics: creates the topics of deploy/topics.conf that the broker does not list yet.
kafka_topics() {
    local conf=${MLOPS_KAFKA_TOPICS:-$DEPLOY_DIR/topics.conf} md
    [[ -r $conf ]] || die "kafka: missing $conf"
    md=$(kafka_metadata) || fail kafka "no metadata answer from $HOST:$KAFKA_PORT" "$KAFKA_LOG"
    local -A have=()
    local line name parts
    while IFS= read -r line; do
        if [[ $line =~ ^\ +topic\ \"([^\"]+)\"\ with\ ([0-9]+)\ partitions ]]; then
            have[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        fi
    done <<<"$md"

    local -a todo=()
    local lineno=0 configs extra
    while IFS= read -r line || [[ -n $line ]]; do
        lineno=$((lineno + 1))
        line=${line%%#*}
        read -r name parts configs extra <<<"$line" || true
        [[ -n ${name:-} ]] || continue
        [[ -z ${extra:-} ]] || die "$conf:$lineno: too many fields (name partitions [key=value,...])"
        [[ $name =~ ^[A-Za-z0-9._-]{1,249}$ ]] || die "$conf:$lineno: bad topic name '$name'"
        [[ ${parts:-} =~ ^[1-9][0-9]*$ ]] || die "$conf:$lineno: bad partition count '${parts:-}' for $name"
        if [[ -n ${have[$name]:-} ]]; then
            [[ ${have[$name]} == "$parts" ]] ||
                warn "kafka: topic $name has ${have[$name]} partitions, topics.conf says $parts (left as it is)"
            continue
        fi
        todo+=("$name|$parts|${configs:-}")
    done <"$conf"

    if ((${#todo[@]} == 0)); then
        say "kafka: topics ok (all $(grep -cEv '^[[:space:]]*(#|$)' "$conf") from topics.conf exist)"
        return 0
    fi
    say "kafka: creating ${#todo[@]} topic(s)"
    # One JVM per topic (TopicCommand creates one topic per run), two at a time on 2 cores.
    local item cfg failed=0 tmpdir created=()
    local -a args pids=() names=()
    tmpdir=$(mktemp -d "$RUN/topics.XXXXXX")
    local -i n=0 total=${#todo[@]}
    for item in "${todo[@]}"; do
        IFS='|' read -r name parts configs <<<"$item"
        args=(--bootstrap-server "$HOST:$KAFKA_PORT" --create --if-not-exists --topic "$name"
            --partitions "$parts" --replication-factor 1)
        if [[ -n $configs ]]; then
            IFS=',' read -r -a cfg <<<"$configs"
            local c
            for c in "${cfg[@]}"; do
                [[ $c == ?*=* ]] || die "$conf: bad config '$c' for topic $name (want key=value)"
                args+=(--config "$c")
            done
        fi
        kafka_java org.apache.kafka.tools.TopicCommand "${args[@]}" >"$tmpdir/$name.out" 2>&1 &
        pids+=("$!")
        names+=("$name")
        n+=1
        if ((${#pids[@]} == 2 || n == total)); then
            local i
            for i in "${!pids[@]}"; do
                if wait "${pids[$i]}"; then
                    created+=("${names[$i]}")
                else
                    failed=1
                    warn "kafka: creating topic ${names[$i]} failed:"
                    sed 's/^/    /' "$tmpdir/${names[$i]}.out" >&2
                fi
            done
            pids=()
            names=()
        fi
    done
    rm -rf -- "$tmpdir"
    ((failed == 0)) || die "kafka: could not create every topic of $conf"
    say "kafka: topics ok (created ${created[*]})"
}

kafka_stop() {
    stop_component kafka kafka_pid "$KAFKA_PIDFILE" TERM
}

kafka_status() {
    local state rc=0
    state=$(component_state kafka_pid "$KAFKA_PORT") || rc=1
    printf '%-9s %-24s %s:%s (controller %s)  data %s\n' kafka "$state" "$HOST" "$KAFKA_PORT" \
        "$KAFKA_CONTROLLER_PORT" "$KAFKA_DATA"
    return $rc
}

# --------------------------------------------------------------------------- postgres
#
# initdb/postgres refuse to run as root: as root they run as the 'postgres' user, with a
# data folder it owns. Auth: peer for the postgres superuser on the private socket,
# scram-sha-256 for everyone on 127.0.0.1. The mlops role's password is generated once into
# $STATE/secrets/pg_password (0600), with a libpq passfile and a full DSN beside it.

# as_pg CMD...: runs CMD as the database owner (the postgres user when we are root).
as_pg() {
    if ((EUID == 0)); then
        # From /: the postgres user may not be allowed into the caller's working directory.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# pg_paths: sets PGDATA, PG_SOCK_DIR, PG_SERVER_LOG. They live under $STATE unless the
# postgres user cannot reach $STATE (e.g. a checkout under /root, mode 0700): then under
# /var/lib/postgresql/mlops-<hash of $STATE>, with a symlink from $STATE/pg. The choice is
# kept in $STATE/pg-base, so it does not move between runs.
pg_paths() {
    local base_file=$STATE/pg-base base
    if [[ -s $base_file ]]; then
        read -r base <"$base_file"
    elif ((EUID != 0)) || runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
        base=$STATE
    else
        local h
        h=$(printf '%s' "$STATE" | sha256sum)
        base=/var/lib/postgresql/mlops-${h:0:12}
    fi
    PG_BASE=$base
    if [[ $base == "$STATE" ]]; then
        PGDATA=$STATE/pg
        PG_SOCK_DIR=$RUN/pg-socket
        PG_SERVER_LOG=$PG_LOG
    else
        PGDATA=$base/pg
        PG_SOCK_DIR=$base/socket
        PG_SERVER_LOG=$base/postgres.log
    fi
}

pg_prepare_dirs() {
    local base_file=$STATE/pg-base
    if [[ ! -s $base_file ]]; then
        if [[ $PG_BASE != "$STATE" ]]; then
            warn "postgres: the postgres user cannot reach $STATE (a parent folder is not searchable);"
            warn "postgres: keeping the database in $PG_BASE instead (symlink $STATE/pg)"
        fi
        printf '%s\n' "$PG_BASE" >"$base_file"
    fi
    if [[ $PG_BASE != "$STATE" ]]; then
        mkdir -p -- "$PG_BASE"
        ((EUID != 0)) || chown postgres:postgres -- "$PG_BASE"
        chmod 0700 -- "$PG_BASE"
        [[ -L $STATE/pg || ! -e $STATE/pg ]] || die "postgres: $STATE/pg exists but the database is in $PG_BASE"
        ln -sfn -- "$PGDATA" "$STATE/pg"
        ln -sfn -- "$PG_SERVER_LOG" "$PG_LOG"
    fi
    local d
    for d in "$PGDATA" "$PG_SOCK_DIR"; do
        mkdir -p -- "$d"
        ((EUID != 0)) || chown postgres:postgres -- "$d"
        chmod 0700 -- "$d"
    done
    touch -- "$PG_SERVER_LOG"
    ((EUID != 0)) || chown postgres:postgres -- "$PG_SERVER_LOG"
    if ((EUID == 0)) && ! runuser -u postgres -- test -w "$PGDATA" -a -w "$PG_SOCK_DIR" -a -w "$PG_SERVER_LOG"; then
        die "postgres: the postgres user cannot write $PGDATA, $PG_SOCK_DIR or $PG_SERVER_LOG"
    fi
    # A Unix socket path is limited to 107 bytes.
    local sock=$PG_SOCK_DIR/.s.PGSQL.$PG_PORT
    ((${#sock} <= 107)) || die "postgres: socket path $sock is longer than 107 bytes; use a shorter MLOPS_STATE_DIR"
}

# pg_pid: the postmaster's pid, from its own postmaster.pid.
pg_pid() {
    live_pid "$PGDATA/postmaster.pid" "*postgres*-D $PGDATA*"
}

pg_write_config() {
    local conf=$PGDATA/mlops.conf
    cat >"$conf.tmp" <<EOF
# Generated by deploy/stack.sh on every 'up'; included from postgresql.conf.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK_DIR'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
# Durability the registry promises: keep these on.
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 100
shared_buffers = 128MB
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = off
log_disconnections = off
EOF
    mv -f -- "$conf.tmp" "$conf"
    cat >"$PGDATA/pg_hba.conf.tmp" <<EOF
# Generated by deploy/stack.sh on every 'up'.
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer
host    all       all       $HOST/32   scram-sha-256
EOF
    mv -f -- "$PGDATA/pg_hba.conf.tmp" "$PGDATA/pg_hba.conf"
    if ! grep -q "^include_if_exists = 'mlops.conf'" "$PGDATA/postgresql.conf"; then
        printf "\n# Project settings (deploy/stack.sh)\ninclude_if_exists = 'mlops.conf'\n" \
            >>"$PGDATA/postgresql.conf"
    fi
    if ((EUID == 0)); then
        chown postgres:postgres -- "$conf" "$PGDATA/pg_hba.conf" "$PGDATA/postgresql.conf"
    fi
    chmod 0600 -- "$conf" "$PGDATA/pg_hba.conf"
}

pg_start() {
    [[ -x $PG_BIN/pg_ctl ]] || die "postgres: $PG_BIN/pg_ctl not found: run deploy/setup.sh apt (postgresql-15)"
    pg_paths
    local pid
    if pid=$(pg_pid); then
        say "postgres: already running (pid $pid, $HOST:$PG_PORT)"
        printf '%s\n' "$pid" >"$PG_PIDFILE"
        return 0
    fi
    if ((EUID == 0)); then
        id postgres >/dev/null 2>&1 || die "postgres: no 'postgres' user: run deploy/setup.sh apt"
    fi
    ! port_open "$PG_PORT" || die "postgres: port $HOST:$PG_PORT is already taken by another process"
    pg_prepare_dirs
    if [[ ! -f $PGDATA/PG_VERSION ]]; then
        [[ -z $(ls -A -- "$PGDATA") ]] || die "postgres: $PGDATA is not empty and holds no database"
        say "postgres: creating the database cluster in $PGDATA"
        if ! as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth-local=peer \
            --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --data-checksums \
            >>"$PG_SERVER_LOG" 2>&1; then
            fail postgres "initdb failed" "$PG_LOG"
        fi
    fi
    pg_write_config
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_SERVER_LOG" -w -t "$START_TIMEOUT" -s start \
        </dev/null >/dev/null 2>&1 9>&-; then
        fail postgres "did not start" "$PG_LOG"
    fi
    pid=$(pg_pid) || fail postgres "started but no live postmaster pid" "$PG_LOG"
    printf '%s\n' "$pid" >"$PG_PIDFILE"
    say "postgres: started (pid $pid)"
}

# pg_psql_admin ARGS...: psql as the superuser over the private socket.
pg_psql_admin() {
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK_DIR" -p "$PG_PORT" -U postgres -d postgres "$@"
}

# pg_secrets: the mlops password (made once), its libpq passfile and the full DSN.
pg_secrets() {
    local pw
    if [[ ! -s $PG_PASSWORD_FILE ]]; then
        pw=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
        (
            umask 077
            printf '%s\n' "$pw" >"$PG_PASSWORD_FILE"
        )
    fi
    read -r pw <"$PG_PASSWORD_FILE"
    [[ $pw =~ ^[A-Za-z0-9._~-]+$ ]] || die "postgres: $PG_PASSWORD_FILE must hold one word of [A-Za-z0-9._~-]"
    (
        umask 077
        printf '%s:%s:%s:%s:%s\n' "$HOST" "$PG_PORT" '*' "$PG_USER" "$pw" >"$PG_PASSFILE"
        printf 'postgresql://%s:%s@%s:%s/%s\n' "$PG_USER" "$pw" "$HOST" "$PG_PORT" "$PG_DB" >"$PG_DSN_FILE"
    )
    chmod 0600 -- "$PG_PASSWORD_FILE" "$PG_PASSFILE" "$PG_DSN_FILE"
    PG_PASSWORD=$pw
    # docker-compose.yml's Grafana reads its admin password from the same folder
    if [[ ! -s $SECRETS/grafana_admin_password ]]; then
        (
            umask 077
            od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$SECRETS/grafana_admin_password"
        )
    fi
}

pg_wait() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2; do
        pg_pid >/dev/null || fail postgres "the server exited during start" "$PG_LOG"
        ((SECONDS < deadline)) || fail postgres "not ready after ${START_TIMEOUT}s" "$PG_LOG"
        sleep 0.2
    done
    pg_secrets
    # Role and database (idempotent); the password is set from the secrets file every time,
    # so the file is always the truth. Sent on stdin, never on a command line.
    if ! pg_psql_admin -f - >/dev/null <<EOF; then
SELECT 'CREATE ROLE $PG_USER LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') \gexec
ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
EOF
        fail postgres "could not create role/database $PG_USER" "$PG_LOG"
    fi
    local got
    got=$(PGPASSFILE=$PG_PASSFILE PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -At -h "$HOST" -p "$PG_PORT" \
        -U "$PG_USER" -d "$PG_DB" -c 'SHOW fsync' 2>&1) ||
        fail postgres "cannot log in as $PG_USER over TCP: $got" "$PG_LOG"
    say "postgres: ready on $HOST:$PG_PORT (postgresql://$PG_USER@$HOST:$PG_PORT/$PG_DB, password in $PG_PASSWORD_FILE)"
}

pg_stop() {
    pg_paths
    # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for every client to
    # disconnect); SIGQUIT (immediate) if that hangs, SIGKILL last.
    stop_component postgres pg_pid "$PG_PIDFILE" INT QUIT
}

pg_status() {
    pg_paths
    local state rc=0
    state=$(component_state pg_pid "$PG_PORT") || rc=1
    printf '%-9s %-24s %s:%s  data %s  dsn postgresql://%s@%s:%s/%s (password: %s)\n' postgres \
        "$state" "$HOST" "$PG_PORT" "$PGDATA" "$PG_USER" "$HOST" "$PG_PORT" "$PG_DB" "$PG_PASSWORD_FILE"
    return $rc
}

# ------------------------------------------------------------------------------ redis

redis_pid() {
    live_pid "$REDIS_PIDFILE" "*redis-server*$HOST:$REDIS_PORT*"
}

redis_cli() {
    redis-cli -h "$HOST" -p "$REDIS_PORT" "$@"
}

redis_start() {
    local pid
    if pid=$(redis_pid); then
        say "redis: already running (pid $pid, $HOST:$REDIS_PORT)"
        return 0
    fi
    need_cmd redis-server
    need_cmd redis-cli
    ! port_open "$REDIS_PORT" || die "redis: port $HOST:$REDIS_PORT is already taken by another process"
    cat >"$REDIS_CONF.tmp" <<EOF
# Generated by deploy/stack.sh on every 'up'.
bind $HOST
port $REDIS_PORT
protected-mode yes
daemonize yes
supervised no
pidfile $REDIS_PIDFILE
logfile $REDIS_LOG
loglevel notice
dir $REDIS_DIR
# Durable state (dedup, aggregates, alert state) lives here: AOF on, fsync every second.
appendonly yes
appendfsync everysec
appendfilename "appendonly.aof"
appenddirname "appendonlydir"
save 3600 1 300 100 60 10000
databases 16
EOF
    mv -f -- "$REDIS_CONF.tmp" "$REDIS_CONF"
    rm -f -- "$REDIS_PIDFILE"
    printf '\n==== %s stack.sh: starting redis\n' "$(date '+%F %T')" >>"$REDIS_LOG"
    redis-server "$REDIS_CONF" </dev/null >>"$REDIS_LOG" 2>&1 9>&- || fail redis "redis-server failed to start" "$REDIS_LOG"
}

redis_wait() {
    local t0=$SECONDS pid='' reply
    local deadline=$((t0 + START_TIMEOUT))
    while :; do
        reply=$(redis_cli ping 2>/dev/null || true)
        pid=$(redis_pid || true)
        [[ $reply == PONG && -n $pid ]] && break
        # The daemon writes its pid file right after forking: no pid after 3 s means it died.
        if [[ -z $pid ]] && ((SECONDS - t0 >= 3)); then
            fail redis "the server exited during start" "$REDIS_LOG"
        fi
        ((SECONDS < deadline)) || fail redis "not ready after ${START_TIMEOUT}s (last reply: ${reply:-none})" "$REDIS_LOG"
        sleep 0.1
    done
    say "redis: ready on $HOST:$REDIS_PORT (pid $pid, redis://$HOST:$REDIS_PORT/0)"
}

redis_stop() {
    stop_component redis redis_pid "$REDIS_PIDFILE" TERM
}

redis_status() {
    local state rc=0
    state=$(component_state redis_pid "$REDIS_PORT") || rc=1
    printf '%-9s %-24s %s:%s  data %s\n' redis "$state" "$HOST" "$REDIS_PORT" "$REDIS_DIR"
    return $rc
}

# --------------------------------------------------------------------------- commands

has() {
    local want=$1 c
    shift
    for c in "$@"; do [[ $c == "$want" ]] && return 0; done
    return 1
}

cmd_up() {
    local start=$SECONDS
    ensure_dirs
    with_lock stack
    # Kafka first: its JVM boots while Postgres and Redis start.
    if has kafka "$@"; then kafka_start; fi
    if has postgres "$@"; then
        pg_start
        pg_wait
    fi
    if has redis "$@"; then
        redis_start
        redis_wait
    fi
    if has kafka "$@"; then
        kafka_wait
        kafka_topics
    fi
    say "up: $* ready ($((SECONDS - start)) s)"
}

cmd_down() {
    ensure_dirs
    with_lock stack
    # Reverse order of 'up'.
    if has redis "$@"; then redis_stop; fi
    if has postgres "$@"; then pg_stop; fi
    if has kafka "$@"; then kafka_stop; fi
}

cmd_status() {
    local rc=0
    if has kafka "$@"; then kafka_status || rc=1; fi
    if has postgres "$@"; then pg_status || rc=1; fi
    if has redis "$@"; then redis_status || rc=1; fi
    return "$rc"
}

cmd_logs() {
    local follow=0 lines=50 files=() comps=()
    while (($#)); do
        case $1 in
            -f | --follow) follow=1 ;;
            -n)
                [[ ${2:-} =~ ^[0-9]+$ ]] || die "logs: -n needs a number"
                lines=$2
                shift
                ;;
            kafka | postgres | redis) comps+=("$1") ;;
            *) die "logs: unknown argument '$1'" ;;
        esac
        shift
    done
    ((${#comps[@]})) || comps=("${ALL_COMPONENTS[@]}")
    if has kafka "${comps[@]}"; then files+=("$KAFKA_OUT" "$KAFKA_LOG"); fi
    if has postgres "${comps[@]}"; then files+=("$PG_LOG"); fi
    if has redis "${comps[@]}"; then files+=("$REDIS_LOG"); fi
    local f present=()
    for f in "${files[@]}"; do [[ -e $f ]] && present+=("$f"); done
    ((${#present[@]})) || die "logs: no log files yet in $LOGS"
    if ((follow)); then
        exec tail -n "$lines" -F -- "${present[@]}"
    fi
    tail -n "$lines" -- "${present[@]}"
}

# safe_rm PATH...: rm -rf, only inside $STATE or a Postgres fallback folder.
safe_rm() {
    local p
    for p in "$@"; do
        case $p in
            "$STATE"/?* | /var/lib/postgresql/mlops-?*) rm -rf -- "$p" ;;
            *) die "refusing to delete '$p' (outside $STATE)" ;;
        esac
    done
}

cmd_wipe() {
    ensure_dirs
    with_lock stack
    local c
    for c in "$@"; do
        if [[ $c == kafka ]] && kafka_pid >/dev/null; then die "kafka is running: deploy/stack.sh down kafka first"; fi
        if [[ $c == redis ]] && redis_pid >/dev/null; then die "redis is running: deploy/stack.sh down redis first"; fi
        if [[ $c == postgres ]]; then
            pg_paths
            if pg_pid >/dev/null; then die "postgres is running: deploy/stack.sh down postgres first"; fi
        fi
    done
    if has kafka "$@"; then
        safe_rm "$KAFKA_DIR"
        say "kafka: data deleted ($KAFKA_DIR)"
    fi
    if has postgres "$@"; then
        if [[ $PG_BASE != "$STATE" ]]; then
            safe_rm "$PG_BASE"
            rm -f -- "$STATE/pg" "$PG_LOG"
        else
            safe_rm "$PGDATA" "$PG_SOCK_DIR"
        fi
        rm -f -- "$STATE/pg-base" "$PG_PIDFILE"
        say "postgres: data deleted ($PGDATA; the password in $PG_PASSWORD_FILE is kept)"
    fi
    if has redis "$@"; then
        safe_rm "$REDIS_DIR"
        say "redis: data deleted ($REDIS_DIR)"
    fi
}

cmd_env() {
    cat <<EOF
export MLOPS_STATE_DIR='$STATE'
export MLOPS_KAFKA_BROKERS='$HOST:$KAFKA_PORT'
export MLOPS_PG_DSN='postgresql://$PG_USER@$HOST:$PG_PORT/$PG_DB?passfile=$PG_PASSFILE'
export MLOPS_REDIS_URL='redis://$HOST:$REDIS_PORT/0'
export PGPASSFILE='$PG_PASSFILE'
EOF
}

main() {
    local cmd=${1:-}
    (($#)) && shift
    case $cmd in
        up | down | status | logs | wipe | env) ;;
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
    if [[ $cmd == env ]]; then
        (($# == 0)) || die "env takes no arguments"
        cmd_env
        return
    fi
    local comps=() c services=0 rc=0
    for c in "$@"; do
        if [[ $c == --services ]]; then
            services=1
            continue
        fi
        has "$c" "${ALL_COMPONENTS[@]}" || die "unknown component '$c' (kafka, postgres or redis)"
        comps+=("$c")
    done
    ((${#comps[@]})) || comps=("${ALL_COMPONENTS[@]}")
    if [[ $cmd == down ]]; then
        "$DEPLOY_DIR/services.sh" down
        ((services)) && return 0
    fi
    "cmd_$cmd" "${comps[@]}" || rc=$?
    if ((services)) && [[ $cmd == up || $cmd == status ]]; then
        exec 9>&-
        [[ $cmd == status ]] && printf '\n'
        "$DEPLOY_DIR/services.sh" "$cmd" || rc=$?
    fi
    return "$rc"
}

main "$@"
