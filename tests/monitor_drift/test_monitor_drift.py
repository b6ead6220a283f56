"""End to end on the real stack: mlops-monitor's drift pipeline.

Attrition data with covariate drift from row 3000 (mlopsctl datagen), two
logistic models trained on pre-drift rows (mlops-trainer fit): one with a
2,400-row reference (Evidently's rules pick Wasserstein / Jensen-Shannon),
one with a 720-row reference (KS / chi-square / Z). Features from the
offline ingest path (mlopsctl features) are produced to a unique features
topic; the monitor reads them with the model files given by --model.

Checks: no dataset-drift alert on the undrifted 3,000 records; the alert
fires by the first tick after the drift point (one window); one
train_request/1 for the model (cooldown), valid against its schema; every
alert/1 valid; each input's test, value and decision, and the dataset drift
share, on /api/v1/drift, /metrics and `mlopsctl drift status` equal a
recomputation with SciPy/NumPy of the same window against the same reference
sample (1e-9 relative); the alert state survives a restart (no second
firing, no second request)."""
import json
import math
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from scipy import stats
from scipy.spatial import distance

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
BROKERS = os.environ.get("MLOPS_TEST_KAFKA_BROKERS", "127.0.0.1:9092")
REDIS = os.environ.get("MLOPS_TEST_REDIS_URL", "redis://127.0.0.1:6380")
MLOPSCTL = BUILD / "cli" / "mlopsctl"
TRAINER = BUILD / "services" / "trainer" / "mlops-trainer"
MONITOR = BUILD / "services" / "monitor" / "mlops-monitor"
SPEC = ROOT / "examples" / "attrition" / "spec.json"
ROWS, DRIFT_AT, WIN, STEP = 6000, 3000, 1000, 500
DRIFT_SHARE = 0.25
TWIN = "1000d+30d"  # an event-time window: about 1,000 events (datagen steps one day)
SWIN = "1000d/250d+30d"  # the same, sliding: a window every 250 days
REL = 1e-9


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- the oracle: Evidently's default test per column, computed with SciPy -----------

def finite(xs):
    return [x for x in xs if not (isinstance(x, float) and not math.isfinite(x))]


def oracle_column(numeric, ref, cur):
    ref, cur = finite(ref), finite(cur)
    nuniq = len(set(ref) | set(cur))
    if len(ref) <= 1000:
        if numeric and nuniq > 5:
            p = stats.ks_2samp(np.array(ref, float), np.array(cur, float)).pvalue
            return "ks", p, 0.05, p <= 0.05
        if nuniq > 2:
            keys = sorted(set(ref) | set(cur), key=str)
            rc = np.array([ref.count(k) for k in keys], float)
            cc = np.array([cur.count(k) for k in keys], float)
            exp = rc / len(ref) * len(cur)
            if np.any((exp == 0) & (cc > 0)):
                return "chisquare", 0.0, 0.05, True
            p = stats.chisquare(cc, exp).pvalue
            return "chisquare", p, 0.05, p < 0.05
        lo = min(set(ref) | set(cur), key=lambda v: (str(type(v)), v))
        if len(set(ref) | set(cur)) == 1:
            return "z", 1.0, 0.05, False
        x1 = sum(1 for v in ref if v != lo)
        x2 = sum(1 for v in cur if v != lo)
        n1, n2 = len(ref), len(cur)
        pp = (x1 + x2) / (n1 + n2)
        z = (x1 / n1 - x2 / n2) / math.sqrt(pp * (1 - pp) * (1 / n1 + 1 / n2))
        p = math.erfc(abs(z) / math.sqrt(2))
        return "z", p, 0.05, p < 0.05
    if numeric and nuniq > 5:
        r, c = np.array(ref, float), np.array(cur, float)
        v = stats.wasserstein_distance(r, c) / max(np.std(r), 0.001)
        return "wasserstein", v, 0.1, v >= 0.1
    if numeric and len(set(ref)) > 20:
        r, c = np.array(ref, float), np.array(cur, float)
        edges = np.histogram_bin_edges(np.concatenate([r, c]), bins="sturges")
        p = np.histogram(r, edges)[0] / len(r)
        q = np.histogram(c, edges)[0] / len(c)
    else:
        keys = sorted(set(ref) | set(cur), key=str)
        p = np.array([ref.count(k) for k in keys], float) / len(ref)
        q = np.array([cur.count(k) for k in keys], float) / len(cur)
    v = distance.jensenshannon(p, q)
    return "jensenshannon", v, 0.1, v >= 0.1


def event_ms(s):
    import datetime
    dt = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return int(dt.replace(microsecond=0).timestamp()) * 1000 + dt.microsecond // 1000


def close(a, b):
    if a == b:
        return True
    return abs(a - b) <= REL * max(abs(a), abs(b)) or abs(a - b) <= 1e-12


# ---- fixtures ---------------------------------------------------------------------

class Topic:
    """Reads a topic from the start and keeps what it read."""

    def __init__(self, name):
        self.name = name
        self.c = Consumer({"bootstrap.servers": BROKERS, "group.id": "t-" + uuid.uuid4().hex,
                           "enable.auto.commit": False, "isolation.level": "read_committed"})
        self.c.assign([TopicPartition(name, 0, 0)])
        self.msgs = []

    def drain(self, quiet=1.5, limit=20.0):
        end = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < end and time.monotonic() - last < quiet:
            m = self.c.poll(0.2)
            if m is None or m.error():
                continue
            self.msgs.append((m.key().decode() if m.key() else None, json.loads(m.value())))
            last = time.monotonic()
        return self.msgs

    def close(self):
        self.c.close()


