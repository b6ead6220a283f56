"""Dependency faults with all services running together (issue 9, reliability): events
stream through mlops-ingest -> mlops-scorer (exactly-once) with mlops-monitor reading
along and mlops-registry serving the champion, while

  1. Redis is frozen (SIGSTOP) for 3 s, then killed and kept down for 3 s;
  2. a burst of concurrent registrations (Idempotency-Key, retried until answered) runs
     while every process of the registry's PostgreSQL is killed with SIGKILL and the
     server restarts;
  3. a new champion is promoted and the registry is killed with SIGKILL right after,
     and restarted 5 s later.

Figures asserted: features and predictions lost 0, duplicated 0 (the crash test's
verifier); the scorer and ingest never exit (Redis is not a reason to stop); degraded
predictions during the Redis outage and none once it is back; every registration key
has exactly one version; the scorer serves the promoted version once the registry is
back. PostgreSQL and Redis are the test's own (private servers on free ports), Kafka is
the stack's."""
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

from harness import BUILD, EVENTS, KAFKA_FAST, ROOT, verify
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from kafkatest import BROKERS, consume_all, create_topics, delete_topics  # noqa: E402
from pgtest import PrivatePostgres  # noqa: E402
from proctest import PrivateRedis, Proc, clean_env, free_port, http_get, metric, run, wait_for  # noqa: E402

CTL = BUILD / "cli/mlopsctl"
BURST_CLIENTS, BURST_EACH = 5, 6


class Topics:
    def __init__(self, tag):
        self.topics = {k: f"df-{k}-{tag}" for k in ("raw", "features", "dlq", "predictions",
                                                    "labels", "models", "alerts", "train")}


