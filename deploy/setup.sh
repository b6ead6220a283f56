#!/usr/bin/env bash
# Idempotent setup of everything the project needs on a Debian 12 machine.
#
#   deploy/setup.sh [all|apt|kafka|venv|promtool|examples]     (default: all)
#
#   apt    Debian packages (compilers, clang + libFuzzer for make fuzz, C libraries,
#          PostgreSQL 15, Redis, kcat, Java, Maven);
#          only missing ones are installed, `apt-get update` only runs when one is missing.
#   kafka  Apache Kafka 3.9 jars from Maven Central into $STATE/kafka-libs (deploy/kafka/pom.xml).
#   venv   Python virtualenv $STATE/venv with requirements.txt.
#   promtool  Prometheus's rule checker $STATE/tools/promtool, taken out of Debian's
#          prometheus package (downloaded, not installed: no server, no service); the
#          tests check deploy/prometheus/ rules and the Grafana dashboard's queries with it.
#   examples  R and the R packages with the example datasets (r-base-core, r-cran-cardata,
#          r-cran-aer) for examples/*/make_data.sh (part of `all`: the spec and trainer
#          tests train on those datasets; about 25 s the first time).
#
# STATE is ${MLOPS_STATE_DIR:-<repo root>/.state}. A step whose stamp under $STATE/stamps
# matches its input (pom / requirements sha256) is skipped, so a second run takes about a second.
# Environment: MLOPS_STATE_DIR, MLOPS_PYTHON (interpreter for the venv, default python3),
# MLOPS_SETUP_FORCE=1 (ignore stamps).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

LOG_PREFIX=setup
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(
    build-essential cmake pkg-config
    librdkafka-dev libpq-dev libjansson-dev libevent-dev libhiredis-dev libcriterion-dev
    libcurl4-openssl-dev libssl-dev ninja-build libcsv-dev
    postgresql postgresql-15 redis-server kcat
    clang-format docker-compose python3-venv
    clang libclang-rt-14-dev
    maven openjdk-17-jre-headless
    curl ca-certificates procps
    binutils systemd
)

# Rscript and the packages examples/*/make_data.sh export (step examples, part of all).
EXAMPLE_APT_PACKAGES=(r-base-core r-cran-cardata r-cran-aer)

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 && !/shellcheck/ { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

# stamp_ok NAME VALUE: true when $STATE/stamps/NAME holds VALUE (and no force).
stamp_ok() {
    [[ ${MLOPS_SETUP_FORCE:-0} != 1 ]] || return 1
    [[ -f $STATE/stamps/$1 ]] && [[ $(<"$STATE/stamps/$1") == "$2" ]]
}

stamp_write() {
    mkdir -p -- "$STATE/stamps"
    printf '%s\n' "$2" >"$STATE/stamps/$1.tmp"
    mv -f -- "$STATE/stamps/$1.tmp" "$STATE/stamps/$1"
}

step_apt() {
    apt_ensure apt "${APT_PACKAGES[@]}"
}

step_examples() {
    apt_ensure examples "${EXAMPLE_APT_PACKAGES[@]}"
}

# apt_ensure LOGNAME PKG...: install the packages that are missing (log: setup-LOGNAME.log).
apt_ensure() {
    local logname=$1
    shift
    command -v dpkg-query >/dev/null || die "dpkg-query not found: this script supports Debian 12 only"
    local missing=() pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
        [[ $status == ii* ]] || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        say "$logname: apt packages ok (cached)"
        return 0
    fi
    say "installing ${#missing[@]} missing apt package(s): ${missing[*]}"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "not root and no sudo: install these as root: ${missing[*]}"
        sudo=(sudo)
    fi
    local log=$STATE/logs/setup-$logname.log
    mkdir -p -- "$STATE/logs"
    say "running apt-get update (log: $log)"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1; then
        tail -n 20 -- "$log" >&2
        die "apt-get update failed (log: $log)"
    fi
    # --no-install-recommends: docker-compose would otherwise pull in the Docker engine.
    # Debian's postgresql/redis-server packages may create and start their own servers on
    # 5432/6379; the project's stack uses its own data folders on 5433/6380 and ignores them.
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${missing[@]}" >>"$log" 2>&1; then
        tail -n 20 -- "$log" >&2
        die "apt-get install failed (log: $log)"
    fi
    for pkg in "${missing[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
        [[ $status == ii* ]] || die "apt package $pkg is still not installed (log: $log)"
    done
    say "$logname: apt packages ok (installed ${missing[*]})"
}

step_kafka() {
    local pom=$DEPLOY_DIR/kafka/pom.xml libs=$STATE/kafka-libs hash
    [[ -f $pom ]] || die "missing $pom"
    hash=$(sha256_of "$pom")
    if stamp_ok kafka-libs "$hash" && compgen -G "$libs/kafka_2.13-*.jar" >/dev/null; then
        say "kafka jars ok (cached, $libs)"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: run 'deploy/setup.sh apt' first"
    command -v java >/dev/null || die "java not found: run 'deploy/setup.sh apt' first"
    say "fetching kafka jars with maven into $libs"
    # Download into a fresh folder and swap it in: stale jars of another version on the
    # same class path break the broker at start (NoClassDefFoundError).
    local tmp=$STATE/kafka-libs.new log=$STATE/logs/setup-maven.log
    mkdir -p -- "$STATE/logs"
    rm -rf -- "$tmp"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$log" 2>&1; then
        tail -n 20 -- "$log" >&2
        die "maven could not fetch the kafka jars (log: $log)"
    fi
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "maven ran but $tmp has no kafka_2.13 jar (log: $log)"
    rm -rf -- "$libs"
    mv -- "$tmp" "$libs"
    stamp_write kafka-libs "$hash"
    say "kafka jars ok ($(find "$libs" -name '*.jar' | wc -l) jars in $libs)"
}

step_venv() {
    local req=$REPO_ROOT/requirements.txt venv=$STATE/venv python=${MLOPS_PYTHON:-python3}
    [[ -f $req ]] || die "missing $req"
    local want pyver=""
    if [[ -x $venv/bin/python ]]; then
        pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true)
    fi
    want="$(sha256_of "$req") python-$pyver"
    if [[ -n $pyver ]] && stamp_ok venv "$want"; then
        say "python venv ok (cached, $venv)"
        return 0
    fi
    command -v "$python" >/dev/null || die "$python not found (set MLOPS_PYTHON, or run 'deploy/setup.sh apt')"
    local log=$STATE/logs/setup-venv.log
    mkdir -p -- "$STATE/logs"
    if [[ -z $pyver ]]; then
        say "creating python venv $venv with $python"
        rm -rf -- "$venv"
        if ! "$python" -m venv "$venv" >"$log" 2>&1; then
            cat -- "$log" >&2
            die "'$python -m venv $venv' failed (Debian's python3 needs the python3-venv package)"
        fi
        pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    fi
    say "installing requirements.txt into $venv (python $pyver, log: $log)"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        -r "$req" >>"$log" 2>&1; then
        tail -n 20 -- "$log" >&2
        die "pip install -r requirements.txt failed (log: $log)"
    fi
    stamp_write venv "$(sha256_of "$req") python-$pyver"
    say "python venv ok ($venv)"
}