class Monitor:
    def __init__(self, work, topics, models, state_key, group, registry_url="", extra=()):
        self.port = free_port()
        self.args = [MONITOR, "--metrics-port", self.port, "--features-topic", topics["features"],
                     "--models-topic", topics["models"], "--alerts-topic", topics["alerts"],
                     "--predictions-topic", topics.get("predictions", ""),
                     "--labels-topic", topics.get("labels", ""),
                     "--train-requests-topic", topics["train"], "--group-id", group,
                     "--model", ",".join(str(m) for m in models),
                     "--windows", f"{WIN},{WIN}/{STEP},{TWIN},{SWIN}", "--drift-share", DRIFT_SHARE,
                     "--alert-state-key", state_key, "--redis-url", REDIS,
                     "--kafka-brokers", BROKERS, "--retrain-latest", 5000,
                     "--registry-url", registry_url, "--registry-token", "tok-test", *extra]
        self.log = open(work / f"monitor-{time.monotonic_ns()}.log", "w")
        self.proc = subprocess.Popen([str(a) for a in self.args], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                self.get("/ready")
                return
            except OSError:
                assert self.proc.poll() is None, "monitor exited at start"
                time.sleep(0.1)
        raise AssertionError("monitor not ready")

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return r.read().decode()

    def drift(self, model=None):
        return json.loads(self.get("/api/v1/drift" + (f"?model={model}" if model else "")))

    def wait_events(self, n, limit=60):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            ms = self.drift()["models"]
            if ms and all(m["events"] >= n for m in ms):
                return
            time.sleep(0.2)
        raise AssertionError(f"monitor did not reach {n} events")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self.log.close()
        return rc


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("mondrift")
    run(MLOPSCTL, "datagen", "attrition", "--rows", ROWS, "--seed", 11, "--drift", "covariate",
        "--drift-at", DRIFT_AT / ROWS, "--out", work / "all.csv")
    lines = (work / "all.csv").read_text().splitlines(keepends=True)
    (work / "big.csv").write_text("".join(lines[: 1 + DRIFT_AT]))
    (work / "small.csv").write_text("".join(lines[: 1 + 900]))
    run(TRAINER, "fit", "--data", work / "big.csv", "--spec", SPEC, "--out", work / "big.json",
        "--name", "attrition-mon")
    run(TRAINER, "fit", "--data", work / "small.csv", "--spec", SPEC, "--out",
        work / "small.json", "--name", "attrition-mon-small")
    run(MLOPSCTL, "features", "--spec", SPEC, "--csv", work / "all.csv", "--out",
        work / "features.jsonl")
    feats = [json.loads(x) for x in (work / "features.jsonl").read_text().splitlines()]
    assert len(feats) == ROWS
    sfx = uuid.uuid4().hex[:10]
    topics = {k: f"mon-{k}-{sfx}"
              for k in ("features", "models", "alerts", "train", "predictions", "labels")}
    admin = AdminClient({"bootstrap.servers": BROKERS})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics.values()]).values():
        f.result()
    prod = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True})

    def produce(lo, hi):
        for r in feats[lo:hi]:
            prod.produce(topics["features"], json.dumps(r).encode(), r["entity"].encode())
        prod.flush(30)

    models = {m: json.loads((work / f"{f}.json").read_text())
              for m, f in (("attrition-mon", "big"), ("attrition-mon-small", "small"))}
    st = {"work": work, "feats": feats, "topics": topics, "produce": produce, "models": models,
          "state_key": f"mlops:test:monitor:{sfx}", "group": f"mon-{sfx}",
          "alerts": Topic(topics["alerts"]), "train": Topic(topics["train"])}
    st["monitor"] = Monitor(work, topics, [work / "big.json", work / "small.json"],
                            st["state_key"], st["group"])
    yield st
    if st["monitor"].proc.poll() is None:
        assert st["monitor"].stop() == 0
    st["alerts"].close()
    st["train"].close()
    admin.delete_topics(list(topics.values()))


def dataset_firing(alerts, model, window=None):
    return [a for _, a in alerts if a["alertname"] == "dataset_drift" and a["state"] == "firing"
            and a.get("model") == model and (window is None or a["labels"]["window"] == window)]


# ---- the scenario, in order -------------------------------------------------------

def test_no_dataset_drift_before_the_drift_point(stack):
    stack["produce"](0, DRIFT_AT)
    stack["monitor"].wait_events(DRIFT_AT)
    alerts = stack["alerts"].drain()
    assert not dataset_firing(alerts, "attrition-mon"), [
        (a["labels"], a.get("value")) for a in dataset_firing(alerts, "attrition-mon")]
    st = stack["monitor"].drift("attrition-mon")["models"][0]
    w = {x["window"]: x for x in st["windows"]}
    assert w[str(WIN)]["ticks"] == DRIFT_AT // WIN
    assert w[str(WIN)]["drift_share"] < DRIFT_SHARE
    # (the small model's KS tests at p <= 0.05 may fire on its own non-stationary
    # inputs, such as the rolling counts; only the big model's decisions are asserted)
    assert not [r for _, r in stack["train"].drain(quiet=0.5) if r["model"] == "attrition-mon"]


def test_dataset_drift_fires_within_one_window(stack):
    stack["produce"](DRIFT_AT, DRIFT_AT + WIN)
    stack["monitor"].wait_events(DRIFT_AT + WIN)
    alerts = stack["alerts"].drain()
    fired = dataset_firing(alerts, "attrition-mon", str(WIN))
    assert len(fired) == 1, fired
    schema = json.loads((ROOT / "schemas" / "alert.schema.json").read_text())
    for key, a in alerts:
        jsonschema.validate(a, schema)
        assert key == a["fingerprint"]
    assert fired[0]["value"] >= DRIFT_SHARE and fired[0]["threshold"] == DRIFT_SHARE


