"""Durability: concurrent registrations while every process of a private
PostgreSQL server is killed with SIGKILL, then the server restarts (crash
recovery). Clients retry with their Idempotency-Key until answered. After:
every key maps to exactly one version, each fully present (version, artifact,
audit row, outbox row), and nothing else exists.

The server is our own (initdb into a temporary folder, its own port), so the
shared stack is never touched."""
import os
import random
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import Registry, model_doc, sha256
from pgtest import PG_BIN, PrivatePostgres  # noqa: F401 (conftest puts tests/support on the path)

SCALE = 5 if os.environ.get("MLOPS_TEST_SCALE") == "soak" else 1
CLIENTS = 20
PER_CLIENT = 10 * SCALE  # 200 registrations in CI, 1,000 in soak


class _Db:  # what Registry needs of a database
    def __init__(self, pg):
        self.dsn = pg.dsn()


@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="PostgreSQL 15 server binaries")
def test_registrations_survive_postgres_kill9(tmp_path):
    pg = PrivatePostgres()
    reg = None
    try:
        reg = Registry(tmp_path, _Db(pg), extra=["--pg-connect-timeout-s", "2",
                                                 "--pg-statement-timeout-ms", "3000"])
        trainer = reg.token("trainer")
        outcomes = {}  # key -> (first status seen, final version)
        done = [0]
        lock = threading.Lock()
        stop_at = time.time() + 120

        def client(ci):
            for j in range(PER_CLIENT):
                key = f"c{ci}-r{j}"
                name = f"dur-{ci % 4}"
                doc = model_doc(name, extra={"key": key})
                first, version = None, None
                while time.time() < stop_at:
                    try:
                        r = reg.request("POST", f"/api/v1/models/{urllib.parse.quote(name)}/versions",
                                        raw=doc, token=trainer, timeout=10,
                                        headers={"Idempotency-Key": key,
                                                 "X-Artifact-Sha256": sha256(doc)})
                        status = r.status
                    except OSError:
                        status = -1
                    first = first if first is not None else status
                    if status == 201 or (status == 200 and r.headers.get("Idempotent-Replayed")):
                        version = int(r.json()["model_version"]["version"])
                        break
                    if status == 409:  # the first version of a new model raced: retry
                        continue
                    assert status in (-1, 500, 503), (key, status, r)
                    time.sleep(0.05)
                with lock:
                    outcomes[key] = (first, version, sha256(doc), name)
                    done[0] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        # a random point in the burst: after 10% to 60% of the registrations
        kill_after = random.randint(CLIENTS * PER_CLIENT // 10, CLIENTS * PER_CLIENT * 6 // 10)
        while done[0] < kill_after and time.time() < stop_at:
            time.sleep(0.001)
        pg.kill9_all()
        time.sleep(0.5)
        pg.start()
        for t in threads:
            t.join()

        assert len(outcomes) == CLIENTS * PER_CLIENT
        missing = [k for k, o in outcomes.items() if o[1] is None]
        assert not missing, f"never answered 2xx: {missing[:5]}"
        interrupted = sum(1 for o in outcomes.values() if o[0] != 201)
        # the database: one version per key, each with its artifact, audit and outbox rows
        rows = pg.sql("SELECT m.name, v.version, a.sha256,"
                      " convert_from(a.body, 'UTF8')::json ->> 'key' FROM model_versions v"
                      " JOIN registered_models m ON m.id = v.model_id"
                      " JOIN artifacts a ON a.version_id = v.id")
        by_key = {}
        for line in rows:
            name, version, digest, key = line.split("|")
            assert key not in by_key, f"two versions for key {key}"
            by_key[key] = (name, int(version), digest)
        assert set(by_key) == set(outcomes), "versions without a key or keys without a version"
        for key, (first, version, digest, name) in outcomes.items():
            assert by_key[key] == (name, version, digest), key
        nver = int(pg.sql("SELECT count(*) FROM model_versions")[0])
        assert nver == len(outcomes)
        audit = pg.sql("SELECT object FROM audit_log WHERE action = 'model_version.register'")
        assert sorted(audit) == sorted(f"{n}/{v}" for n, v, _ in by_key.values())
        outbox = int(pg.sql("SELECT count(*) FROM outbox WHERE payload::json -> 'change' ->>"
                            " 'action' = 'model_version.register'")[0])
        assert outbox == len(outcomes)
        keys = int(pg.sql("SELECT count(*) FROM idempotency_keys")[0])
        assert keys == len(outcomes)
        print(f"durability: {len(outcomes)} registrations, {interrupted} interrupted by the kill")
        assert interrupted > 0, "the kill came after the burst: nothing was tested"
        # /health follows within one ping (2 s)
        deadline = time.time() + 6
        while reg.request("GET", "/health").json()["db"] != "up" and time.time() < deadline:
            time.sleep(0.2)
        assert reg.request("GET", "/health").json()["db"] == "up"
    finally:
        if reg:
            reg.stop()
        pg.stop()


@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="PostgreSQL 15 server binaries")
def test_postgres_down_503_then_recovers_without_restart(tmp_path):
    pg = PrivatePostgres()
    reg = None
    try:
        reg = Registry(tmp_path, _Db(pg), extra=["--pg-connect-timeout-s", "2",
                                                 "--token-cache-ms", "0"])
        assert reg.post("/api/2.0/mlflow/registered-models/create", {"name": "pd-a"}).status == 200
        pg.shutdown()
        t0 = time.time()
        for path in ("/api/2.0/mlflow/registered-models/get?name=pd-a",):
            r = reg.get(path)
            assert r.status == 503, r
            assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            assert int(r.headers["Retry-After"]) >= 1
        w = reg.post("/api/2.0/mlflow/registered-models/create", {"name": "pd-b"})
        assert w.status == 503 and "Retry-After" in w.headers, w
        assert time.time() - t0 < 10, "answers within the request deadline"
        h = reg.request("GET", "/health").json()
        assert h["db"] == "down" and h["status"] == "degraded"
        assert reg.request("GET", "/ready").status == 503
        pg.start()
        deadline = time.time() + 15
        while time.time() < deadline:
            if reg.get("/api/2.0/mlflow/registered-models/get?name=pd-a").status == 200:
                break
            time.sleep(0.2)
        assert reg.get("/api/2.0/mlflow/registered-models/get?name=pd-a").status == 200
        assert reg.post("/api/2.0/mlflow/registered-models/create", {"name": "pd-b"}).status == 200
        assert reg.request("GET", "/health").json()["db"] == "up"
        assert reg.proc.poll() is None  # the same process all along
    finally:
        if reg:
            reg.stop()
        pg.stop()