def api(url, method, path, token, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {token}", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, {}
    except OSError:
        return -1, {}, {}


def test_redis_postgres_and_registry_faults_lose_nothing(tmp_path):
    tag = uuid.uuid4().hex[:10]
    t = Topics(tag)
    create_topics(list(t.topics.values()))
    pg = PrivatePostgres()
    redis = PrivateRedis(tmp_path / "redis", aof=True)  # like the stack's: rows survive
    procs = {}
    try:
        ports = {n: free_port() for n in ("registry", "ingest", "scorer", "monitor")}

        def service(name, binary, **keys):
            conf = tmp_path / f"{name}.conf"
            conf.write_text("".join(f"{k} = {v}\n" for k, v in keys.items()))
            procs[name] = Proc(name, [BUILD / binary, "--config", conf], tmp_path / f"{name}.log",
                               clean_env()).start()
            return procs[name]

        reg = service("registry", "services/registry/mlops-registry", pg_dsn=pg.dsn(),
                      metrics_port=ports["registry"], state_dir=tmp_path / "reg",
                      models_topic=t.topics["models"], outbox_poll_ms=100,
                      kafka_brokers=BROKERS, pg_connect_timeout_s=2,
                      pg_statement_timeout_ms=3000, drain_timeout_ms=3000)
        url = f"http://127.0.0.1:{ports['registry']}"
        wait_for(lambda: (tmp_path / "reg/registry/admin_token").exists()
                 and http_get(ports["registry"], "/ready").find('"ok"') >= 0, 30, "the registry")
        admin = (tmp_path / "reg/registry/admin_token").read_text().strip()
        tok = {r: run([CTL, "token", "create", "--registry-url", url, "--token", admin, "--role",
                       r, "--name", f"df-{r}"]).strip().splitlines()[-1]
               for r in ("trainer", "reader")}
        (tmp_path / "reader_token").write_text(tok["reader"])
        # two models of one spec: v1 the champion at the start, v2 promoted mid-stream
        spec = json.loads((ROOT / "examples/attrition/spec.json").read_text())
        name = spec["name"] = spec["online"]["view"] = f"df{tag}"
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        run([CTL, "datagen", "attrition", "--rows", "3000", "--seed", "5", "--out",
             tmp_path / "t.csv"])
        for v, algo in ((1, "logreg"), (2, "gbdt")):
            run([BUILD / "services/trainer/mlops-trainer", "fit", "--data", tmp_path / "t.csv",
                 "--spec", tmp_path / "spec.json", "--algo", algo, "--out",
                 tmp_path / f"m{v}.json"], timeout=300)
            run([CTL, "models", "register", name, "--file", tmp_path / f"m{v}.json",
                 "--registry-url", url, "--token", tok["trainer"]])
        run([CTL, "models", "promote", name, "1", "--alias", "champion", "--expected-version",
             "none", "--registry-url", url, "--token", admin])
        common = dict(KAFKA_FAST, kafka_brokers=BROKERS, drain_timeout_ms=10000)
        service("ingest", "services/ingest/mlops-ingest", **common,
                metrics_port=ports["ingest"], spec=tmp_path / "spec.json", redis_url=redis.url,
                input_topic=t.topics["raw"], features_topic=t.topics["features"],
                dlq_topic=t.topics["dlq"], group_id=f"df-ingest-{tag}", exactly_once="true",
                transactional_id=f"df-ingest-{tag}")
        service("scorer", "services/scorer/mlops-scorer", **common,
                metrics_port=ports["scorer"], registry_url=url,
                registry_token_file=tmp_path / "reader_token", model_name=name,
                registry_poll_s=1, models_topic=t.topics["models"], redis_url=redis.url,
                input_topic=t.topics["features"], predictions_topic=t.topics["predictions"],
                labels_topic=t.topics["labels"], group_id=f"df-scorer-{tag}",
                exactly_once="true", transactional_id=f"df-scorer-{tag}", commit_interval_ms=500)
        service("monitor", "services/monitor/mlops-monitor", **common,
                metrics_port=ports["monitor"], registry_url=url,
                registry_token_file=tmp_path / "reader_token", redis_url=redis.url,
                features_topic=t.topics["features"], predictions_topic=t.topics["predictions"],
                labels_topic=t.topics["labels"], models_topic=t.topics["models"],
                alerts_topic=t.topics["alerts"], train_requests_topic=t.topics["train"],
                group_id=f"df-monitor-{tag}", alert_state_key=f"df:alerts:{tag}")
        wait_for(lambda: metric(ports["scorer"], "mlops_scorer_lag") is not None
                 and metric(ports["ingest"], "mlops_ingest_lag") is not None, 60, "ingest, scorer")
        pids = {n: procs[n].proc.pid for n in ("ingest", "scorer", "monitor")}

        gen = Proc("datagen", [CTL, "datagen", "attrition", "--rows", EVENTS, "--seed", "6",
                               "--topic", t.topics["raw"], "--labels-topic", t.topics["labels"],
                               "--rate", EVENTS // 24, "--bad-fraction", "0.01",
                               "--kafka-brokers", BROKERS], tmp_path / "datagen.log",
                   clean_env()).start()
        t0 = time.monotonic()
        log = []

        def at(sec, what):
            time.sleep(max(0.0, t0 + sec - time.monotonic()))
            log.append((round(time.monotonic() - t0, 1), what))

        # 1. Redis frozen, then down
        at(3, "redis frozen")
        redis.freeze()
        at(6, "redis killed")
        redis.thaw()
        redis.kill()
        at(9, "redis back")
        redis.start()
        redis_back = time.time()
        # 2. registrations while Postgres is killed
        at(10, "registration burst")
        outcomes, lock = {}, threading.Lock()
        doc = json.loads((tmp_path / "m1.json").read_text())

        def client(ci):
            for j in range(BURST_EACH):
                key = f"df-{tag}-{ci}-{j}"
                body = json.dumps(dict(doc, name=f"{name}-burst", key=key)).encode()
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    st, hdr, js = api(url, "POST", f"/api/v1/models/{name}-burst/versions",
                                      tok["trainer"], body, {"Idempotency-Key": key})
                    if st in (200, 201):
                        with lock:
                            outcomes[key] = int(js["model_version"]["version"])
                        break
                    assert st in (-1, 409, 500, 503), (key, st)
                    time.sleep(0.1)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(BURST_CLIENTS)]
        for th in threads:
            th.start()
        at(11, "postgres killed")
        pg.kill9_all()
        at(12.5, "postgres back")
        pg.start()
        for th in threads:
            th.join()
        # 3. a promotion, then the registry killed
        at(15, "v2 promoted, registry killed")
        run([CTL, "models", "promote", name, "2", "--alias", "champion", "--expected-version",
             "1", "--registry-url", url, "--token", admin])
        reg.stop(sig=9)
        at(20, "registry back")
        reg.start()
        gen.proc.wait(timeout=120)
        assert gen.proc.returncode == 0, gen.log.read_text()[-2000:]
        wait_for(lambda: metric(ports["ingest"], "mlops_ingest_lag") == 0
                 and metric(ports["scorer"], "mlops_scorer_lag") == 0, 180, "the pipeline")
        time.sleep(2)
        print("faults:", log)

        # --- the figures
        for n, pid in pids.items():
            assert procs[n].alive() and procs[n].proc.pid == pid, f"{n} exited during the faults"
        r = verify(t, EVENTS)
        assert r["lost_input"] == 0 and r["lost_predictions"] == 0, r
        assert r["dup_placed"] == 0 and r["dup_predictions"] == 0, r
        assert r["phantom"] == 0 and r["inconsistent"] == 0, r
        preds = [json.loads(m.value()) for m in consume_all(t.topics["predictions"], quiet=3)]
        # the online store's part of degradation (a null derived input is imputed too)
        unavailable = [p for p in preds if p["freshness"]["online"] == "unavailable"]
        assert unavailable and all(p["degraded"] for p in unavailable), \
            "no prediction went without its online row: the Redis outage did not reach the scorer"
        late = [p for p in preds if p["scored_at"] > time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.gmtime(redis_back + 8))]
        assert late and not any(p["freshness"]["online"] == "unavailable" for p in late), \
            "the scorer still went without Redis after it came back"
        assert len(outcomes) == BURST_CLIENTS * BURST_EACH, "a registration never succeeded"
        assert len(set(outcomes.values())) == len(outcomes), "two keys got one version"
        st, _, js = api(url, "GET", f"/api/2.0/mlflow/model-versions/search?filter=name%3D%27"
                        f"{name}-burst%27&max_results=1000", admin)
        assert st == 200 and len(js.get("model_versions", [])) == len(outcomes), \
            f"{len(js.get('model_versions', []))} versions for {len(outcomes)} keys"
        versions = {p["model"]["version"] for p in preds}
        assert versions == {1, 2}, f"served versions {versions}: the promotion was not followed"
        print(f"dependency faults: {r}, without Redis {len(unavailable)}, registrations "
              f"{len(outcomes)}, served versions {sorted(versions)}")
    finally:
        for p in reversed(list(procs.values())):
            p.stop()
        redis.kill()
        pg.stop()
        delete_topics(list(t.topics.values()))