def test_one_train_request_per_incident(stack):
    stack["produce"](DRIFT_AT + WIN, ROWS)
    stack["monitor"].wait_events(ROWS)
    stack["alerts"].drain()
    reqs = [r for k, r in stack["train"].drain() if r["model"] == "attrition-mon"]
    assert len(reqs) == 1, reqs
    schema = json.loads((ROOT / "schemas" / "train_request.schema.json").read_text())
    jsonschema.validate(reqs[0], schema)
    assert reqs[0]["dataset"] == {"kind": "latest", "latest": 5000}
    assert reqs[0]["reason"]["alertname"] == "dataset_drift"
    # both windows fired, the second inside the cooldown
    assert dataset_firing(stack["alerts"].msgs, "attrition-mon", f"{WIN}/{STEP}")


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r'^(\w+)\{(.*)\} (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


@pytest.mark.parametrize("model", ["attrition-mon", "attrition-mon-small"])
def test_statistics_agree_with_scipy(stack, model):
    mon = stack["monitor"]
    doc = stack["models"][model]
    st = mon.drift(model)["models"][0]
    metrics = parse_metrics(mon.get("/metrics"))
    table = run(MLOPSCTL, "drift", "status", "--model", model, "--window", str(WIN),
                "--monitor-url", mon.url).stdout
    cli_json = json.loads(run(MLOPSCTL, "drift", "status", "--model", model, "--json",
                              "--monitor-url", mon.url).stdout)
    assert cli_json["models"][0]["windows"] == st["windows"]
    feats = stack["feats"][:ROWS]
    tests_seen = set()
    for w in st["windows"]:
        if "span_ms" in w:  # the event-time window: the records of its last closed span
            lo, hi = w["tick_start_ms"], w["tick_start_ms"] + w["span_ms"]
            assert w["window"] in (TWIN, SWIN)
            assert w["ticks"] >= (4 if w["window"] == TWIN else 16), w["ticks"]
            assert w["hop_ms"] == (w["span_ms"] if w["window"] == TWIN else w["span_ms"] // 4)
            win_feats = [r for r in feats if lo <= event_ms(r["event_time"]) < hi]
            assert 500 < len(win_feats) < 1500
        else:
            assert w["tick_event"] == ROWS
            win_feats = None
        drifted = 0
        for prof, got in zip(doc["profile"]["inputs"], w["features"]):
            col = prof["column"]
            assert got["feature"] == col
            numeric = prof["kind"] == "numeric"
            vals = [r["values"].get(col) for r in (win_feats or feats)]
            vals = [v for v in vals if v is not None]
            ref = prof["sample"]
            if not numeric:  # categories compare as text; numbers by value
                vals = [v if isinstance(v, str) else repr(float(v)) for v in vals]
                ref = [v if isinstance(v, str) else repr(float(v)) for v in ref]
            cur = vals if win_feats else vals[-WIN:]
            test, value, thr, dec = oracle_column(numeric, ref, cur)
            tests_seen.add(test)
            assert got["test"] == test, col
            assert close(got["value"], value), (col, got["value"], value)
            assert got["threshold"] == thr and got["drifted"] == dec, col
            assert got["n_cur"] == len(cur)
            drifted += dec
            g = [v for lab, v in metrics["mlops_monitor_drift_value"]
                 if lab["model"] == model and lab["feature"] == col and lab["window"] == w["window"]
                 and lab["test"] == test]
            assert len(g) == 1 and close(g[0], value), (col, g)
            # a series of a test no longer chosen for the input is retired (NaN)
            live = [lab["test"] for lab, v in metrics["mlops_monitor_drift_value"]
                    if lab["model"] == model and lab["feature"] == col
                    and lab["window"] == w["window"] and not math.isnan(v)]
            assert live == [test], (col, live)
            if w["window"] == str(WIN):
                row = [ln for ln in table.splitlines() if ln[:32].rstrip() == col]
                assert len(row) == 1
                parts = row[0][32:].split()
                assert parts[0] == test and parts[-1] == ("yes" if dec else "no")
                assert math.isclose(float(parts[1]), value, rel_tol=1e-5, abs_tol=1e-12)
        share = drifted / len(w["features"])
        assert close(w["drift_share"], share)
        assert w["dataset_drift"] == (share >= DRIFT_SHARE)
        g = [v for lab, v in metrics["mlops_monitor_dataset_drift_share"]
             if lab["model"] == model and lab["window"] == w["window"]]
        assert len(g) == 1 and close(g[0], share)
    # errors name the problem and exit non-zero
    r = subprocess.run([str(MLOPSCTL), "drift", "status", "--model", "nope", "--monitor-url",
                        mon.url], capture_output=True, text=True)
    assert r.returncode == 1 and "HTTP 404" in r.stderr and "nope" in r.stderr, r.stderr
    r = subprocess.run([str(MLOPSCTL), "drift", "status", "--monitor-url",
                        f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True)
    assert r.returncode == 1 and "127.0.0.1" in r.stderr, r.stderr
    r = subprocess.run([str(MLOPSCTL), "drift", "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2 and "frobnicate" in r.stderr
    if model == "attrition-mon":
        assert tests_seen <= {"wasserstein", "jensenshannon"} and len(tests_seen) == 2
    else:
        assert {"ks", "chisquare"} <= tests_seen


def test_alert_state_survives_restart(stack):
    assert stack["monitor"].stop() == 0
    n_alerts = len(stack["alerts"].msgs)
    stack["monitor"] = Monitor(stack["work"], stack["topics"],
                               [stack["work"] / "big.json", stack["work"] / "small.json"],
                               stack["state_key"], stack["group"])
    # the windows start empty: feed another drifted window (the last rows again)
    stack["produce"](ROWS - WIN, ROWS)
    stack["monitor"].wait_events(WIN)
    new = stack["alerts"].drain()[n_alerts:]
    assert not dataset_firing(new, "attrition-mon"), new
    assert [r for _, r in stack["train"].drain() if r["model"] == "attrition-mon"].__len__() == 1
    st = stack["monitor"].drift("attrition-mon")["models"][0]
    assert {x["window"]: x for x in st["windows"]}[str(WIN)]["dataset_drift"]


# ---- the champion's reference profile from the models topic -------------------------

class FakeRegistry:
    """Serves artifacts at /api/v1/models/{name}/versions/{v}/artifact and
    records the requests (path, Authorization header)."""

    def __init__(self, artifacts):
        import http.server
        import threading
        self.artifacts = artifacts  # (name, version) -> bytes
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization")))
                m = re.match(r"^/api/v1/models/([^/]+)/versions/(\d+)/artifact$", self.path)
                body = outer.artifacts.get((m.group(1), int(m.group(2)))) if m else None
                self.send_response(200 if body else 404)
                body = body or b'{"error":"not_found"}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def model_event(name, version, sha, outbox_id, deleted=False):
    return {"schema": "model_event/1", "model": name, "outbox_id": outbox_id, "actor": "test",
            "request_id": f"r{outbox_id}", "at_ms": int(time.time() * 1000),
            "change": {"action": "set_alias", "alias": "champion", "to_version": version},
            "snapshot": {"name": name, "deleted": deleted, "latest_version": version,
                         "aliases": {"champion": {"version": version, "stage": "Production",
                                                  "sha256": sha}},
                         "versions": [{"version": version, "stage": "Production", "sha256": sha,
                                       "size_bytes": 1, "gates_passed": True, "source": "x"}],
                         "deployment": {"mode": "canary", "canary_share": 0, "champion": version,
                                        "challenger": None, "shadow": None}}}


def test_champion_profile_follows_the_models_topic(stack):
    import hashlib
    work = stack["work"]
    big = (work / "big.json").read_bytes()
    small = (work / "small.json").read_bytes()
    # the small model's artifact under the big model's name, as version 4
    doc = json.loads(small)
    doc["name"] = "attrition-mon"
    v4 = json.dumps(doc).encode()
    reg = FakeRegistry({("attrition-mon", 3): big, ("attrition-mon", 4): v4,
                        ("attrition-mon", 5): big})
    sfx = uuid.uuid4().hex[:8]
    topics = {k: f"mon-{k}2-{sfx}" for k in ("models", "features", "alerts", "train")}
    topics.update(predictions="", labels="")
    admin = AdminClient({"bootstrap.servers": BROKERS})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics.values() if t]).values():
        f.result()
    prod = Producer({"bootstrap.servers": BROKERS})

    def send(ev):
        prod.produce(topics["models"], json.dumps(ev).encode(), ev["model"].encode())
        prod.flush(10)

    mon = None
    try:
        mon = Monitor(work, topics, [], stack["state_key"] + ":models", f"mon-m-{sfx}",
                      registry_url=reg.url)
        sha = lambda b: hashlib.sha256(b).hexdigest()

        def wait_version(v, limit=20):
            end = time.monotonic() + limit
            while time.monotonic() < end:
                ms = mon.drift()["models"]
                if v is None and not ms:
                    return
                if ms and ms[0]["version"] == v:
                    return ms[0]
                time.sleep(0.2)
            raise AssertionError(f"version {v} not loaded: {mon.drift()}")

        assert mon.drift()["models"] == []
        send(model_event("attrition-mon", 3, sha(big), 1))
        st = wait_version("3")
        assert len(st["windows"][0]["features"]) == len(stack["models"]["attrition-mon"]
                                                        ["profile"]["inputs"])
        # drifted records: version 3's dataset-drift alert fires ...
        for r in stack["feats"][ROWS - WIN:ROWS]:
            prod.produce(topics["features"], json.dumps(r).encode(), r["entity"].encode())
        prod.flush(30)
        mon.wait_events(WIN)
        alerts = Topic(topics["alerts"])
        v3 = [a for _, a in alerts.drain() if a["alertname"] == "dataset_drift"
              and a["labels"]["version"] == "3" and a["labels"]["window"] == str(WIN)]
        assert [a["state"] for a in v3] == ["firing"] and v3[0]["version"] == 3
        send(model_event("attrition-mon", 4, sha(v4), 2))
        wait_version("4")
        # ... and resolves when version 4 replaces it
        v3 = [a for _, a in alerts.drain() if a["alertname"] == "dataset_drift"
              and a["labels"]["version"] == "3" and a["labels"]["window"] == str(WIN)]
        alerts.close()
        assert [a["state"] for a in v3] == ["firing", "resolved"], v3
        # a wrong sha256 is refused: the previous version stays
        send(model_event("attrition-mon", 5, "0" * 64, 3))
        time.sleep(1.5)
        assert mon.drift()["models"][0]["version"] == "4"
        assert "mlops_monitor_model_load_failures_total 1" in mon.get("/metrics")
        # the same version again: no download
        n = len(reg.requests)
        send(model_event("attrition-mon", 4, sha(v4), 4))
        time.sleep(1.0)
        assert len(reg.requests) == n
        # deleted: no longer monitored
        send(model_event("attrition-mon", 4, sha(v4), 5, deleted=True))
        wait_version(None)
        assert reg.requests and all(
            p.startswith("/api/v1/models/attrition-mon/versions/") and auth == "Bearer tok-test"
            for p, auth in reg.requests)
    finally:
        if mon:
            mon.stop()
        reg.close()
        admin.delete_topics([t for t in topics.values() if t])



# ---- prediction drift and realized performance ------------------------------------

def ddm_reference(errors):
    """DDM (Gama et al. 2004) as perf.h states it: from the 30th value on, keep
    the minimum of p + s (while p > 0); warning at p_min + 2 s_min, drift at p_min + 3 s_min,
    then start again. Returns (final state, drifts)."""
    n = e = 0
    pmin = smin = 0.0
    state, drifts = 0, 0
    for err in errors:
        n += 1
        e += err
        if n < 30:
            state = 0
            continue
        p = e / n
        s = math.sqrt(p * (1 - p) / n)
        if p > 0 and (smin == 0 or p + s < pmin + smin):
            pmin, smin = p, s
        if smin == 0:
            state = 0
        elif p + s >= pmin + 3 * smin:
            state, drifts = 2, drifts + 1
            n = e = 0
            pmin = smin = 0.0
        elif p + s >= pmin + 2 * smin:
            state = 1
        else:
            state = 0
    return state, drifts


def adwin_reference(errors, cap=5000, delta=0.002):
    """ADWIN0 as perf.h states it. Returns (width, error rate, shrinks)."""
    w, shrinks = [], 0
    for x in errors:
        w.append(int(x))
        if len(w) > cap:
            w.pop(0)
        shrunk = False
        while len(w) >= 10:
            n, s = len(w), sum(w)
            var = (s / n) * (1 - s / n)
            lg = math.log(2 / (delta / n))
            s0, cut = 0, False
            for n0 in range(1, n):
                s0 += w[n0 - 1]
                n1 = n - n0
                if n0 < 5 or n1 < 5:
                    continue
                m = 1 / (1 / n0 + 1 / n1)
                if abs(s0 / n0 - (s - s0) / n1) >= math.sqrt(2 * var * lg / m) + 2 * lg / (3 * m):
                    cut = True
                    break
            if not cut:
                break
            w.pop(0)
            shrunk = True
        shrinks += shrunk
    return len(w), sum(w) / len(w), shrinks


def psi_evidently(p, q):
    def fill(x):
        x = np.array(x, float)
        nz = x[x > 0]
        mn = nz.min() if len(nz) else np.inf
        x[x == 0] = mn / 1e6 if mn <= 0.0001 else 0.0001
        return x
    p, q = fill(p), fill(q)
    return float(np.sum((p - q) * np.log(p / q)))


def test_prediction_drift_and_performance_agree_with_sklearn(stack):
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score
    work, mon, topics = stack["work"], stack["monitor"], stack["topics"]
    doc = stack["models"]["attrition-mon"]
    run(MLOPSCTL, "predict", "--model", work / "big.json", "--data", work / "all.csv", "--out",
        work / "scores.csv")
    scores = [float(x) for x in (work / "scores.csv").read_text().split()[1:]]
    rows = (work / "all.csv").read_text().splitlines()
    head = rows[0].split(",")
    li = head.index("left")
    labels = [r.split(",")[li] for r in rows[1:]]
    feats = stack["feats"]
    thr = doc["threshold"]
    lo = ROWS - WIN  # drifted rows: the score distribution moves
    prod = Producer({"bootstrap.servers": BROKERS})
    pschema = json.loads((ROOT / "schemas" / "prediction.schema.json").read_text())
    lschema = json.loads((ROOT / "schemas" / "label.schema.json").read_text())
    for i in range(lo, ROWS):
        f = feats[i]
        rec = {"schema": "prediction/1", "event_id": f["event_id"], "entity": f["entity"],
               "model": {"name": "attrition-mon", "version": 0, "sha256": "0" * 64,
                         "algo": "logreg"},
               "role": "champion", "served": True, "score": scores[i], "threshold": thr,
               "decision": scores[i] >= thr, "features": {}, "degraded": False, "imputed": [],
               "freshness": {"event_age_ms": None, "online_age_ms": None,
                             "online": "not_needed"},
               "source": {"topic": topics["features"], "partition": 0, "offset": i},
               "scored_at": "2026-01-01T00:00:00Z",
               "latency_us": {"decode": 1, "redis": 0, "predict": 1, "encode": 1}}
        if i == lo:  # the records are the scorer's contract
            jsonschema.validate(rec, pschema)
        prod.produce(topics["predictions"], json.dumps(rec).encode(), f["entity"].encode())
    # a label for an event nobody predicted: waits, never joins
    prod.produce(topics["labels"], json.dumps(
        {"schema": "label/1", "event_id": "nobody", "entity": "x", "label": "yes",
         "label_time": "2026-01-01T00:00:00Z"}).encode(), b"x")
    prod.flush(30)
    end = time.monotonic() + 30
    while "mlops_monitor_predictions_total %d" % WIN not in mon.get("/metrics"):
        assert time.monotonic() < end, "predictions not consumed"
        time.sleep(0.2)
    # labels after the predictions: the join order is the label order
    for i in range(lo, ROWS):
        f = feats[i]
        lab = {"schema": "label/1", "event_id": f["event_id"], "entity": f["entity"],
               "label": labels[i], "label_time": "2026-01-01T00:00:00Z"}
        if i == lo:
            jsonschema.validate(lab, lschema)
        prod.produce(topics["labels"], json.dumps(lab).encode(), f["entity"].encode())
    prod.flush(30)
    end = time.monotonic() + 30
    while True:
        var = mon.drift("attrition-mon")["models"][0]["variants"]
        if var and var[0]["labelled"] >= WIN:
            break
        assert time.monotonic() < end, "labels not joined"
        time.sleep(0.2)
    assert var[0]["labelled"] == WIN and var[0]["role"] == "champion"
    s = np.array(scores[lo:ROWS])
    y = np.array([1 if x == doc["label"]["positive"] else 0 for x in labels[lo:ROWS]])
    dec = (s >= thr).astype(int)
    edges = np.array(doc["profile"]["scores"]["edges"])
    ref = np.array(doc["profile"]["scores"]["counts"], float)
    cur = np.histogram(s, edges)[0].astype(float)
    js = distance.jensenshannon(ref, cur)
    psi = psi_evidently(ref / ref.sum(), cur / cur.sum())
    c = np.clip(s, 1e-15, 1 - 1e-15)
    ll = float(-np.mean(y * np.log(c) + (1 - y) * np.log1p(-c)))
    auc = roc_auc_score(y, s)
    cal_true, cal_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    cal_n = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], s), minlength=10)
    cal_n = cal_n[cal_n > 0]
    ece = float(np.sum(cal_n / len(s) * np.abs(cal_true - cal_pred)))
    mce = float(np.max(np.abs(cal_true - cal_pred)))
    metrics = parse_metrics(mon.get("/metrics"))
    for w in var[0]["windows"]:
        pd_, pf = w["prediction_drift"], w["performance"]
        assert pd_["n"] == WIN and pf["n"] == WIN and pf["positives"] == int(y.sum())
        assert close(pd_["jensenshannon"], js), (pd_, js)
        assert close(pd_["psi"], psi), (pd_, psi)
        assert pd_["drifted"] == (js >= 0.1)
        assert close(pf["auc"], auc), (pf, auc)
        assert close(pf["accuracy"], accuracy_score(y, dec))
        assert close(pf["log_loss"], ll)
        assert close(pf["brier"], brier_score_loss(y, s))
        assert close(pf["auc_drop"], doc["metrics"]["auc"] - auc)
        # calibration: the reliability curve of scikit-learn, its bins' sizes as it
        # assigns them, and ECE / MCE from those
        got = pf["calibration"]
        assert len(got) == len(cal_true) and [b["n"] for b in got] == cal_n.tolist()
        for b, t, pr in zip(got, cal_true, cal_pred):
            assert close(b["positive_rate"], t) and close(b["mean_score"], pr), (b, t, pr)
        assert close(pf["ece"], ece) and close(pf["mce"], mce), (pf["ece"], ece)
        g = [v for lab, v in metrics["mlops_monitor_calibration_error"]
             if lab["model"] == "attrition-mon" and lab["window"] == w["window"]]
        assert len(g) == 1 and close(g[0], ece)
        g = [v for lab, v in metrics["mlops_monitor_auc"]
             if lab["model"] == "attrition-mon" and lab["window"] == w["window"]
             and lab["role"] == "champion"]
        assert len(g) == 1 and close(g[0], auc)
    state, drifts = ddm_reference(list(dec != y))
    assert var[0]["ddm"] == ["ok", "warning", "drift"][state]
    assert var[0]["ddm_drifts"] == drifts
    width, rate, shrinks = adwin_reference(list(dec != y))
    assert var[0]["adwin"]["width"] == width and var[0]["adwin"]["drifts"] == shrinks
    assert close(var[0]["adwin"]["error_rate"], rate)
    # joined events stay tracked (a later shadow prediction still joins), and so does
    # the lone label, until label_lateness_ms
    text = mon.get("/metrics")
    assert re.search(r"^mlops_monitor_join_pending %d$" % (WIN + 1), text, re.M), text
    assert re.search(r"^mlops_monitor_labels_unjoined 0$", text, re.M)
    print("prediction drift js %.4f psi %.4f, auc %.4f (reference %.4f), ddm %s/%d, adwin %s"
          % (js, psi, auc, doc["metrics"]["auc"], var[0]["ddm"], var[0]["ddm_drifts"],
             var[0]["adwin"]))


