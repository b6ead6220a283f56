"""Shared by the reliability tests (issue 9): the ingest -> scorer pipeline supervised by
deploy/services.sh, the Jepsen-style read_committed verifier, and a test's private Kafka
broker (for the tests that stop their broker: never the one the other tests share).

Topics, groups, transactional ids, the spec name (so Redis keys) and ports are each
pipeline's own, so tests run in parallel with the rest of the suite."""
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from kafkatest import consume_all, create_topics, delete_topics  # noqa: E402
from proctest import free_port  # noqa: E402,F401 (the tests import it from here)

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
SERVICES = ROOT / "deploy" / "services.sh"
STACK = ROOT / "deploy" / "stack.sh"
SOAK = os.environ.get("MLOPS_TEST_SCALE") == "soak"
EVENTS = 100_000 if SOAK else 10_000  # the suite's stream size (CI, soak)
# fast failure detection, so a killed member's partitions move on within seconds
KAFKA_FAST = {"kafka.session.timeout.ms": 6000, "kafka.heartbeat.interval.ms": 2000,
              "kafka.transaction.timeout.ms": 15000}


def metric(port, name):
    """The sum of a metric over its label sets; None when the service does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ready(port, timeout=1.0):
    """GET /ready: True (200), False (503, the service says not ready) or None (no answer:
    not running, restarting, or too busy to answer within `timeout`)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=timeout) as r:
            return r.status == 200
    except urllib.error.HTTPError as e:
        return False if e.code == 503 else None
    except OSError:
        return None


