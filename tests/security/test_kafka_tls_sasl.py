"""Kafka over TLS and SASL/SCRAM, set by configuration (librdkafka pass-through), against a
private broker (tlsbroker.py: an SSL listener and a SASL_SSL listener with SCRAM-SHA-256,
certificates from a throwaway test CA).

Our real binaries, mlopsctl and mlops-ingest, with the right CA and password work end to
end; with a CA that did not sign the broker's certificate, or a wrong password, they stop
within seconds, non-zero, with a message naming the TLS or authentication problem (librdkafka
alone would retry forever). The SASL password never shows in their output or in
--print-config. The expectations come from the broker this test set up (its CA, its SCRAM
user, the events it produced), not from the code under test."""
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tlsbroker import TlsBroker, die_with_parent, free_ports  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
MLOPSCTL = BUILD / "cli" / "mlopsctl"
INGEST = BUILD / "services" / "ingest" / "mlops-ingest"
USER = "mlops-svc"
PASSWORD = "Sx7-" + uuid.uuid4().hex  # a fresh secret: any occurrence in output is a leak
WRONG_PASSWORD = "Wq3-" + uuid.uuid4().hex
# a wrong CA or password must be reported within this time (librdkafka's first
# connection attempt takes well under a second on loopback)
FAIL_WITHIN_S = 15
TLS_WORDS = ("TLS handshake failed", "certificate verify failed", "ssl.ca.location")
AUTH_WORDS = ("SASL authentication failed", "invalid credentials", "sasl.password")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = TlsBroker(tmp_path_factory.mktemp("kafka-tls"), USER, PASSWORD)
    try:
        b.start()
    except Exception:
        b.stop()
        raise
    yield b
    b.stop()


def ssl_client_conf(b):
    """confluent-kafka (its own librdkafka build) on the SSL listener: the test's oracle."""
    return {"bootstrap.servers": b.ssl_brokers, "security.protocol": "ssl",
            "ssl.ca.location": str(b.ca)}


def create_topics(b, names, partitions=2):
    a = AdminClient(ssl_client_conf(b))
    for f in a.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        f.result(30)