def test_bad_records_are_skipped_and_counted(stack):
    """Unreadable or foreign records on the inputs never stop the monitor; with
    the optional inputs off ('' topics) it still serves (this crashed once)."""
    sfx = uuid.uuid4().hex[:8]
    topics = {"features": f"mon-bad-{sfx}", "models": "", "alerts": stack["topics"]["alerts"],
              "train": stack["topics"]["train"], "predictions": "", "labels": ""}
    admin = AdminClient({"bootstrap.servers": BROKERS})
    admin.create_topics([NewTopic(topics["features"], 1, 1)])[topics["features"]].result()
    prod = Producer({"bootstrap.servers": BROKERS})
    good = stack["feats"][:10]
    bad = [b"not json", b'{"schema": "features/1", "values": {}}', b'{"a": 1, "a": 2}',
           b'{"schema": "prediction/1"}', b'{"schema": "nope/1"}', b"[1, 2]",
           json.dumps(dict(good[0], values={"age": "old", "gender": 3})).encode(),
           b"{" + b" " * 20_000 + b"}"]
    for b in bad:
        prod.produce(topics["features"], b, b"k")
    prod.produce(topics["features"], None, b"k")  # a tombstone: no payload at all
    for r in good:
        prod.produce(topics["features"], json.dumps(r).encode(), b"k")
    assert prod.flush(30) == 0
    mon = Monitor(stack["work"], topics, [stack["work"] / "big.json"],
                  stack["state_key"] + ":bad", f"mon-bad-{sfx}",
                  extra=("--max-event-bytes", 16384))
    try:
        mon.wait_events(len(good) + 1)
        text = mon.get("/metrics")
        bad_n = float(re.search(r"^mlops_monitor_bad_records_total (\S+)$", text, re.M).group(1))
        # not JSON, no spec/values, duplicate keys, a prediction without fields, an unknown
        # schema, an array, the 20 kB record over max_event_bytes, the tombstone; the
        # wrong-kind value is counted per value
        assert bad_n == 8, text
        st = mon.drift("attrition-mon")["models"][0]
        assert st["events"] == len(good) + 1 and st["rejected"] == 1
        assert mon.proc.poll() is None
    finally:
        assert mon.stop() == 0
        admin.delete_topics([topics["features"]])


