"""Contract: docker-compose.yml runs the same stack as the local one.

The expected values come from the local stack itself, never from numbers copied here:
topics from deploy/topics.conf, infrastructure ports from `deploy/stack.sh env`, broker and
durability settings from the files deploy/stack.sh writes, service ports and config keys
from the built binaries' `--print-config`. Needs the build (`ninja -C build`; another build
folder with MLOPS_BUILD_DIR).

    .state/venv/bin/python -m pytest tests/contract -q
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
TOPICS_CONF = REPO / "deploy" / "topics.conf"
TOPICS_SCRIPT = REPO / "deploy" / "compose-topics.sh"
STACK_SH = REPO / "deploy" / "stack.sh"
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"
KAFKA_POM = REPO / "deploy" / "kafka" / "pom.xml"
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR") or REPO / "build")
LOOPBACK = "127.0.0.1"

# Ports ARCHITECTURE.md gives a service before the binary has a config key for them.
# A pending port is used only while --print-config shows no key of that name; once the key
# exists its value is the truth and this entry should go.
PENDING_PORTS = {"scorer": {"http_port": 8090}}  # HTTP predictions, "later"


# ----------------------------------------------------------------------- helpers


def clean_env(**extra):
    """The caller's environment without MLOPS_* (a developer's settings must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(extra)
    return env


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value, env):
    """Compose's variable substitution for the forms this file may use."""
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        got = env.get(name)
        if m.group(2) == ":-" and not got:
            return m.group(3)
        if m.group(2) == "-" and got is None:
            return m.group(3)
        return got or ""

    return _VAR.sub(sub, value)


def parse_topics_conf(text):
    """deploy/topics.conf as {name: (partitions, {config: value})}, parsed independently of
    the shell scripts that read it."""
    topics = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        assert 2 <= len(fields) <= 3, f"topics.conf:{lineno}: want name partitions [configs]"
        name, parts = fields[0], int(fields[1])
        configs = dict(kv.split("=", 1) for kv in fields[2].split(",")) if len(fields) == 3 else {}
        assert name not in topics, f"topics.conf:{lineno}: {name} listed twice"
        topics[name] = (parts, configs)
    return topics


def as_argv(value):
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def env_of(svc, env):
    """A service's environment as a dict, interpolated (both compose syntaxes)."""
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: "" if v is None else str(interpolate(v, env)) for k, v in raw.items()}


def bind_mounts(svc):
    """{container path: (host path, read_only)} of a service's bind mounts."""
    mounts = {}
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) < 2 or not parts[0].startswith((".", "/")):
                continue  # a named volume
            src, dst, mode = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
            ro = "ro" in mode.split(",")
        else:
            if vol.get("type") != "bind":
                continue
            src, dst, ro = vol["source"], vol["target"], bool(vol.get("read_only"))
        mounts[dst] = ((COMPOSE_FILE.parent / src).resolve(), ro)
    return mounts


def published(svc, env):
    """[(host ip, host port, container port)] of a service's published ports."""
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            ip, host, cont = p.get("host_ip", ""), p.get("published"), p["target"]
        else:
            spec = str(interpolate(p, env)).split("/", 1)[0]
            parts = spec.rsplit(":", 2)
            if len(parts) == 3:
                ip, host, cont = parts
            elif len(parts) == 2:
                ip, (host, cont) = "", parts
            else:
                ip, host, cont = "", None, parts[0]
        out.append((ip, int(host) if host not in (None, "") else None, int(cont)))
    return out


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def heredoc(script_text, opener):
    """key=value (or `key value`) lines of the heredoc that follows the line matching
    `opener` in a shell script, comments and blanks dropped."""
    lines = script_text.splitlines()
    start = next(i for i, l in enumerate(lines) if re.search(opener, l))
    settings = {}
    for line in lines[start + 1 :]:
        if line.strip() == "EOF":
            return settings
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, value = re.split(r"\s*=\s*|\s+", line, maxsplit=1)
        settings[key] = value.strip().strip("'\"")
    raise AssertionError(f"no EOF after {opener!r}")


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def host_env(tmp_path_factory):
    """Environment for compose interpolation and for running the tools: no MLOPS_*, and a
    scratch state folder holding a dummy Postgres password secret."""
    state = tmp_path_factory.mktemp("state")
    (state / "secrets").mkdir()
    (state / "secrets" / "pg_password").write_text("not-a-real-password\n")
    return clean_env(MLOPS_STATE_DIR=str(state))