class PrivateKafka:
    """A Kafka broker of the test's own, started by deploy/stack.sh in a state folder under
    tmp on free ports, with the shared state folder's jars (MLOPS_KAFKA_LIBS) and no default
    topics (MLOPS_KAFKA_TOPICS=/dev/null). Stopped and started by stack.sh with the same
    environment, so by its recorded pid."""

    def __init__(self, tmp):
        shared = Path(os.environ.get("MLOPS_STATE_DIR", ROOT / ".state"))
        self.port, self.controller_port = free_port(), free_port()
        self.state = tmp / "kafka-state"
        env = {k: v for k, v in os.environ.items() if k != "MLOPS_SERVICES_DIR"}
        env.update(MLOPS_STATE_DIR=str(self.state), MLOPS_KAFKA_PORT=str(self.port),
                   MLOPS_KAFKA_CONTROLLER_PORT=str(self.controller_port),
                   MLOPS_KAFKA_LIBS=str(shared / "kafka-libs"), MLOPS_KAFKA_TOPICS="/dev/null",
                   MLOPS_STOP_TIMEOUT="30", MLOPS_START_TIMEOUT="90")
        self.env = env
        self.brokers = f"127.0.0.1:{self.port}"

    def _stack(self, *args):
        r = subprocess.run([str(STACK), *args], env=self.env, capture_output=True, text=True,
                           timeout=240)
        assert r.returncode == 0, f"stack.sh {args}: {r.stdout}\n{r.stderr}"
        return r.stdout

    def up(self):
        out = self._stack("up", "kafka")
        if getattr(self, "guard", None) is None:
            # stack.sh starts the broker in its own session: if this process dies without
            # its teardown (a CTest timeout kills it), this watcher stops the broker
            self.guard = subprocess.Popen(
                ["bash", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; "
                 f"exec {STACK} down kafka"], env=self.env, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return out

    def close(self):
        """The fixture's teardown: stop the broker, then its watcher."""
        try:
            self.down()
        finally:
            if getattr(self, "guard", None) is not None:
                self.guard.kill()
                self.guard.wait()

    def down(self):
        return self._stack("down", "kafka")

    def pid(self):
        try:
            return int((self.state / "run" / "kafka.pid").read_text())
        except (OSError, ValueError):
            return None

    def listening(self):
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0


class Pipeline:
    """mlops-ingest -> mlops-scorer (a local model file), both supervised by services.sh in
    a services folder under tmp. `brokers`: a private broker's address (the services' config
    names it and MLOPS_KAFKA_BROKERS is dropped from their environment, which would override
    it); None for the stack's."""

    def __init__(self, tmp, exactly_once, events=EVENTS, brokers=None, scorer_keys=None):
        self.id = uuid.uuid4().hex[:10]
        self.tmp = tmp
        self.events = events
        self.brokers = brokers
        self.exactly_once = exactly_once
        t = {k: f"rel-{k}-{self.id}" for k in ("raw", "features", "dlq", "predictions",
                                               "labels")}
        self.topics = t
        create_topics(list(t.values()), brokers=brokers)
        spec = json.loads((ROOT / "examples/attrition/spec.json").read_text())
        spec["name"] = f"r{self.id}"
        spec["online"]["view"] = f"r{self.id}"
        self.spec = tmp / "spec.json"
        self.spec.write_text(json.dumps(spec))
        self.model = tmp / "model.json"
        self.seed = random.randrange(1, 10**9)
        csv = tmp / "train.csv"
        self._run([BUILD / "cli/mlopsctl", "datagen", "attrition", "--rows", "4000", "--seed",
                   str(self.seed + 1), "--out", csv])
        self._run([BUILD / "services/trainer/mlops-trainer", "fit", "--data", csv, "--spec",
                   self.spec, "--algo", "logreg", "--out", self.model])
        self.svc = tmp / "services"
        (self.svc / "conf").mkdir(parents=True)
        self.ports = {"ingest": free_port(), "scorer": free_port()}
        eos = "true" if exactly_once else "false"
        broker_key = {"kafka_brokers": brokers} if brokers else {}
        self._conf("ingest", metrics_port=self.ports["ingest"], spec=self.spec,
                   input_topic=t["raw"], features_topic=t["features"], dlq_topic=t["dlq"],
                   group_id=f"rel-ingest-{self.id}", exactly_once=eos,
                   transactional_id=f"rel-ingest-{self.id}", drain_timeout_ms=10000,
                   **broker_key)
        self.scorer_keys = dict(model=self.model, input_topic=t["features"],
                                predictions_topic=t["predictions"], labels_topic=t["labels"],
                                group_id=f"rel-scorer-{self.id}", exactly_once=eos,
                                commit_interval_ms=1000, drain_timeout_ms=10000, **broker_key)
        self.scorer_keys.update(scorer_keys or {})
        self._conf("scorer", metrics_port=self.ports["scorer"], http_port=0,
                   transactional_id=f"rel-scorer-{self.id}", **self.scorer_keys)
        env = dict(os.environ, MLOPS_SERVICES_DIR=str(self.svc), MLOPS_START_TIMEOUT="60",
                   MLOPS_STOP_TIMEOUT="30")
        if brokers:
            env.pop("MLOPS_KAFKA_BROKERS", None)
        self.env = env
        self.extra = {}  # name -> (Popen, port, log path): members run beside the supervised

    @staticmethod
    def _run(cmd):
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{cmd[0]}: {r.stderr[-2000:]}"

    def _conf(self, name, **keys):
        keys = {**KAFKA_FAST, **keys}
        path = self.svc / "conf" / f"{name}.conf"
        path.write_text("".join(f"{k} = {v}\n" for k, v in keys.items()))
        return path

    def services(self, *args, check=True):
        r = subprocess.run([str(SERVICES), *args], env=self.env, capture_output=True,
                           text=True, timeout=180)
        if check:
            assert r.returncode == 0, f"services.sh {args}: {r.stdout}\n{r.stderr}"
        return r

    def child(self, name):
        return int((self.svc / "run" / f"{name}.pid").read_text())

    def log(self, name):
        if name in self.extra:
            return self.extra[name][2].read_text()
        return (self.svc / "logs" / f"{name}.log").read_text()

    def port(self, name):
        return self.extra[name][1] if name in self.extra else self.ports[name]

    def start_scorer(self, name):
        """Another scorer in the same consumer group, run directly (services.sh supervises
        one instance per name): its own metrics port, transactional id and log."""
        port = free_port()
        conf = self._conf(name, metrics_port=port, http_port=0, transactional_id=f"rel-{name}-{self.id}",
                          **self.scorer_keys)
        log = self.svc / "logs" / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen([str(BUILD / "services/scorer/mlops-scorer"), "--config",
                                     str(conf)], env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.extra[name] = (proc, port, log)
        deadline = time.monotonic() + 60
        while ready(port) is not True:
            assert proc.poll() is None, \
                f"{name} exited with {proc.returncode}: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"{name} not ready after 60 s"
            time.sleep(0.2)
        return proc

    def generator(self, rate, *extra):
        """mlopsctl datagen: the stream (1 % bad rows on purpose) at `rate` events/s."""
        brokers = ["--brokers", self.brokers] if self.brokers else []
        return subprocess.Popen([str(BUILD / "cli/mlopsctl"), "datagen", "attrition", "--rows",
                                 str(self.events), "--seed", str(self.seed), "--topic",
                                 self.topics["raw"], "--labels-topic", self.topics["labels"],
                                 "--rate", str(rate), "--bad-fraction", "0.01", *brokers,
                                 *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env)

    def wait_settled(self, scorers=("scorer",), timeout=240):
        """Until ingest and the given scorers report lag 0 (every input placed, every feature
        scored), then a moment for the last transaction to commit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lags = [metric(self.ports["ingest"], "mlops_ingest_lag")]
            lags += [metric(self.port(s), "mlops_scorer_lag") for s in scorers]
            if all(lag == 0 for lag in lags):
                break
            time.sleep(1)
        time.sleep(3)

    def close(self):
        for proc, _, _ in self.extra.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.services("down", check=False)
        if not os.environ.get("MLOPS_TEST_KEEP_TOPICS"):  # keep them to look into a failure
            delete_topics(list(self.topics.values()), brokers=self.brokers)


def verify(p, events=None):
    """Every topic read back with read_committed: the Jepsen-style counts. Input records
    are identified by their (partition, offset) on the raw topic, which every features/1
    and dlq/1 record names as its source, and features records by their own (partition,
    offset), which every prediction names as its source (event ids alone would not do:
    the bad rows include re-sent event ids on purpose, and while Redis is down ingest's
    duplicate check lets them pass).

      lost         input records in neither features nor the DLQ; features without a
                   prediction
      duplicated   input records placed more than once; features records scored more
                   than once
      phantom      outputs naming an input that does not exist
      inconsistent a prediction whose entity or event id is not its features record's

    p: anything with .topics (raw, features, dlq, predictions); .events and .brokers if
    it has them (a Pipeline), else `events` and the stack's broker."""
    b = getattr(p, "brokers", None)
    events = events or p.events
    raw = consume_all(p.topics["raw"], expect=events, timeout=120, brokers=b)
    assert len(raw) == events, f"the generator's {events} events are not all on the raw topic"
    # read again to the end: the generator must not have written an event twice
    again = consume_all(p.topics["raw"], timeout=30, quiet=3, brokers=b)
    assert len(again) == events, f"{len(again)} raw records for {events} events"
    inputs = {(m.partition(), m.offset()) for m in raw}
    feats = {(m.partition(), m.offset()): json.loads(m.value())
             for m in consume_all(p.topics["features"], quiet=8, timeout=300, brokers=b)}
    dlq = [json.loads(m.value()) for m in consume_all(p.topics["dlq"], quiet=5, timeout=120,
                                                      brokers=b)]
    preds = [json.loads(m.value()) for m in consume_all(p.topics["predictions"], quiet=8,
                                                        timeout=300, brokers=b)]
    src = lambda r: (r["source"]["partition"], r["source"]["offset"])  # noqa: E731
    placed = Counter(src(f) for f in feats.values()) + Counter(src(d) for d in dlq)
    scored = Counter(src(x) for x in preds if x["source"]["topic"] == p.topics["features"])
    report = {
        "events": events,
        "features": len(feats), "dlq": len(dlq), "predictions": len(preds),
        "lost_input": len(inputs - set(placed)),
        "lost_predictions": len(set(feats) - set(scored)),
        "dup_placed": sum(c - 1 for c in placed.values() if c > 1),
        "dup_predictions": sum(c - 1 for c in scored.values() if c > 1),
        "phantom": len(set(placed) - inputs) + len(set(scored) - set(feats))
        + sum(1 for x in preds if x["source"]["topic"] != p.topics["features"]),
        "inconsistent": sum(1 for x in preds if src(x) in feats and (
            x["entity"], x["event_id"]) != (feats[src(x)]["entity"], feats[src(x)]["event_id"])),
    }
    p.predictions = preds  # for a test's own attribution
    print("verifier:", json.dumps(report))
    lost = sorted(inputs - set(placed))[:10]
    if lost:
        by_pos = {(m.partition(), m.offset()): m for m in raw}
        print("lost inputs:", [(pos, by_pos[pos].value()[:120]) for pos in lost])
    return report


def assert_no_loss(r):
    assert r["lost_input"] == 0, r
    assert r["lost_predictions"] == 0, r
    assert r["phantom"] == 0 and r["inconsistent"] == 0, r
    assert r["dlq"] > 0, "the data had bad rows on purpose: the DLQ path was not exercised"