def test_a_test_change_retires_the_old_series(stack):
    """Evidently's choice depends on the distinct values of reference and window
    together: when an input's test changes between ticks, the old gauges go NaN and
    the old alert series resolves instead of firing forever."""
    work, topics0 = stack["work"], stack["topics"]
    doc = json.loads((work / "small.json").read_text())
    doc["name"] = "flip"
    age = [i for i, p in enumerate(doc["profile"]["inputs"]) if p["column"] == "age"][0]
    doc["profile"]["inputs"][age]["sample"] = [float(1 + i % 5) for i in range(300)]
    (work / "flip.json").write_text(json.dumps(doc))
    sfx = uuid.uuid4().hex[:8]
    topics = {"features": f"mon-flip-{sfx}", "models": "", "alerts": f"mon-flipa-{sfx}",
              "train": topics0["train"], "predictions": "", "labels": ""}
    admin = AdminClient({"bootstrap.servers": BROKERS})
    for f in admin.create_topics([NewTopic(topics["features"], 1, 1),
                                  NewTopic(topics["alerts"], 1, 1)]).values():
        f.result()
    base = stack["feats"][0]
    prod = Producer({"bootstrap.servers": BROKERS})

    def send(vals):
        for i, v in enumerate(vals):
            r = dict(base, event_id=f"flip-{sfx}-{v}-{i}", values={"age": v})
            prod.produce(topics["features"], json.dumps(r).encode(), b"k")
        prod.flush(10)

    mon = Monitor(work, topics, [work / "flip.json"], stack["state_key"] + ":flip",
                  f"mon-flip-{sfx}", extra=("--windows", "100", "--retrain-alerts", "none"))
    alerts = Topic(topics["alerts"])
    try:
        send([5] * 90 + [1, 2, 3, 4] * 2 + [1, 2])  # 5 distinct: chi-square, drifted
        mon.wait_events(100)
        f = [x for x in mon.drift("flip")["models"][0]["windows"][0]["features"]
             if x["feature"] == "age"][0]
        assert f["test"] == "chisquare" and f["drifted"]
        send([1 + i % 8 for i in range(100)])  # 8 distinct: KS
        mon.wait_events(200)
        f = [x for x in mon.drift("flip")["models"][0]["windows"][0]["features"]
             if x["feature"] == "age"][0]
        assert f["test"] == "ks"
        live = {lab["test"]: v for lab, v in
                parse_metrics(mon.get("/metrics"))["mlops_monitor_drift_value"]
                if lab["model"] == "flip" and lab["feature"] == "age"}
        assert math.isnan(live["chisquare"]) and not math.isnan(live["ks"])
        got = [a for _, a in alerts.drain() if a["alertname"] == "feature_drift"
               and a["labels"].get("feature") == "age"]
        chi = [a["state"] for a in got if a["labels"]["test"] == "chisquare"]
        assert chi == ["firing", "resolved"], got
    finally:
        alerts.close()
        assert mon.stop() == 0
        admin.delete_topics([topics["features"], topics["alerts"]])


