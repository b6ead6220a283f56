#!/usr/bin/env bash
# Creates the topics of deploy/topics.conf on the docker-compose stack's broker. The compose
# `topics` service runs it once, in the apache/kafka image, after the broker is healthy; the
# services start only when it has exited 0.
#
#   compose-topics.sh TOPICS_CONF
#
# Same file format and checks as kafka_topics in deploy/stack.sh: one topic per line,
# "name partitions [key=value,...]", '#' starts a comment, replication factor 1. Idempotent:
# a topic that exists is left as it is (a partition count that differs is reported), a
# missing one is created with --if-not-exists. The whole file is checked before anything
# is created, so a typo creates nothing.
#
# Environment: MLOPS_KAFKA_BROKERS (kafka:19092, the broker's in-network listener),
# KAFKA_TOPICS (/opt/kafka/bin/kafka-topics.sh), MLOPS_TOPICS_WAIT (60: seconds to wait
# for the broker to answer).
set -euo pipefail

say() { printf 'compose-topics: %s\n' "$*"; }
warn() { printf 'compose-topics: warning: %s\n' "$*" >&2; }
die() {
    printf 'compose-topics: error: %s\n' "$*" >&2
    exit 1
}

(($# == 1)) || die "usage: compose-topics.sh TOPICS_CONF"
conf=$1
bootstrap=${MLOPS_KAFKA_BROKERS:-kafka:19092}
topics_cmd=${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}
wait_s=${MLOPS_TOPICS_WAIT:-60}
[[ -r $conf ]] || die "cannot read $conf"
[[ $wait_s =~ ^[0-9]+$ ]] || die "MLOPS_TOPICS_WAIT must be a number of seconds, not '$wait_s'"

# ------------------------------------------------------------------- read the file
names=()
declare -A parts_of=() configs_of=()
lineno=0
while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    line=${line%%#*}
    name='' parts='' configs='' extra=''
    read -r name parts configs extra <<<"$line" || true
    [[ -n $name ]] || continue
    [[ -z $extra ]] || die "$conf:$lineno: too many fields (name partitions [key=value,...])"
    [[ $name =~ ^[A-Za-z0-9._-]{1,249}$ ]] || die "$conf:$lineno: bad topic name '$name'"
    [[ $parts =~ ^[1-9][0-9]*$ ]] || die "$conf:$lineno: bad partition count '$parts' for $name"
    [[ -z ${parts_of[$name]:-} ]] || die "$conf:$lineno: topic $name is listed twice"
    if [[ -n $configs ]]; then
        IFS=',' read -r -a cfg <<<"$configs"
        for c in "${cfg[@]}"; do
            [[ $c == ?*=* ]] || die "$conf:$lineno: bad config '$c' for topic $name (want key=value)"
        done
    fi
    names+=("$name")
    parts_of[$name]=$parts
    configs_of[$name]=$configs
done <"$conf"
((${#names[@]})) || die "$conf lists no topics"

# ----------------------------------------------------- what the broker already has
# One JVM for all topics; retried while the broker does not answer yet.
deadline=$((SECONDS + wait_s))
until described=$("$topics_cmd" --bootstrap-server "$bootstrap" --describe --exclude-internal 2>&1); do
    if ((SECONDS >= deadline)); then
        printf '%s\n' "$described" >&2
        die "no answer from $bootstrap after ${wait_s}s"
    fi
    sleep 2
done
declare -A have=()
while IFS= read -r line; do
    # "Topic: NAME<TAB>TopicId: ...<TAB>PartitionCount: N<TAB>..." (partition lines start
    # with a tab and do not match). An unrecognised format only costs a --create each.
    if [[ $line =~ ^Topic:\ *([^[:space:]]+)[[:space:]].*PartitionCount:\ *([0-9]+) ]]; then
        have[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
    fi
done <<<"$described"

# ------------------------------------------------------------------------- create
created=() kept=() failed=0
for name in "${names[@]}"; do
    parts=${parts_of[$name]}
    if [[ -n ${have[$name]:-} ]]; then
        [[ ${have[$name]} == "$parts" ]] ||
            warn "topic $name has ${have[$name]} partitions, $conf says $parts (left as it is)"
        kept+=("$name")
        continue
    fi
    args=(--bootstrap-server "$bootstrap" --create --if-not-exists --topic "$name"
        --partitions "$parts" --replication-factor 1)
    if [[ -n ${configs_of[$name]} ]]; then
        IFS=',' read -r -a cfg <<<"${configs_of[$name]}"
        for c in "${cfg[@]}"; do
            args+=(--config "$c")
        done
    fi
    if out=$("$topics_cmd" "${args[@]}" 2>&1); then
        created+=("$name")
    else
        failed=1
        warn "creating topic $name failed:"
        printf '%s\n' "$out" | sed 's/^/    /' >&2
    fi
done
((failed == 0)) || die "could not create every topic of $conf"
say "topics ok: ${#created[@]} created (${created[*]:-none}), ${#kept[@]} already there"
