"""Secret canaries (issue 9, "Security"): every secret of a running pipeline is a unique
string (the Postgres password, the Redis password, the registry's admin, trainer and
reader tokens, the Slack webhook URL), the pipeline runs while each dependency fails in
turn (Redis frozen, then down; Postgres refusing the registry's password; the registry
down; Slack answering 500), and then every log, every /metrics, /health and /ready
answer, every --print-config dump and every record of every topic is searched: each
canary occurs 0 times. Positive controls show the secrets were in use (the scorer loaded
its model from the registry, features reached Redis, Slack got the alerts at the secret
URL), that the failures happened (each service logged them), and that the search finds
a canary where one is (the config files themselves).

Runs on the stack's Kafka and PostgreSQL (a database and role of its own) and a private
redis-server with requirepass on a free port."""
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from kafkatest import (BROKERS, consume_all, create_topics, delete_topics, produce,  # noqa: E402
                       read_to_end)
from pgtest import PG_PORT, admin_psql  # noqa: E402
from proctest import (PrivateRedis, Proc, clean_env, free_port, http_get, metric,  # noqa: E402
                      run, wait_for)

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
CTL = BUILD / "cli/mlopsctl"
EVENTS = 3000


class Slack:
    """A Slack stand-in on loopback: 500 for the first FAILS requests, then 200 ok."""
    FAILS = 2

    def __init__(self, path):
        import http.server
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append((self.path, body))
                status = 500 if len(outer.requests) <= Slack.FAILS else 200
                data = b"ok" if status == 200 else b"internal_error"
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}{path}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


class World:
    def __init__(self, tmp):
        self.tmp = tmp
        self.id = uuid.uuid4().hex[:10]
        tag = lambda k: f"cnry{k}{uuid.uuid4().hex}"  # noqa: E731
        self.canary = {"pg_password": tag("pg"), "redis_password": tag("rd"),
                       "slack_url": tag("sl")}
        self.procs, self.dumps, self.http_seen = {}, {}, []
        t = {k: f"cn-{k}-{self.id}" for k in ("raw", "features", "dlq", "predictions", "labels",
                                              "alerts", "alerts-dlq", "models", "train")}
        self.topics = t
        create_topics(list(t.values()), partitions=2)
        # Postgres: a role and database of the test's own, the password a canary
        self.db = f"cnry_{self.id}"
        admin_psql(f"CREATE ROLE {self.db} LOGIN PASSWORD '{self.canary['pg_password']}'")
        admin_psql(f"CREATE DATABASE {self.db} OWNER {self.db}")
        # Redis: a private server whose password is a canary
        self.redis = PrivateRedis(tmp / "redis", self.canary["redis_password"])
        self.redis_url = self.redis.url
        self.slack = Slack(f"/services/T00/B00/{self.canary['slack_url']}")
        self.ports = {n: free_port() for n in ("registry", "ingest", "scorer", "monitor",
                                                "notify")}

    def conf(self, name, **keys):
        f = self.tmp / f"{name}.conf"
        f.write_text("".join(f"{k} = {v}\n" for k, v in keys.items()))
        return f

    def service(self, name, binary, conf, env=None):
        p = Proc(name, [BUILD / binary, "--config", conf], self.tmp / f"{name}.log",
                 clean_env(**(env or {})))
        self.procs[name] = p
        # the config dump, with the same file and environment
        self.dumps[name] = run([BUILD / binary, "--config", conf, "--print-config"], env=p.env)
        return p.start()

    def haystack(self):
        """Everything a secret must not leak into, as (where, text) pairs."""
        out = [(f"log {n}", p.log.read_text(errors="replace")) for n, p in self.procs.items()]
        out += [(f"--print-config {n}", d) for n, d in self.dumps.items()]
        out += list(self.http_seen)
        for name, topic in self.topics.items():
            for m in read_to_end(topic):  # aborted transactions included
                hdrs = " ".join(f"{k}={v!r}" for k, v in (m.headers() or []))
                out.append((f"topic {name}", f"{m.key()!r} {m.value()!r} {hdrs}"))
        return out

    def snapshot_http(self):
        for n, port in self.ports.items():
            for path in ("/metrics", "/health", "/ready"):
                self.http_seen.append((f"{n} {path}", http_get(port, path)))

    def close(self):
        for p in reversed(list(self.procs.values())):
            p.stop()
        self.redis.kill()
        self.slack.close()
        delete_topics(list(self.topics.values()))
        for sql in (f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)", f"DROP ROLE IF EXISTS {self.db}"):
            try:
                admin_psql(sql)
            except subprocess.CalledProcessError:
                pass