def test_real_scorer_predictions_and_labels(stack):
    """mlops-scorer scores the drifted rows' features; the monitor reads its
    prediction/1 records and the labels, and its window AUC, accuracy and log loss
    equal scikit-learn's on the scorer's own scores."""
    from sklearn.metrics import accuracy_score, roc_auc_score
    work, feats = stack["work"], stack["feats"]
    doc = stack["models"]["attrition-mon"]
    sfx = uuid.uuid4().hex[:8]
    topics = {"features": f"mon-sf-{sfx}", "models": "", "alerts": f"mon-sa-{sfx}",
              "train": f"mon-st-{sfx}", "predictions": f"mon-sp-{sfx}",
              "labels": f"mon-sl-{sfx}"}
    admin = AdminClient({"bootstrap.servers": BROKERS})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics.values() if t]).values():
        f.result()
    rows = (work / "all.csv").read_text().splitlines()
    li = rows[0].split(",").index("left")
    labels = {feats[i]["event_id"]: rows[1 + i].split(",")[li]
              for i in range(ROWS)}
    prod = Producer({"bootstrap.servers": BROKERS})
    lo = ROWS - WIN
    for r in feats[lo:ROWS]:
        prod.produce(topics["features"], json.dumps(r).encode(), r["entity"].encode())
    prod.flush(30)
    slog = open(work / f"scorer-{sfx}.log", "w")
    scorer = subprocess.Popen(
        [str(BUILD / "services" / "scorer" / "mlops-scorer"), "--metrics-port=0", "--http-port=0",
         "--model", str(work / "big.json"), "--input-topic", topics["features"],
         "--predictions-topic", topics["predictions"], "--group-id", f"sc-{sfx}",
         "--exactly-once=false", "--enrich=false", "--models-topic=", "--labels-topic=",
         "--registry-url=", "--kafka-brokers", BROKERS], stdout=slog, stderr=subprocess.STDOUT)
    mon = Monitor(work, topics, [work / "big.json"], stack["state_key"] + f":sc{sfx}",
                  f"mon-sc-{sfx}", extra=("--windows", str(WIN)))
    preds = Topic(topics["predictions"])
    try:
        end = time.monotonic() + 60
        while len(preds.drain(quiet=0.5, limit=2)) < WIN:
            assert time.monotonic() < end and scorer.poll() is None, "scorer produced too little"
        got = [p for _, p in preds.msgs]
        assert len(got) == WIN and all(p["model"]["name"] == "attrition-mon" for p in got)
        end = time.monotonic() + 30
        while not re.search(r"^mlops_monitor_predictions_total %d$" % WIN, mon.get("/metrics"),
                            re.M):
            assert time.monotonic() < end, "monitor did not read the predictions"
            time.sleep(0.2)
        for p in got:
            prod.produce(topics["labels"], json.dumps(
                {"schema": "label/1", "event_id": p["event_id"], "entity": p["entity"],
                 "label": labels[p["event_id"]], "label_time": "2026-01-01T00:00:00Z"}).encode(),
                p["entity"].encode())
        prod.flush(30)
        end = time.monotonic() + 30
        while True:
            var = mon.drift("attrition-mon")["models"][0]["variants"]
            if var and var[0]["labelled"] >= WIN:
                break
            assert time.monotonic() < end, "labels not joined"
            time.sleep(0.2)
        s = np.array([p["score"] for p in got])
        y = np.array([labels[p["event_id"]] == doc["label"]["positive"] for p in got], int)
        dec = np.array([p["decision"] for p in got], int)
        pf = var[0]["windows"][0]["performance"]
        assert pf["n"] == WIN
        assert close(pf["auc"], roc_auc_score(y, s))
        assert close(pf["accuracy"], accuracy_score(y, dec))
        c = np.clip(s, 1e-15, 1 - 1e-15)
        assert close(pf["log_loss"], float(-np.mean(y * np.log(c) + (1 - y) * np.log1p(-c))))
    finally:
        preds.close()
        scorer.send_signal(signal.SIGTERM)
        assert scorer.wait(30) == 0
        slog.close()
        assert mon.stop() == 0
        admin.delete_topics([t for t in topics.values() if t])