def read_topic(b, topic, expect, timeout=30):
    c = Consumer({**ssl_client_conf(b), "group.id": f"tls-reader-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out, deadline = [], time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            out.append(m)
    c.close()
    return out


def sasl_props(b, password=PASSWORD, ca=None):
    """The librdkafka properties of a SCRAM client on the SASL_SSL listener."""
    return {"security.protocol": "sasl_ssl", "ssl.ca.location": str(ca or b.ca),
            "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": USER, "sasl.password": password}


def as_x(props):
    return [a for k, v in props.items() for a in ("-X", f"{k}={v}")]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(extra)
    return env


def ctl(*args, env=None, timeout=60):
    t0 = time.monotonic()
    r = subprocess.run([str(MLOPSCTL), *args], capture_output=True, text=True,
                       timeout=timeout, env=env or clean_env())
    r.elapsed = time.monotonic() - t0
    return r


def assert_clear_failure(r, words, what):
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"{what}: exit 0\n{out[-2000:]}"
    assert r.elapsed < FAIL_WITHIN_S, f"{what}: took {r.elapsed:.1f}s"
    # the last line is the command's own verdict, not one of librdkafka's log lines
    verdict = r.stderr.strip().splitlines()[-1]
    assert all(w in verdict for w in words), f"{what}: unclear error: {verdict}"
    assert PASSWORD not in out and WRONG_PASSWORD not in out


# ---------------------------------------------------------------------------- mlopsctl

def test_mlopsctl_offsets_with_the_right_ca_and_password(broker, tmp_path):
    topic = f"tls-off-{uuid.uuid4().hex[:8]}"
    create_topics(broker, [topic])
    # the settings through the config file (kafka.PROP = VALUE)
    conf = tmp_path / "ctl.conf"
    conf.write_text("".join(f'kafka.{k} = "{v}"\n' for k, v in sasl_props(broker).items()))
    r = ctl("offsets", topic, "--kafka-brokers", broker.sasl_brokers, "-c", str(conf))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{topic}:0:0-0,{topic}:1:0-0"
    assert PASSWORD not in r.stdout + r.stderr


def test_mlopsctl_offsets_with_a_wrong_ca_fails_naming_tls(broker):
    topic = f"tls-off-{uuid.uuid4().hex[:8]}"
    create_topics(broker, [topic])
    for brokers, props in [
            (broker.sasl_brokers, sasl_props(broker, ca=broker.other_ca)),
            (broker.ssl_brokers, {"security.protocol": "ssl",
                                  "ssl.ca.location": str(broker.other_ca)})]:
        r = ctl("offsets", topic, "--kafka-brokers", brokers, *as_x(props))
        assert_clear_failure(r, TLS_WORDS, f"wrong CA on {brokers}")
        # the control: the same listener with the right CA works (SSL listener: no SASL)
    r = ctl("offsets", topic, "--kafka-brokers", broker.ssl_brokers,
            "-X", "security.protocol=ssl", "-X", f"ssl.ca.location={broker.ca}")
    assert r.returncode == 0, r.stderr


def test_mlopsctl_offsets_with_a_wrong_password_fails_naming_authentication(broker):
    topic = f"tls-off-{uuid.uuid4().hex[:8]}"
    create_topics(broker, [topic])
    # the settings through the environment (MLOPS_KAFKA_PROP_<PROP>)
    env = clean_env(**{"MLOPS_KAFKA_PROP_" + k.replace(".", "_"): v
                       for k, v in sasl_props(broker, password=WRONG_PASSWORD).items()})
    r = ctl("offsets", topic, "--kafka-brokers", broker.sasl_brokers, env=env)
    assert_clear_failure(r, AUTH_WORDS, "wrong password")


def events(n, tag):
    return [{"employee_id": f"emp-{i}", "event_id": f"{tag}-{i}", "event_time": 1767225600000 + i,
             "age": 30 + i % 20, "department": "Sales", "monthly_income": 3000 + i}
            for i in range(n)]


def test_mlopsctl_produce_over_sasl_ssl_and_its_failures(broker, tmp_path):
    topic = f"tls-prod-{uuid.uuid4().hex[:8]}"
    create_topics(broker, [topic])
    evs = events(20, "p")
    src = tmp_path / "events.jsonl"
    src.write_text("".join(json.dumps(e) + "\n" for e in evs))
    base = ["produce", "--topic", topic, "--jsonl", str(src), "--key", "employee_id",
            "--kafka-brokers", broker.sasl_brokers]
    r = ctl(*base, *as_x(sasl_props(broker)))
    assert r.returncode == 0, r.stderr
    got = read_topic(broker, topic, len(evs))
    assert sorted(json.loads(m.value())["event_id"] for m in got) == \
        sorted(e["event_id"] for e in evs)
    assert PASSWORD not in r.stdout + r.stderr

    r = ctl(*base, *as_x(sasl_props(broker, ca=broker.other_ca)))
    assert_clear_failure(r, TLS_WORDS, "produce with a wrong CA")
    r = ctl(*base, *as_x(sasl_props(broker, password=WRONG_PASSWORD)))
    assert_clear_failure(r, AUTH_WORDS, "produce with a wrong password")
    # nothing more arrived than the first run's records
    assert len(read_topic(broker, topic, len(evs) + 1, timeout=3)) == len(evs)


def test_print_config_hides_the_password(broker, tmp_path):
    props = sasl_props(broker)
    r = ctl("offsets", "t", "--kafka-brokers", broker.sasl_brokers, *as_x(props),
            "--print-config")
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    assert "kafka.sasl.username" in r.stdout and USER in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("kafka.sasl.password"))
    assert '"***"' in line, line
    r = subprocess.run([str(INGEST), "--spec", str(ROOT / "examples/attrition/spec.json"),
                        "--print-config", *as_x(props)], capture_output=True, text=True,
                       timeout=30, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr and "kafka.sasl.password" in r.stdout

    # from a file named in the environment: the value is read, and hidden too
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    del props["sasl.password"]
    env = clean_env(MLOPS_KAFKA_PROP_SASL_PASSWORD_FILE=str(pw))
    r = ctl("offsets", "t", "--kafka-brokers", broker.sasl_brokers, *as_x(props),
            "--print-config", env=env)
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    assert 'kafka.sasl.password = "***"  # env MLOPS_KAFKA_PROP_SASL_PASSWORD_FILE' in r.stdout
    r = ctl("offsets", "t", "--kafka-brokers", broker.sasl_brokers, *as_x(props),
            "--print-config", env=clean_env(MLOPS_KAFKA_PROP_SASL_PASSWORD_FILE="/nonexistent"))
    assert r.returncode == 2 and "cannot read secret file" in r.stderr, r.stderr


# ------------------------------------------------------------------------ mlops-ingest

@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    """A private Redis for ingest's dedup and online store."""
    d = tmp_path_factory.mktemp("redis")
    (port,) = free_ports(1)
    p = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save",
                          "", "--appendonly", "no", "--dir", str(d)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=die_with_parent)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                         text=True).stdout.strip() != "PONG":
        assert p.poll() is None and time.monotonic() < deadline, "redis did not start"
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    p.terminate()
    p.wait(10)