@pytest.fixture(scope="module")
def compose():
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), \
        "docker-compose.yml has no services"
    return data


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


@pytest.fixture(scope="module")
def topics():
    parsed = parse_topics_conf(TOPICS_CONF.read_text())
    assert parsed, "deploy/topics.conf lists no topics"
    return parsed


@pytest.fixture(scope="module")
def binaries():
    """{service: path of mlops-<service>} for every services/<name>/main.c."""
    names = sorted(p.parent.name for p in (REPO / "services").glob("*/main.c"))
    assert names, "no services/*/main.c"
    paths = {n: BUILD / "services" / n / f"mlops-{n}" for n in names}
    missing = [str(p) for p in paths.values() if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"not built: {', '.join(missing)} (cmake -S . -B build -G Ninja && ninja -C build)")
    return paths


def print_config(binary, env):
    """{key: (value, source)} from `binary --print-config` run with env."""
    res = subprocess.run([str(binary), "--print-config"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, f"{binary.name} --print-config: exit {res.returncode}: {res.stderr}"
    conf = {}
    for line in res.stdout.splitlines():
        m = re.match(r'^([a-z0-9_.]+) = ("(?:[^"\\]|\\.)*"|\S+)  # (.*)$', line)
        if m:
            value = m.group(2)
            conf[m.group(1)] = (value[1:-1] if value.startswith('"') else value, m.group(3))
    assert conf, f"{binary.name} --print-config printed no keys"
    return conf


@pytest.fixture(scope="module")
def defaults(binaries):
    """Each binary's default configuration (no file, no MLOPS_* environment)."""
    return {name: print_config(path, clean_env()) for name, path in binaries.items()}


@pytest.fixture(scope="module")
def mlops_services(services, binaries):
    """{binary name: (compose service name, service)}: each binary is run by exactly one
    compose service, as its command."""
    found = {}
    for sname, svc in services.items():
        argv = as_argv(svc.get("entrypoint")) + as_argv(svc.get("command"))
        for name in binaries:
            if argv and Path(argv[0]).name == f"mlops-{name}":
                assert name not in found, f"mlops-{name} runs in two compose services"
                found[name] = (sname, svc)
    missing = sorted(set(binaries) - set(found))
    assert not missing, f"no compose service runs: {', '.join('mlops-' + m for m in missing)}"
    return found


@pytest.fixture(scope="module")
def stack_ports(host_env):
    """Kafka, Postgres and Redis ports of the local stack, from `deploy/stack.sh env`
    with its defaults (no MLOPS_* in the environment)."""
    res = subprocess.run(["bash", str(STACK_SH), "env"], env=host_env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, f"deploy/stack.sh env: {res.stderr}"
    env = dict(re.findall(r"^export (\w+)='([^']*)'$", res.stdout, re.M))
    return {
        "kafka": port_of(env["MLOPS_KAFKA_BROKERS"].split(",")[0]),
        "postgres": int(re.search(r"@[^:/]+:(\d+)/", env["MLOPS_PG_DSN"]).group(1)),
        "redis": int(re.search(r"://[^:/]+:(\d+)", env["MLOPS_REDIS_URL"]).group(1)),
    }


def listen_port(svc, conf, host_env, key="metrics_port"):
    """The port the binary listens on for `key` in this compose service: its env, else the
    binary's default."""
    return int(env_of(svc, host_env).get(f"MLOPS_{key.upper()}", conf[key][0]))


def infra(services, name, image):
    """The compose service `name`, checked to run `image`."""
    assert name in services, f"docker-compose.yml has no '{name}' service"
    svc = services[name]
    assert str(svc.get("image", "")).startswith(image + ":"), \
        f"service {name}: image {svc.get('image')!r}, want {image}:<tag>"
    return svc


def one_shots(services):
    """Services others wait for with condition service_completed_successfully."""
    shots = set()
    for svc in services.values():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, dict):
            shots |= {d for d, c in deps.items()
                      if (c or {}).get("condition") == "service_completed_successfully"}
    return shots


# ------------------------------------------------------------------ (a) topics

STUB = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if "--describe" in args:
    sys.stdout.write(open(os.environ["STUB_DESCRIBE"]).read())
elif "--create" in args:
    topic = args[args.index("--topic") + 1]
    if topic == os.environ.get("STUB_FAIL_TOPIC"):
        sys.exit("Error while executing topic command : stub failure")
    print("Created topic %s." % topic)
"""


@pytest.fixture(scope="module")
def topics_run(services, host_env, tmp_path_factory):
    """Runs the compose `topics` service's command on the host, with the container paths of
    its bind mounts mapped back to the host and kafka-topics.sh replaced by a stub that
    records its calls. Returns run(conf=None, describe="", fail=None) ->
    (returncode, stderr, [argv of each --create], [argv of each call])."""
    assert "topics" in services, "docker-compose.yml has no 'topics' service"
    svc = services["topics"]
    mounts = bind_mounts(svc)
    argv = [str(mounts[a][0]) if a in mounts else a
            for a in as_argv(svc.get("entrypoint")) + as_argv(svc.get("command"))]
    # Only ever run deploy/compose-topics.sh here, never some other command of the file.
    runs_script = argv[:1] == [str(TOPICS_SCRIPT)] or (
        argv[:2] == [argv[0], str(TOPICS_SCRIPT)] and Path(argv[0]).name == "bash")
    assert runs_script, f"the topics service does not run the mounted deploy/compose-topics.sh: {argv}"
    tmp = tmp_path_factory.mktemp("topics")
    stub = tmp / "kafka-topics.sh"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)

    def run(conf=None, describe="", fail=None):
        args = [str(conf) if a == str(TOPICS_CONF) and conf else a for a in argv]
        log, desc = tmp / "calls.log", tmp / "describe.out"
        log.write_text("")
        desc.write_text(describe)
        env = dict(host_env, **env_of(svc, host_env), KAFKA_TOPICS=str(stub),
                   STUB_LOG=str(log), STUB_DESCRIBE=str(desc), MLOPS_TOPICS_WAIT="0")
        if fail:
            env["STUB_FAIL_TOPIC"] = fail
        res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        calls = [json.loads(l) for l in log.read_text().splitlines()]
        return res.returncode, res.stderr, [c for c in calls if "--create" in c], calls

    run.argv = argv
    run.mounts = mounts
    run.env = env_of(svc, host_env)
    return run


def created_topics(creates):
    """{name: (partitions, configs)} from recorded kafka-topics.sh --create calls."""
    out = {}
    for c in creates:
        opt = lambda flag: c[c.index(flag) + 1]  # noqa: E731
        configs = dict(c[i + 1].split("=", 1) for i, a in enumerate(c) if a == "--config")
        assert "--if-not-exists" in c, f"create without --if-not-exists: {c}"
        assert opt("--replication-factor") == "1", f"replication factor is not 1: {c}"
        assert opt("--topic") not in out, f"{opt('--topic')} created twice"
        out[opt("--topic")] = (int(opt("--partitions")), configs)
    return out


def test_topics_service_mounts_topics_conf_and_runs_the_script(topics_run):
    by_host = {host: (cont, ro) for cont, (host, ro) in topics_run.mounts.items()}
    for path in (TOPICS_CONF, TOPICS_SCRIPT):
        rel = path.relative_to(REPO)
        assert path in by_host, f"the topics service does not mount {rel}"
        assert by_host[path][1], f"the topics service mounts {rel} read-write (want :ro)"
        assert str(path) in topics_run.argv, \
            f"the topics service's command does not use the mounted {rel} ({by_host[path][0]})"
    script_at = topics_run.argv.index(str(TOPICS_SCRIPT))
    assert topics_run.argv.index(str(TOPICS_CONF)) > script_at, \
        "topics.conf must be an argument of deploy/compose-topics.sh"


def test_topics_created_equal_topics_conf(topics_run, topics):
    code, err, creates, calls = topics_run()
    assert code == 0, f"compose-topics.sh failed on an empty broker: {err}"
    assert created_topics(creates) == topics
    brokers = topics_run.env.get("MLOPS_KAFKA_BROKERS")
    assert brokers, "the topics service sets no MLOPS_KAFKA_BROKERS"
    assert all(c[c.index("--bootstrap-server") + 1] == brokers for c in calls)


def test_topics_script_reads_the_file_it_is_given(topics_run, tmp_path):
    """Not a list kept in the script: another file gives other topics."""
    other = tmp_path / "other-topics.conf"
    other.write_text("# comment\ncontract.one 2\n"
                     "contract.two  1  retention.ms=5,cleanup.policy=compact  # x\n")
    code, err, creates, _ = topics_run(conf=other)
    assert code == 0, err
    assert created_topics(creates) == parse_topics_conf(other.read_text())


def test_topics_script_is_idempotent_and_fails_loudly(topics_run, topics):
    have = "".join(f"Topic: {n}\tTopicId: x{i}\tPartitionCount: {p}\tReplicationFactor: 1\tConfigs: \n"
                   f"\tTopic: {n}\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n"
                   for i, (n, (p, _)) in enumerate(topics.items()))
    code, err, creates, _ = topics_run(describe=have)
    assert code == 0 and creates == [], f"existing topics created again: {creates} {err}"

    first, (parts, _) = next(iter(topics.items()))
    code, err, creates, _ = topics_run(describe=have.replace(
        f"Topic: {first}\tTopicId: x0\tPartitionCount: {parts}",
        f"Topic: {first}\tTopicId: x0\tPartitionCount: {parts + 1}"))
    assert code == 0 and creates == []
    assert f"topic {first} has {parts + 1} partitions" in err, "partition mismatch not reported"

    code, err, _, _ = topics_run(fail=first)
    assert code != 0, "a failed topic creation must fail the topics service"


def test_no_topic_is_hard_coded_elsewhere(compose, topics):
    """Topic names live in topics.conf only: not in any compose value, not in the script."""
    hits = []

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(k, where)
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
        elif isinstance(node, str):
            hits.extend(f"{t} in {where}" for t in re.findall(r"[A-Za-z0-9._-]+", node) if t in topics)

    walk(compose, "docker-compose.yml")
    for lineno, line in enumerate(TOPICS_SCRIPT.read_text().splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        hits.extend(f"{t} in compose-topics.sh:{lineno}"
                    for t in re.findall(r"[A-Za-z0-9._-]+", code) if t in topics)
    assert not hits, "topic names outside deploy/topics.conf: " + ", ".join(hits)


# ------------------------------------------------------ (b) ports and listeners


def expected_ports(stack_ports, defaults):
    """{compose service: {host port}} of the local stack."""
    want = {name: {port} for name, port in stack_ports.items()}
    for name, conf in defaults.items():
        ports = {k: int(v) for k, (v, _) in conf.items() if k.endswith("_port") and int(v)}
        for key, port in PENDING_PORTS.get(name, {}).items():
            ports.setdefault(key, port)
        want[name] = set(ports.values())
    return want


def test_published_ports_equal_local_stack(services, mlops_services, stack_ports, defaults, host_env):
    want = expected_ports(stack_ports, defaults)
    compose_name = {n: n for n in stack_ports} | {n: s for n, (s, _) in mlops_services.items()}
    infra(services, "kafka", "apache/kafka")
    infra(services, "postgres", "postgres")
    infra(services, "redis", "redis")
    for name, ports in want.items():
        got = {host for _, host, _ in published(services[compose_name[name]], host_env)}
        assert got == ports, f"{compose_name[name]}: publishes {sorted(got)}, local stack has {sorted(ports)}"


def test_service_ports_reach_the_binary(mlops_services, defaults, host_env):
    """Container side of each mapping = the port the binary listens on (env or default),
    so the host port and the in-network port are the same number."""
    for name, (sname, svc) in mlops_services.items():
        maps = {host: cont for _, host, cont in published(svc, host_env)}
        for key in defaults[name]:
            if not key.endswith("_port"):
                continue
            listens = listen_port(svc, defaults[name], host_env, key)
            assert maps.get(listens) == listens, \
                f"{sname}: {key} is {listens} in the container but published as {maps}"


def test_ports_are_loopback_only_and_unique(services, host_env):
    seen = {}
    for sname, svc in services.items():
        for ip, host, cont in published(svc, host_env):
            assert ip == LOOPBACK and host, \
                f"{sname}: port {cont} published on '{ip or '0.0.0.0'}:{host}', want {LOOPBACK}:<port>"
            assert host not in seen, f"host port {host} published by {seen.get(host)} and {sname}"
            seen[host] = sname


def test_kafka_listeners_work_inside_and_from_the_host(services, mlops_services, stack_ports, host_env):
    kafka = infra(services, "kafka", "apache/kafka")
    env = env_of(kafka, host_env)

    def listeners(key):
        return {m[0]: (m[1], int(m[2])) for m in re.findall(r"([A-Z_]+)://([^:,]*):(\d+)", env.get(key, ""))}

    bind, adv = listeners("KAFKA_LISTENERS"), listeners("KAFKA_ADVERTISED_LISTENERS")
    proto = dict(kv.split(":") for kv in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(bind) <= set(proto), "a listener has no security protocol"
    assert controller in bind and controller not in adv, "controller listener must be bound, not advertised"
    assert set(adv) <= set(bind), "an advertised listener is not bound"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in adv
    hostnames = {"kafka", kafka.get("hostname")}
    voters = re.fullmatch(r"1@([^:]+):(\d+)", env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
    assert voters and voters[1] in hostnames and int(voters[2]) == bind[controller][1]
    assert env.get("KAFKA_NODE_ID") == "1"

    # From the host: advertised as 127.0.0.1:<local stack port>, and published there.
    host_side = [n for n, (h, p) in adv.items() if h == LOOPBACK and p == stack_ports["kafka"]]
    assert host_side, f"no listener advertised as {LOOPBACK}:{stack_ports['kafka']}"
    mapping = {host: cont for _, host, cont in published(kafka, host_env)}
    assert mapping.get(stack_ports["kafka"]) == bind[host_side[0]][1], \
        "the host listener's port is not the one published on the host"

    # Inside the compose network: every client uses an advertised in-network listener.
    inside = {f"{h}:{p}" for n, (h, p) in adv.items() if h in hostnames}
    assert inside, "no listener advertised with the kafka service's hostname"
    clients = {s: env_of(svc, host_env).get("MLOPS_KAFKA_BROKERS")
               for s, svc in [*mlops_services.values(), ("topics", services["topics"])]}
    for s, brokers in clients.items():
        assert brokers in inside, f"{s}: MLOPS_KAFKA_BROKERS={brokers!r}, want one of {sorted(inside)}"


# ------------------------------------------ same server settings as stack.sh


def test_kafka_settings_equal_stack_sh(services, host_env):
    """Every broker setting deploy/stack.sh writes, except the ones that name addresses or
    paths (they differ by design: listeners, voters, log.dirs)."""
    stack = heredoc(STACK_SH.read_text(), r'cat >"\$tmp" <<EOF')
    assert "process.roles" in stack, "could not find kafka_write_config's server.properties in stack.sh"
    env = env_of(infra(services, "kafka", "apache/kafka"), host_env)
    topology = {"listener.security.protocol.map"}  # compose adds its HOST listener
    for key, value in stack.items():
        if "$" in value or key in topology:
            continue
        var = "KAFKA_" + key.replace("_", "__").replace("-", "___").replace(".", "_").upper()
        assert env.get(var) == value, f"{key}: stack.sh has {value!r}, compose {var}={env.get(var)!r}"


def test_kafka_version_equals_local_stack(services):
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", KAFKA_POM.read_text()).group(1)
    images = {s: svc["image"] for s, svc in services.items()
              if str(svc.get("image", "")).startswith("apache/kafka:")}
    assert images, "no apache/kafka image in docker-compose.yml"
    for s, image in images.items():
        assert image == f"apache/kafka:{version}", f"{s}: {image}, the local stack runs Kafka {version}"


def test_durability_settings_equal_stack_sh(services):
    text = STACK_SH.read_text()
    redis_conf = heredoc(text, r'cat >"\$REDIS_CONF.tmp" <<EOF')
    cmd = as_argv(infra(services, "redis", "redis").get("command"))
    for key in ("appendonly", "appendfsync"):
        assert f"--{key}" in cmd and cmd[cmd.index(f"--{key}") + 1] == redis_conf[key], \
            f"redis: --{key} must be {redis_conf[key]!r} as in stack.sh"
    pg_conf = heredoc(text, r'cat >"\$conf.tmp" <<EOF')
    cmd = as_argv(infra(services, "postgres", "postgres").get("command"))
    settings = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-c")
    for key in ("fsync", "synchronous_commit", "full_page_writes"):
        assert settings.get(key) == pg_conf[key], f"postgres: {key} must be {pg_conf[key]!r} as in stack.sh"


# ----------------------------------------------- (c) healthchecks, config keys


def test_every_service_has_a_healthcheck(services, mlops_services, defaults, host_env):
    shots = one_shots(services)
    assert "topics" in shots, "the services must wait for the topics service to succeed"
    for sname, svc in services.items():
        if sname in shots:
            continue
        hc = svc.get("healthcheck") or {}
        test = as_argv(hc.get("test"))
        assert test and test[0] != "NONE" and not hc.get("disable"), f"{sname}: no healthcheck"
    for name, (sname, svc) in mlops_services.items():
        port = listen_port(svc, defaults[name], host_env)
        test = " ".join(as_argv(svc["healthcheck"]["test"]))
        assert re.search(rf"//(127\.0\.0\.1|localhost):{port}/health\b", test), \
            f"{sname}: the healthcheck does not GET /health on its metrics port {port}: {test}"


def test_service_env_keys_are_config_keys(mlops_services, defaults, binaries, host_env):
    for name, (sname, svc) in mlops_services.items():
        env = env_of(svc, host_env)
        keys = defaults[name]
        # secrets: shown as *** when set; unset ones are found in --help, which names
        # their MLOPS_<KEY>_FILE form
        secret = {k for k, (v, _) in keys.items() if v == "***"}
        help_text = subprocess.run([str(binaries[name]), "--help"], capture_output=True,
                                   text=True, env=clean_env()).stdout
        secret |= {k for k in keys if f"MLOPS_{k.upper()}_FILE" in help_text}
        for var in env:
            assert var.startswith("MLOPS_"), f"{sname}: {var} is not an MLOPS_ setting"
            key = var[len("MLOPS_"):].lower()
            ok = (key in keys or var.startswith("MLOPS_KAFKA_PROP_")
                  or (key.endswith("_file") and key[:-5] in secret))
            assert ok, f"{sname}: {var} is no config key of mlops-{name} (keys: {', '.join(keys)})"
        # The binary accepts the values, and each one takes effect (source "env ...").
        plain = {k: v for k, v in env.items() if not k.endswith("_FILE")}
        got = print_config(binaries[name], clean_env(**plain))
        for var in plain:
            key = var[len("MLOPS_"):].lower()
            if key in got:
                assert got[key][1] == f"env {var}", f"{sname}: {var} did not take effect: {got[key]}"


def test_one_image_for_all_services(mlops_services):
    images = {svc.get("image") for _, svc in mlops_services.values()}
    builds = {json.dumps(svc.get("build"), sort_keys=True) for _, svc in mlops_services.values()}
    assert len(images) == 1 and None not in images, f"services use images {images}"
    assert len(builds) == 1, f"services are built differently: {builds}"
    build = next(iter(mlops_services.values()))[1]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (COMPOSE_FILE.parent / context / dockerfile).resolve() == REPO / "Dockerfile"


def test_prometheus_scrapes_every_service(services, mlops_services, defaults, host_env):
    prom = infra(services, "prometheus", "prom/prometheus")
    mounts = bind_mounts(prom)
    config_path = next((a.split("=", 1)[1] for a in as_argv(prom.get("command"))
                        if a.startswith("--config.file=")), "/etc/prometheus/prometheus.yml")
    assert mounts.get(config_path, (None,))[0] == PROMETHEUS_YML, \
        f"prometheus does not read deploy/prometheus/prometheus.yml at {config_path}"
    conf = yaml.safe_load(PROMETHEUS_YML.read_text())
    targets = {t for job in conf["scrape_configs"] if job.get("metrics_path", "/metrics") == "/metrics"
               for sc in job.get("static_configs", []) for t in sc["targets"]}
    for name, (sname, svc) in mlops_services.items():
        port = listen_port(svc, defaults[name], host_env)
        assert f"{sname}:{port}" in targets, f"deploy/prometheus/prometheus.yml does not scrape {sname}:{port}"


# --------------------------------------------------------- (d) compose config


def test_docker_compose_v1_config(host_env):
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (v1) is not installed")
    res = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"], cwd=REPO,
                         env=host_env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"docker-compose config -q: exit {res.returncode}: {res.stderr}"


def test_docker_compose_v2_config(host_env):
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True,
                                    timeout=60).returncode != 0:
        pytest.skip("`docker compose` (v2) is not available here; only the v1 check ran")
    res = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"], cwd=REPO,
                         env=host_env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"docker compose config -q: exit {res.returncode}: {res.stderr}"