def test_no_secret_reaches_logs_metrics_dumps_or_topics(world):
    w, t, tmp = world, world.topics, world.tmp
    fast = {"kafka.session.timeout.ms": 6000, "kafka.heartbeat.interval.ms": 2000,
            "drain_timeout_ms": 3000}
    # --- the registry on its own database, the password inside the DSN
    dsn = f"postgresql://{w.db}:{w.canary['pg_password']}@127.0.0.1:{PG_PORT}/{w.db}"
    reg_state = tmp / "registry-state"
    reg = w.service("registry", "services/registry/mlops-registry", w.conf(
        "registry", pg_dsn=dsn, metrics_port=w.ports["registry"], state_dir=reg_state,
        models_topic=t["models"], outbox_poll_ms=100, kafka_brokers=BROKERS,
        drain_timeout_ms=3000))
    t0 = time.monotonic()
    step = lambda what: print(f"[{time.monotonic() - t0:6.1f} s] {what}", flush=True)  # noqa
    url = f"http://127.0.0.1:{w.ports['registry']}"
    wait_for(lambda: (reg_state / "registry/admin_token").exists()
             and '"ok"' in http_get(w.ports["registry"], "/ready").replace(" ", ""), 30,
             "the registry")
    admin = (reg_state / "registry/admin_token").read_text().strip()
    tokens = {"admin": admin}
    for role in ("trainer", "reader"):
        tokens[role] = run([CTL, "token", "create", "--registry-url", url, "--token", admin,
                            "--role", role, "--name", f"canary-{role}"]).strip().splitlines()[-1]
        (tmp / f"{role}_token").write_text(tokens[role] + "\n")
        os.chmod(tmp / f"{role}_token", 0o600)
    # --- a model, registered with the trainer token and promoted with the admin token
    spec = json.loads((ROOT / "examples/attrition/spec.json").read_text())
    name = f"cnry{w.id}"
    spec["name"] = name
    spec["online"]["view"] = name
    (tmp / "spec.json").write_text(json.dumps(spec))
    run([CTL, "datagen", "attrition", "--rows", "3000", "--seed", "11", "--out", tmp / "t.csv"])
    run([BUILD / "services/trainer/mlops-trainer", "fit", "--data", tmp / "t.csv", "--spec",
         tmp / "spec.json", "--algo", "logreg", "--out", tmp / "model.json"])
    run([CTL, "models", "register", name, "--file", tmp / "model.json", "--registry-url", url,
         "--token", tokens["trainer"]])
    run([CTL, "models", "promote", name, "1", "--alias", "champion", "--expected-version",
         "none", "--registry-url", url, "--token", admin])
    # --- ingest, scorer, monitor, notifier
    ingest = w.service("ingest", "services/ingest/mlops-ingest", w.conf(
        "ingest", **fast, metrics_port=w.ports["ingest"], spec=tmp / "spec.json",
        redis_url=w.redis_url, input_topic=t["raw"], features_topic=t["features"],
        dlq_topic=t["dlq"], group_id=f"cn-ingest-{w.id}", kafka_brokers=BROKERS))
    scorer = w.service("scorer", "services/scorer/mlops-scorer", w.conf(
        "scorer", **fast, metrics_port=w.ports["scorer"], http_port=0, registry_url=url,
        registry_token_file=tmp / "reader_token", model_name=name, registry_poll_s=1,
        models_topic=t["models"], redis_url=w.redis_url, input_topic=t["features"],
        predictions_topic=t["predictions"], labels_topic=t["labels"],
        group_id=f"cn-scorer-{w.id}", kafka_brokers=BROKERS))
    w.service("monitor", "services/monitor/mlops-monitor", w.conf(
        "monitor", **fast, metrics_port=w.ports["monitor"], registry_url=url,
        registry_token_file=tmp / "reader_token", redis_url=w.redis_url,
        features_topic=t["features"], predictions_topic=t["predictions"],
        labels_topic=t["labels"], models_topic=t["models"], alerts_topic=t["alerts"],
        train_requests_topic=t["train"], group_id=f"cn-monitor-{w.id}",
        alert_state_key=f"cn:alerts:{w.id}", kafka_brokers=BROKERS))
    w.service("notify", "services/monitor/mlops-notify", w.conf(
        "notify", **fast, metrics_port=w.ports["notify"], redis_url=w.redis_url,
        alerts_topic=t["alerts"], alerts_dlq_topic=t["alerts-dlq"],
        group_id=f"cn-notify-{w.id}", group_wait_ms=200, kafka_brokers=BROKERS),
        env={"MLOPS_SLACK_WEBHOOK_URLS": w.slack.url})
    wait_for(lambda: metric(w.ports["scorer"], "mlops_scorer_lag") is not None, 60,
             "the scorer (its champion from the registry)")
    step("services up")
    # --- events, while the dependencies fail one after the other
    gen = subprocess.Popen([str(CTL), "datagen", "attrition", "--rows", str(EVENTS), "--seed",
                            "12", "--topic", t["raw"], "--labels-topic", t["labels"],
                            "--rate", str(EVENTS // 14), "--bad-fraction", "0.01",
                            "--kafka-brokers", BROKERS], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env=clean_env())
    time.sleep(2)
    w.snapshot_http()
    step("redis frozen")
    w.redis.freeze()  # Redis frozen: calls time out
    time.sleep(2.5)
    w.snapshot_http()
    w.redis.kill()  # Redis down: connections refused
    time.sleep(2)
    w.snapshot_http()
    w.redis.start()
    step("postgres refuses the password")
    # Postgres refuses the registry's password, and its connections are cut
    admin_psql(f"ALTER ROLE {w.db} PASSWORD 'not-the-canary'")
    admin_psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{w.db}'")
    time.sleep(1)
    r = subprocess.run([str(CTL), "models", "show", name, "--registry-url", url, "--token",
                        admin], capture_output=True, text=True, env=clean_env(), timeout=60)
    w.dumps["mlopsctl models show during the Postgres failure"] = r.stdout + r.stderr
    assert r.returncode != 0, "the registry answered without its database"
    time.sleep(1)
    w.snapshot_http()
    admin_psql(f"ALTER ROLE {w.db} PASSWORD '{w.canary['pg_password']}'")
    # the registry down: the scorer's and the monitor's registry calls fail
    step("registry down")
    reg.stop()
    time.sleep(3)
    w.snapshot_http()
    reg.start()
    # alerts for Slack, which answers 500 first
    produce(t["alerts"], [(f"fp-{i}", json.dumps({
        "schema": "alert/1", "fingerprint": f"fp-cn-{i}", "state": "firing",
        "alertname": "feature_drift", "severity": "warning", "metric": "drift_psi",
        "value": 0.3, "threshold": 0.2, "comparison": ">=", "window": "1000 events",
        "model": name, "labels": {"feature": f"f{i}"},
        "annotations": {"summary": f"feature f{i} drifted"},
        "starts_at": "2026-12-04T10:00:00.000Z"})) for i in range(3)])
    step("alerts produced")
    _, err = gen.communicate(timeout=120)
    step("events produced")
    assert gen.returncode == 0, err
    # --- the pipeline settles
    wait_for(lambda: metric(w.ports["ingest"], "mlops_ingest_lag") == 0
             and metric(w.ports["scorer"], "mlops_scorer_lag") == 0, 120, "ingest and scorer")
    wait_for(lambda: len(w.slack.requests) > Slack.FAILS, 60, "the alerts at Slack")
    step("settled")
    w.snapshot_http()
    for p in w.procs.values():
        p.stop()
    # --- positive controls: the secrets were in use and the failures were seen
    scored = consume_all(t["predictions"], quiet=3, timeout=60)
    assert len(scored) > EVENTS * 0.9, f"only {len(scored)} predictions"
    assert {json.loads(m.value())["model"]["version"] for m in scored} == {1}, \
        "the scorer did not serve the registry's version 1 (the reader token)"
    assert not all(json.loads(m.value()).get("degraded") for m in scored), \
        "every prediction degraded: the scorer never read Redis with its password"
    assert any(w.canary["slack_url"] in path for path, _ in w.slack.requests)
    logs = {n: p.log.read_text(errors="replace") for n, p in w.procs.items()}
    for n in ("ingest", "scorer", "notify"):
        assert '"level":"warn"' in logs[n] or '"level":"error"' in logs[n], \
            f"{n} logged no failure: the dependency failures did not reach it"
    assert "password authentication failed" in logs["registry"], \
        "the registry did not log Postgres refusing it"
    # --- the search itself finds a canary where there is one
    conf_text = "".join(f.read_text() for f in tmp.glob("*.conf"))
    assert w.canary["redis_password"] in conf_text and w.canary["pg_password"] in conf_text
    # --- the search: 0 occurrences of every secret
    secrets = dict(w.canary, **{f"{k}_token": v for k, v in tokens.items()})
    step("stopped")
    hay = w.haystack()
    step(f"searched {len(hay)} sources, {sum(len(x) for _, x in hay)} bytes")
    assert len(hay) > 30
    found = [(where, which) for where, text in hay for which, s in secrets.items() if s in text]
    assert found == [], f"secrets leaked: {found}"