step_promtool() {
    local tool=$STATE/tools/promtool version log=$STATE/logs/setup-promtool.log
    mkdir -p -- "$STATE/logs" "$STATE/tools"
    version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ { print $2 }')
    if [[ -z $version || $version == "(none)" ]]; then
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        say "promtool: no apt lists for prometheus yet, running apt-get update (log: $log)"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1 ||
            die "apt-get update failed (log: $log)"
        version=$(apt-cache policy prometheus | awk '/Candidate:/ { print $2 }')
        [[ -n $version && $version != "(none)" ]] || die "apt has no prometheus package"
    fi
    if [[ -x $tool ]] && stamp_ok promtool "$version"; then
        say "promtool ok (cached, $tool)"
        return 0
    fi
    local tmp
    tmp=$(mktemp -d "$STATE/tools/promtool.XXXXXX")
    say "promtool: fetching Debian's prometheus $version package for its promtool"
    if ! (cd -- "$tmp" && apt-get download "prometheus=$version") >>"$log" 2>&1; then
        rm -rf -- "$tmp"
        tail -n 20 -- "$log" >&2
        die "apt-get download prometheus failed (log: $log)"
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" >>"$log" 2>&1 || die "dpkg-deb -x failed (log: $log)"
    [[ -x $tmp/root/usr/bin/promtool ]] || die "the prometheus package has no usr/bin/promtool"
    mv -f -- "$tmp/root/usr/bin/promtool" "$tool"
    rm -rf -- "$tmp"
    stamp_write promtool "$version"
    say "promtool ok ($("$tool" --version 2>&1 | head -n 1))"
}

main() {
    local what=${1:-all}
    case $what in
        all | apt | kafka | venv | promtool | examples) ;;
        -h | --help | help)
            usage
            return 0
            ;;
        *)
            usage >&2
            die "unknown step '$what'"
            ;;
    esac
    (($# <= 1)) || die "too many arguments: $*"
    resolve_state
    with_lock setup
    local start=$SECONDS
    case $what in
        all)
            step_apt
            step_examples
            step_kafka
            step_venv
            step_promtool
            ;;
        apt) step_apt ;;
        kafka) step_kafka ;;
        venv) step_venv ;;
        promtool) step_promtool ;;
        examples) step_examples ;;
    esac
    say "done ($what, state in $STATE, $((SECONDS - start)) s)"
}

main "$@"