@pytest.mark.parametrize("args,code,text", [
    (["--windows", "0"], 1, "windows: item 1 ('0')"),
    (["--windows", "1h+x"], 1, "windows: item 1"),
    (["--model", "/nonexistent/m.json"], 1, "model: /nonexistent/m.json"),
    (["--model", "BROKEN"], 1, "BROKEN:1:"),
    (["--drift-share", "2"], 2, "drift_share"),
    (["--features-topic="], 1, "features_topic: must not be empty"),
])
def test_bad_configuration_names_the_setting(tmp_path, args, code, text):
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",')
    args = [str(broken) if a == "BROKEN" else a for a in args]
    text = text.replace("BROKEN", str(broken))
    r = subprocess.run([str(MONITOR), "--metrics-port", "0", "--models-topic=",
                        "--alert-state-key", "mlops:test:monitor:badconf", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert text in r.stdout + r.stderr


def test_the_loop_reaches_slack_once(stack):
    """Monitor -> alerts -> mlops-monitor notify -> a fake Slack on loopback: the
    dataset-drift alert is posted once, nothing about dataset drift before the drift
    point, and per-feature drift of the model is inhibited while it fires."""
    import http.server
    import threading
    work, feats = stack["work"], stack["feats"]
    posts, lock = [], threading.Lock()

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                posts.append(body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sfx = uuid.uuid4().hex[:8]
    topics = {"features": f"mon-lf-{sfx}", "models": "", "alerts": f"mon-la-{sfx}",
              "train": f"mon-lt-{sfx}", "predictions": "", "labels": ""}
    dlq = f"mon-ld-{sfx}"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in [*topics.values(), dlq]
                                  if t]).values():
        f.result()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env["MLOPS_SLACK_WEBHOOK_URLS"] = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    nlog = open(work / f"notify-{sfx}.log", "w")
    notify = subprocess.Popen(
        [str(MONITOR), "notify", "--alerts-topic", topics["alerts"], "--alerts-dlq-topic", dlq,
         "--group-id", f"mon-ln-{sfx}", "--metrics-port", "0", "--group-wait-ms", "200",
         "--silences-key", f"mlops:test:silences:{sfx}", "--kafka-brokers", BROKERS],
        stdout=nlog, stderr=subprocess.STDOUT, env=env)
    mon = Monitor(work, topics, [work / "big.json"], stack["state_key"] + f":loop{sfx}",
                  f"mon-lm-{sfx}", extra=("--windows", str(WIN)))
    prod = Producer({"bootstrap.servers": BROKERS})

    def send(lo, hi):
        for r in feats[lo:hi]:
            prod.produce(topics["features"], json.dumps(r).encode(), r["entity"].encode())
        prod.flush(30)

    def texts():
        with lock:
            return [b["text"]["text"] for p in posts for b in p["blocks"]
                    if b["type"] == "section"]
    try:
        send(0, DRIFT_AT)
        mon.wait_events(DRIFT_AT)
        time.sleep(2.0)
        assert not [t for t in texts() if "dataset_drift" in t], texts()
        send(DRIFT_AT, ROWS)
        mon.wait_events(ROWS)
        end = time.monotonic() + 20
        while not [t for t in texts() if "dataset_drift" in t]:
            assert time.monotonic() < end, texts()
            time.sleep(0.2)
        time.sleep(2.0)
        ds = [t for t in texts() if "dataset_drift" in t]
        assert len(ds) == 1 and "*FIRING*" in ds[0], ds
        # while it fires, feature_drift alerts of the model are inhibited: no message
        # after the one that carried it has a firing feature_drift (the same digest may,
        # for the ones that came before it; a digest lists critical alerts first)
        with lock:
            msgs = [[b["text"]["text"] for b in p["blocks"] if b["type"] == "section"]
                    for p in posts]
        first = next(i for i, m in enumerate(msgs) if any("dataset_drift" in t for t in m))
        later = [t for m in msgs[first + 1:] for t in m]
        assert not [t for t in later if "feature_drift" in t and "*FIRING*" in t], later
    finally:
        notify.send_signal(signal.SIGTERM)
        assert notify.wait(30) == 0
        nlog.close()
        assert mon.stop() == 0
        srv.shutdown()
        srv.server_close()
        admin.delete_topics([t for t in [*topics.values(), dlq] if t])