class Ingest:
    def __init__(self, broker, redis, tmp, props, exactly_once=True):
        self.id = uuid.uuid4().hex[:8]
        self.input, self.features, self.dlq = (f"tls-{x}-{self.id}" for x in
                                               ("in", "features", "dlq"))
        create_topics(broker, [self.input, self.features, self.dlq])
        spec = json.loads((ROOT / "examples/attrition/spec.json").read_text())
        spec["name"] = spec["online"]["view"] = f"tls{self.id}"
        spec_path = tmp / f"spec-{self.id}.json"
        spec_path.write_text(json.dumps(spec))
        # the settings through the config file, as a deployment would
        conf = tmp / f"ingest-{self.id}.conf"
        conf.write_text("".join(f'kafka.{k} = "{v}"\n' for k, v in props.items()))
        self.args = [str(INGEST), "-c", str(conf), "--spec", str(spec_path),
                     "--kafka-brokers", broker.sasl_brokers, "--redis-url", redis,
                     "--input-topic", self.input, "--features-topic", self.features,
                     "--dlq-topic", self.dlq, "--group-id", f"tls-ingest-{self.id}",
                     "--metrics-port", "0",
                     "--exactly-once" if exactly_once else "--no-exactly-once",
                     "-X", "transaction.timeout.ms=15000"]
        self.lines, self.port = [], None
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=clean_env(), preexec_fn=die_with_parent)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("msg") == "mlops-ingest up":
                self.port = obj["metrics_port"]

    def ready(self):
        if not self.port:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_exit(self, timeout):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        self.reader.join(5)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode

    def text(self):
        return "".join(self.lines)


def test_ingest_end_to_end_over_sasl_ssl(broker, redis, tmp_path):
    # the password from a file (kafka.sasl.password_file), as with systemd credentials
    pw = tmp_path / "kafka-password"
    pw.write_text(PASSWORD + "\n")
    props = sasl_props(broker)
    del props["sasl.password"]
    props["sasl.password_file"] = str(pw)
    ig = Ingest(broker, redis, tmp_path, props)
    try:
        deadline = time.monotonic() + 30
        while not ig.ready():
            assert ig.proc.poll() is None, f"ingest exited:\n{ig.text()[-3000:]}"
            assert time.monotonic() < deadline, f"ingest not ready:\n{ig.text()[-3000:]}"
            time.sleep(0.2)
        # valid events in through mlopsctl produce (SASL_SSL), features out (read over SSL)
        evs = [dict(e, gender="Female", marital_status="single", education=3,
                    education_field="Life Sciences", job_role="Manager", job_level=2,
                    percent_salary_hike=12, stock_option_level=1, overtime="no",
                    business_travel="rarely", distance_from_home=5, years_at_company=3,
                    years_in_current_role=2, years_since_last_promotion=1,
                    years_with_manager=2, total_working_years=8, num_companies_worked=2,
                    training_times_last_year=2, job_satisfaction=3,
                    environment_satisfaction=3, relationship_satisfaction=3,
                    work_life_balance=3, job_involvement=3, performance_rating=3,
                    weekly_hours=40, remote=False, last_review_at="2025-06-01T00:00:00Z")
               for e in events(10, "i")]
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps(e) + "\n" for e in evs))
        r = ctl("produce", "--topic", ig.input, "--jsonl", str(src), "--key", "employee_id",
                "--kafka-brokers", broker.sasl_brokers, *as_x(sasl_props(broker)))
        assert r.returncode == 0, r.stderr
        feats = read_topic(broker, ig.features, len(evs), timeout=30)
        dlq = read_topic(broker, ig.dlq, 1, timeout=1)
        assert not dlq, [m.value()[:300] for m in dlq]
        assert len(feats) == len(evs), ig.text()[-3000:]
        assert {m.key().decode() for m in feats} == {e["employee_id"] for e in evs}
        assert ig.stop() == 0
        assert PASSWORD not in ig.text()
    finally:
        ig.stop()


@pytest.mark.parametrize("case", ["wrong_ca", "wrong_password"])
@pytest.mark.parametrize("exactly_once", [True, False], ids=["eos", "alo"])
def test_ingest_refuses_a_wrong_ca_or_password(broker, redis, tmp_path, case, exactly_once):
    props = (sasl_props(broker, ca=broker.other_ca) if case == "wrong_ca"
             else sasl_props(broker, password=WRONG_PASSWORD))
    ig = Ingest(broker, redis, tmp_path, props, exactly_once=exactly_once)
    try:
        code = ig.wait_exit(FAIL_WITHIN_S)
        assert code is not None, f"ingest still running after {FAIL_WITHIN_S}s " \
                                 f"(ready: {ig.ready()}):\n{ig.text()[-2000:]}"
        # a configuration error: the supervisor must not restart it in a loop
        assert code == 2, ig.text()[-2000:]
        fatal = [json.loads(ln) for ln in ig.lines
                 if ln.startswith("{") and json.loads(ln).get("level") == "fatal"]
        assert fatal, ig.text()[-2000:]
        words = TLS_WORDS if case == "wrong_ca" else AUTH_WORDS
        assert all(w in fatal[0]["msg"] for w in words), fatal[0]["msg"]
        assert PASSWORD not in ig.text() and WRONG_PASSWORD not in ig.text()
    finally:
        ig.stop()
