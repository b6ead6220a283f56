#!/usr/bin/env bash
# Smoke test of a running local stack (deploy/stack.sh up): Kafka produce/consume, a Kafka
# transaction read back with read_committed, a Postgres login as mlops with the stored
# password, and Redis PING/SET/GET. Uses its own topic and keys with a unique suffix and
# deletes them afterwards, so it is safe on the stack you work with.
#
#   deploy/smoke.sh
#
# Ends with "N passed, N failed"; exits non-zero if any check failed.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

LOG_PREFIX=smoke
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
resolve_state

readonly HOST=127.0.0.1
KAFKA=$HOST:${MLOPS_KAFKA_PORT:-9092}
PG_PORT=${MLOPS_PG_PORT:-5433}
REDIS_PORT=${MLOPS_REDIS_PORT:-6380}
PG_BIN=${MLOPS_PG_BIN:-/usr/lib/postgresql/15/bin}
SUFFIX=$$-$(date +%s)
TOPIC=smoke.test-$SUFFIX
passed=0
failed=0

check() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        say "ok   $name"
    else
        failed=$((failed + 1))
        say "FAIL $name"
    fi
}

topic_tool() {
    java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j.configuration="file:$DEPLOY_DIR/kafka/tools-log4j.properties" \
        -cp "$STATE/kafka-libs/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$KAFKA" "$@" >/dev/null 2>&1
}

cleanup() {
    topic_tool --delete --topic "$TOPIC" || true
    redis-cli -h "$HOST" -p "$REDIS_PORT" del "smoke:$SUFFIX" >/dev/null 2>&1 || true
}
trap cleanup EXIT

kafka_metadata() { kcat -L -b "$KAFKA" -m 5 >/dev/null 2>&1; }
create_topic() { topic_tool --create --topic "$TOPIC" --partitions 2 --replication-factor 1; }

produce_consume() {
    printf 'k1:plain-1\nk2:plain-2\n' | kcat -P -b "$KAFKA" -t "$TOPIC" -K: -X enable.idempotence=true 2>/dev/null
    local got
    got=$(kcat -C -b "$KAFKA" -t "$TOPIC" -o beginning -e -q -f '%s\n' 2>/dev/null | sort | tr '\n' ' ')
    [[ $got == "plain-1 plain-2 " ]]
}

transaction() {
    printf 'k3:txn-1\nk3:txn-2\n' |
        kcat -P -b "$KAFKA" -t "$TOPIC" -K: -X "transactional.id=smoke-$SUFFIX" 2>/dev/null
    local got
    got=$(kcat -C -b "$KAFKA" -t "$TOPIC" -o beginning -e -q -X isolation.level=read_committed \
        -f '%s\n' 2>/dev/null | grep '^txn-' | tr '\n' ' ')
    [[ $got == "txn-1 txn-2 " ]]
}

postgres_login() {
    local got
    got=$(PGPASSFILE=$STATE/secrets/pgpass PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -At -w \
        -h "$HOST" -p "$PG_PORT" -U mlops -d mlops \
        -c "SELECT current_user, current_setting('fsync'), current_setting('synchronous_commit')" 2>/dev/null)
    [[ $got == "mlops|on|on" ]]
}

postgres_rejects_bad_password() {
    ! PGPASSWORD="wrong-$SUFFIX" PGPASSFILE=/nonexistent PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -At -w \
        -h "$HOST" -p "$PG_PORT" -U mlops -d mlops -c 'SELECT 1' >/dev/null 2>&1
}

redis_ping() { [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_set_get() {
    redis-cli -h "$HOST" -p "$REDIS_PORT" set "smoke:$SUFFIX" hello >/dev/null 2>&1 &&
        [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" get "smoke:$SUFFIX" 2>/dev/null) == hello ]] &&
        [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" config get appendonly 2>/dev/null | tail -n 1) == yes ]]
}

check "kafka answers metadata on $KAFKA" kafka_metadata
check "kafka creates topic $TOPIC" create_topic
check "kafka produce and consume" produce_consume
check "kafka transaction read with read_committed" transaction
check "postgres login as mlops on $HOST:$PG_PORT (fsync, synchronous_commit on)" postgres_login
check "postgres refuses a wrong password" postgres_rejects_bad_password
check "redis PING on $HOST:$REDIS_PORT" redis_ping
check "redis SET/GET with appendonly" redis_set_get

printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
