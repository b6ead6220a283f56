"""Fixtures for the mlops-scorer tests: the real binaries (mlopsctl datagen and
produce, mlops-trainer, mlops-ingest, mlops-scorer) on the real broker, with a
private redis-server per module (so an outage test can stop it without
touching the shared stack) and unique topic, group and spec names."""
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import sys

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from kafkatest import (BROKERS, consume_all, create_topics,  # noqa: E402,F401
                       delete_topics, produce)
from proctest import ServiceProc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
SOAK = os.environ.get("MLOPS_TEST_SCALE") == "soak"
SCORER = BUILD / "services/scorer/mlops-scorer"
INGEST = BUILD / "services/ingest/mlops-ingest"
TRAINER = BUILD / "services/trainer/mlops-trainer"
MLOPSCTL = BUILD / "cli/mlopsctl"
KAFKA_TEST_PROPS = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=2000",
                    "-X", "transaction.timeout.ms=15000"]


def run(*args, timeout=300):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args[0]}: {r.stderr[-2000:]}"
    return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class RedisServer:
    """A private redis-server with AOF, stoppable and freezable by the test."""

    def __init__(self, tmp):
        self.dir = tmp / f"redis-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir()
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *map(str, args)],
                              capture_output=True, text=True, timeout=10).stdout

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.cli("PING").strip() == "PONG" and "loading:0" in self.cli("INFO", "persistence"):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


class Scorer(ServiceProc):
    """One mlops-scorer process."""

    def __init__(self, args, name="scorer"):
        super().__init__("scorer", [SCORER, "--metrics-port", "0", "--http-port", "0", *args])
        self.start()

    @property
    def http_port(self):
        """The port of its HTTP endpoint (started with --http-port 0: any free port)."""
        return self.wait_log(lambda ln: ln.get("msg") == "scorer HTTP serving")["http_port"]

    def http(self, method, path, body=None, headers=None, raw=None):
        """(status, headers, parsed JSON body or the text) of one request."""
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        c.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                    **(headers or {})})
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = text
        return r.status, dict(r.getheaders()), doc

    def wait_events(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"scorer exited: {self.logs[-8:]}"
            if (self.metric("mlops_scorer_events_total", 'transport="stream"') or 0) >= n:
                return
            time.sleep(0.1)
        got = self.metric("mlops_scorer_events_total", 'transport="stream"')
        raise AssertionError(f"scorer did not score {n} events: {got}")


def validator():
    import jsonschema
    schema = json.loads((ROOT / "schemas/prediction.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def predict_csv(model, csv):
    """mlopsctl predict: one score per CSV row, as the exact doubles printed."""
    r = run(MLOPSCTL, "predict", "--model", model, "--data", csv)
    lines = r.stdout.splitlines()
    assert lines[0] == "score"
    return [float(x) for x in lines[1:]]


class Stream:
    """The module's data: a CSV (synthetic attrition rows from mlopsctl datagen,
    or a real example dataset from its make_data.sh), its features/1 records on
    a topic (through the real mlops-ingest, online rows in the private Redis)
    and models trained on it."""

    def __init__(self, tmp, redis, rows=None, dataset="attrition"):
        self.id = uuid.uuid4().hex[:10]
        self.tmp = tmp
        self.redis = redis
        self.raw, self.features, self.labels, self.dlq = (
            f"sc-{k}-{self.id}" for k in ("raw", "features", "labels", "dlq"))
        self.topics = [self.raw, self.features, self.labels, self.dlq]
        create_topics(self.topics)
        self.csv = tmp / "data.csv"
        spec = json.loads((ROOT / "examples" / dataset / "spec.json").read_text())
        self.id_field = spec["event_id"]
        if dataset == "attrition":
            run(MLOPSCTL, "datagen", "attrition", "--rows", rows, "--seed", 7, "--out", self.csv)
        else:  # R's datasets, installed by deploy/setup.sh all
            run(ROOT / "examples" / dataset / "make_data.sh", self.csv)
            rows = len(self.event_ids())
        spec["name"] = f"s{self.id}"
        spec["online"]["view"] = f"s{self.id}"
        self.spec_name = spec["name"]
        self.spec = tmp / "spec.json"
        self.spec.write_text(json.dumps(spec))
        self.models = {}
        self.fit("lr", "logreg")
        self.fit("lr2", "logreg", "--c", "0.05")
        self.fit("gbdt", "gbdt", "--n-trees", 30, "--max-depth", 4)
        run(MLOPSCTL, "produce", "--topic", self.raw, "--csv", self.csv, "--spec", self.spec,
            "--labels-topic", self.labels)
        self.rows = rows
        ing = subprocess.Popen(
            [str(INGEST), "--spec", self.spec, "--input-topic", self.raw, "--features-topic",
             self.features, "--dlq-topic", self.dlq, "--group-id", f"sc-ingest-{self.id}",
             "--metrics-port", "0", "--redis-url", redis.url],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "ingest.log", "w"))
        try:
            self.records = consume_all(self.features, expect=rows, timeout=120)
        finally:
            ing.send_signal(signal.SIGTERM)
            ing.wait(timeout=60)
        assert len(self.records) == rows, f"ingest wrote {len(self.records)} of {rows} features"
        self.by_id = {json.loads(m.value())["event_id"]: m for m in self.records}

    def fit(self, name, algo, *flags):
        out = self.tmp / f"{name}.json"
        run(TRAINER, "fit", "--data", self.csv, "--spec", self.spec, "--algo", algo,
            "--out", out, *flags)
        self.models[name] = out

    def event_ids(self):
        import csv
        with open(self.csv) as f:
            return [row[self.id_field] for row in csv.DictReader(f)]

    def copy_topic(self, partitions=3):
        """A fresh input topic holding nothing yet (tests produce features into it)."""
        t = f"sc-in-{uuid.uuid4().hex[:10]}"
        create_topics([t], partitions)
        self.topics.append(t)
        return t

    def new_topic(self, partitions=3):
        t = f"sc-out-{uuid.uuid4().hex[:10]}"
        create_topics([t], partitions)
        self.topics.append(t)
        return t


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    r = RedisServer(tmp_path_factory.mktemp("redis"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def stream(tmp_path_factory, redis_server):
    s = Stream(tmp_path_factory.mktemp("scorer"), redis_server, 100000 if SOAK else 10000)
    yield s
    delete_topics(s.topics)


@pytest.fixture(scope="module", params=["titanic", "creditcard"])
def example_stream(request, tmp_path_factory, redis_server):
    """A real dataset (categoricals, missing cells) through the same stages."""
    s = Stream(tmp_path_factory.mktemp(request.param), redis_server, dataset=request.param)
    yield s
    delete_topics(s.topics)


@pytest.fixture
def scorers():
    made = []

    def make(args):
        sc = Scorer(args)
        made.append(sc)
        return sc

    yield make
    for sc in made:
        sc.close()


def predictions(topic, expect=None, timeout=90, quiet=5):
    return [json.loads(m.value()) for m in consume_all(topic, expect=expect, timeout=timeout,
                                                       quiet=quiet)]
