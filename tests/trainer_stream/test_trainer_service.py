"""mlops-trainer as a service, end to end on the real stack: train_request/1
records on a topic, features/1 and label/1 records on others, the real
mlops-registry on its own database. The streaming fit is checked against the
offline `mlops-trainer fit` on the same rows in the same order (itself checked
against scikit-learn and XGBoost in tests/trainer), and the lineage, the
gates, the challenger alias, de-duplication, bad requests, retention and a
registry outage are each checked on what the registry and the trainer say."""
import csv
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
TRAINER = BUILD / "services/trainer/mlops-trainer"
MLOPSCTL = BUILD / "cli/mlopsctl"
SPEC = ROOT / "examples/attrition/spec.json"
ROWS = 4000

sys.path.insert(0, str(ROOT / "tests/support"))
from kafkatest import BROKERS, admin, create_topics, delete_topics, produce  # noqa: E402

# the registry suite's fixtures (a registry on a database of its own)
_spec = importlib.util.spec_from_file_location("registry_fixtures",
                                               ROOT / "tests/registry/conftest.py")
reg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reg)


def run(*cmd, timeout=300, check=True):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


class Trainer:
    def __init__(self, tmp, topics, registry_url, token, extra=(), group=None, env=None,
                 state="state"):
        self.tmp = tmp
        self.args = [str(TRAINER), "--kafka-brokers", BROKERS, "--metrics-port", "0",
                     "--requests-topic", topics["req"], "--features-topic", topics["feat"],
                     "--labels-topic", topics["lab"], "--registry-url", registry_url,
                     "--state-dir", str(tmp / state), "--spec", str(SPEC),
                     "--group-id", group or f"trainer-{uuid.uuid4().hex[:8]}", "--retry-ms", "300",
                     "--drain-timeout-ms", "20000", *extra]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
        self.env["MLOPS_REGISTRY_TOKEN"] = token
        self.env.update(env or {})
        self.logs = []
        self.port = None
        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=self.env)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.time() + 30
        while self.port is None:
            assert self.proc.poll() is None, "".join(self.logs[-30:])
            assert time.time() < deadline, "".join(self.logs[-30:])
            time.sleep(0.05)

    def _read(self):
        for line in self.proc.stderr:
            self.logs.append(line)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == "mlops-trainer up":
                self.port = rec["metrics_port"]

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def record(self, rid):
        st, body = self.get("/api/v1/requests/" + urllib.request.quote(rid, safe=""))
        return json.loads(body) if st == 200 else None

    def wait(self, rid, states=("registered", "failed"), timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            rec = self.record(rid)
            if rec and rec["state"] in states:
                return rec
            assert self.proc.poll() is None, "".join(self.logs[-40:])
            time.sleep(0.2)
        raise AssertionError(f"request {rid} not {states}: {self.record(rid)}\n"
                             + "".join(self.logs[-40:]))

    def metric(self, name, **labels):
        _, text = self.get("/metrics")
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
                       if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        time.sleep(0.05)
        bad = [ln for ln in self.logs if "Sanitizer" in ln or "runtime error:" in ln]
        assert not bad, "".join(self.logs[-60:])
        assert self.proc.returncode == 0, "".join(self.logs[-30:])


def request(rid, model, dataset, params=None):
    return json.dumps({"schema": "train_request/1", "request_id": rid, "model": model,
                       "requested_at": "2026-12-03T00:00:00Z", "requested_by": "test",
                       "dataset": dataset, "params": params or {},
                       "reason": {"kind": "manual"}}).encode()


def produce_dataset(tmp, topics, seed, n=None):
    """Synthetic attrition rows: their features/1 records (mlopsctl features) to
    topics["feat"] and their labels to topics["lab"]. Returns the CSV, the records, the
    CSV rows."""
    n = n or ROWS
    data = tmp / "data.csv"
    run(MLOPSCTL, "datagen", "attrition", "--rows", n, "--seed", seed, "--out", data)
    feats = tmp / "feats.jsonl"
    run(MLOPSCTL, "features", "--spec", SPEC, "--csv", data, "--out", feats)
    records = [json.loads(x) for x in feats.read_text().splitlines()]
    assert len(records) == n
    with open(data) as f:
        rows = list(csv.DictReader(f))
    produce(topics["feat"], [(r["entity"].encode(), json.dumps(r).encode()) for r in records])
    produce(topics["lab"], [(r["event_id"].encode(),
                             json.dumps({"schema": "label/1", "event_id": r["event_id"],
                                         "entity": "e", "label": r["left"],
                                         "label_time": "2026-12-01T00:00:00Z"}).encode())
                            for r in rows])
    return data, records, rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer-stream")
    u = uuid.uuid4().hex[:8]
    topics = {k: f"ts-{k}-{u}" for k in ("feat", "lab", "req")}
    create_topics(list(topics.values()), partitions=1)
    data, records, rows = produce_dataset(tmp, topics, seed=5)
    db = reg.Database()
    # a fixed port, so the registry comes back where the trainer looks after a restart
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    registry = reg.Registry(tmp / "registry", db, extra=("--metrics-port", str(port)))
    token = registry.token("trainer")
    trainer = Trainer(tmp, topics, registry.base, token)
    w = dict(tmp=tmp, topics=topics, data=data, registry=registry, trainer=trainer,
             model=f"attr-{u}", db=db, token=token)
    yield w
    trainer.stop()
    registry.stop()
    db.drop()
    delete_topics(list(topics.values()))


def artifact(w, version):
    r = w["registry"].get(f"/api/v1/models/{w['model']}/versions/{version}/artifact")
    assert r.status == 200, r
    return r.json()


def alias(w, name):
    r = w["registry"].get(f"/api/2.0/mlflow/registered-models/alias?name={w['model']}"
                          f"&alias={name}")
    return int(r.json()["model_version"]["version"]) if r.status == 200 else None


def test_ranges_train_what_fit_trains_and_register(world):
    w, t = world, world["trainer"]
    feat, lab = w["topics"]["feat"], w["topics"]["lab"]
    rid = f"r1-{uuid.uuid4().hex[:6]}"
    produce(w["topics"]["req"], [(w["model"].encode(), request(
        rid, w["model"], {"kind": "ranges", "ranges": [
            {"topic": feat, "partition": 0, "from": 0, "to": ROWS},
            {"topic": lab, "partition": 0, "from": 0, "to": ROWS}]}, {"algo": "logreg"}))])
    rec = t.wait(rid)
    assert rec["state"] == "registered", rec
    assert rec["rows"] == ROWS and rec["gates_passed"] is True
    doc = artifact(w, rec["version"])
    src = doc["lineage"]["source"]
    assert src["kind"] == "kafka" and src["request_id"] == rid and src["rows"] == ROWS
    assert [(x["topic"], x["partition"], x["from"], x["to"], x["records"])
            for x in src["ranges"]] == [(feat, 0, 0, ROWS, ROWS), (lab, 0, 0, ROWS, ROWS)]
    assert doc["name"] == w["model"]
    # the offline fit on the CSV the records came from, same order, same seed
    off = w["tmp"] / "offline.json"
    run(TRAINER, "fit", "--data", w["data"], "--spec", SPEC, "--algo", "logreg", "--seed", 1,
        "--quiet", "--out", off)
    ref = json.loads(off.read_text())
    assert len(doc["logreg"]["coef"]) == len(ref["logreg"]["coef"])
    for a, b in zip(doc["logreg"]["coef"], ref["logreg"]["coef"]):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    for k in ("auc", "log_loss", "f1", "brier"):
        assert doc["metrics"][k] == pytest.approx(ref["metrics"][k], rel=1e-9), k
    assert doc["threshold"] == pytest.approx(ref["threshold"], rel=1e-9)
    # gates: no champion yet, so the drop gate says why it was not evaluated
    res = {g["gate"]: g for g in doc["gates"]["results"]}
    assert res["min_rows"]["passed"] and res["min_rows"]["value"] == ref["metrics"]["rows_train"]
    assert "no champion" in res["max_auc_drop"]["note"]
    # the challenger alias moved to it, by the trainer's token
    assert rec["alias"] == "challenger"
    assert alias(w, "challenger") == rec["version"]
    assert alias(w, "champion") is None
    w["v1"] = rec["version"]


def test_same_request_id_is_not_trained_twice(world):
    w, t = world, world["trainer"]
    assert "v1" in w
    before = t.metric("mlops_trainer_requests_total", outcome="skipped")
    assert t.get("/health")[0] == 200
    src = artifact(w, w["v1"])["lineage"]["source"]
    rid = src["request_id"]
    produce(w["topics"]["req"], [(w["model"].encode(), request(
        rid, w["model"], {"kind": "latest", "latest": 500}))])
    deadline = time.time() + 60
    while t.metric("mlops_trainer_requests_total", outcome="skipped") < before + 1:
        assert time.time() < deadline, "".join(t.logs[-20:])
        time.sleep(0.2)
    r = w["registry"].get(f"/api/v1/models/{w['model']}/versions/{w['v1'] + 1}/artifact")
    assert r.status == 404, r


def test_bad_requests_fail_alone_and_latest_n_against_the_champion(world):
    w, t = world, world["trainer"]
    feat = w["topics"]["feat"]
    assert "v1" in w
    # v1 becomes champion (an admin's move): the next version is gated against it
    r = w["registry"].post(f"/api/v1/models/{w['model']}/aliases/champion/promote",
                           {"version": w["v1"]})
    assert r.status == 200, r
    failed_before = t.metric("mlops_trainer_requests_total", outcome="failed")
    past, param, good = (f"{k}-{uuid.uuid4().hex[:6]}" for k in ("past", "param", "good"))
    produce(w["topics"]["req"], [
        (b"x", b"{not json"),
        (b"x", json.dumps({"schema": "train_request/1", "request_id": "no-model"}).encode()),
        (w["model"].encode(), request(past, w["model"], {"kind": "ranges", "ranges": [
            {"topic": feat, "partition": 0, "from": 10, "to": ROWS + 50}]})),
        (w["model"].encode(), request(param, w["model"], {"kind": "latest", "latest": 100},
                                      {"out": "/etc/passwd"})),
        (w["model"].encode(), request(good, w["model"], {"kind": "latest", "latest": 1000},
                                      {"algo": "gbdt", "n_trees": 20, "max_depth": 3})),
    ])
    rec = t.wait(good)
    assert rec["state"] == "registered", rec
    p = t.record(past)
    assert p["state"] == "failed"
    assert f"{feat}:0:10-{ROWS + 50}" in p["error"] and "past the log end" in p["error"], p
    q = t.record(param)
    assert q["state"] == "failed" and "params.out is not a training setting" in q["error"], q
    assert t.metric("mlops_trainer_requests_total", outcome="failed") >= failed_before + 4
    doc = artifact(w, rec["version"])
    assert doc["algo"] == "gbdt" and len(doc["gbdt"]["trees"]) <= 20
    src = doc["lineage"]["source"]
    assert src["latest"] == 1000 and src["rows"] == 1000 and rec["rows"] == 1000
    # the newest events: the range read back from the end covers the last 1000
    assert src["ranges"][0]["to"] == ROWS and src["ranges"][0]["from"] <= ROWS - 1000
    g = doc["gates"]
    assert g["champion"]["version"] == w["v1"]
    drop = [x for x in g["results"] if x["gate"] == "max_auc_drop"][0]
    assert drop["value"] == pytest.approx(g["champion"]["auc"] - doc["metrics"]["auc"])
    assert drop["passed"] == (drop["value"] <= 0.02)
    # the challenger follows only versions that passed their gates
    assert alias(w, "challenger") == (rec["version"] if g["passed"] else w["v1"])


def test_deleted_offsets_fail_naming_the_range(world):
    w, t = world, world["trainer"]
    from confluent_kafka import TopicPartition
    feat = w["topics"]["feat"]
    a = admin()  # alive until the future resolves
    fut = a.delete_records([TopicPartition(feat, 0, 100)])
    for f in fut.values():
        f.result(30)
    rid = f"ret-{uuid.uuid4().hex[:6]}"
    produce(w["topics"]["req"], [(w["model"].encode(), request(rid, w["model"], {
        "kind": "ranges", "ranges": [{"topic": feat, "partition": 0, "from": 0, "to": 500}]}))])
    rec = t.wait(rid)
    assert rec["state"] == "failed", rec
    assert f"{feat}:0:0-500" in rec["error"] and "deleted by retention" in rec["error"], rec
    assert "oldest kept is 100" in rec["error"], rec


def test_registry_outage_is_retried_not_lost(world):
    w, t = world, world["trainer"]
    registry = w["registry"]
    registry.stop()
    rid = f"out-{uuid.uuid4().hex[:6]}"
    try:
        produce(w["topics"]["req"], [(w["model"].encode(), request(
            rid, w["model"], {"kind": "latest", "latest": 800}, {"algo": "logreg"}))])
        rec = t.wait(rid, states=("retrying",), timeout=120)
        assert "registry" in rec["error"], rec
    finally:
        registry.start()
    rec = t.wait(rid)
    assert rec["state"] == "registered", rec
    assert artifact(w, rec["version"])["lineage"]["source"]["request_id"] == rid


def test_mlopsctl_train_wait(world):
    w, t = world, world["trainer"]
    feat, lab = w["topics"]["feat"], w["topics"]["lab"]
    r = run(MLOPSCTL, "train", "--model", w["model"], "--range",
            f"{feat}:0:200-1400,{lab}:0:0-{ROWS}", "--algo", "logreg", "--topic",
            w["topics"]["req"], "--kafka-brokers", BROKERS, "--trainer-url",
            f"http://127.0.0.1:{t.port}", "--wait", "--timeout-s", 240)
    assert "filed train request" in r.stdout
    line = r.stdout.strip().splitlines()[-1]
    assert f"{w['model']} version" in line and "registered from 1200 rows" in line, r.stdout
    ver = int(line.split(" version ")[1].split()[0])
    src = artifact(w, ver)["lineage"]["source"]
    assert src["ranges"][0]["from"] == 200 and src["ranges"][0]["to"] == 1400
    bad = run(MLOPSCTL, "train", "--model", w["model"], "--range", "features:zero:1-2",
              check=False)
    assert bad.returncode == 2 and "--range 'features:zero:1-2'" in bad.stderr
