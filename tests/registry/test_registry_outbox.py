"""The outbox on the real broker: every committed write reaches the models
topic as a model_event/1 snapshot, in commit order, after a kill -9 of the
registry and a restart too (duplicates allowed, no gaps)."""
import json
import signal
import threading
import time
import uuid

import jsonschema
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BROKERS, ROOT, Registry, model_doc

SCHEMA = json.loads((ROOT / "schemas/model_event.schema.json").read_text())

RM = "/api/2.0/mlflow/registered-models"
MV = "/api/2.0/mlflow/model-versions"


@pytest.fixture
def topic():
    name = f"it-models-{uuid.uuid4().hex[:10]}"
    a = AdminClient({"bootstrap.servers": BROKERS})
    for f in a.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "compact"})]).values():
        f.result(30)
    yield name
    try:
        for f in a.delete_topics([name]).values():
            f.result(30)
    except Exception:
        pass


def read_all(topic, want_ids, timeout=60):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": f"it-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    events, seen = [], set()
    deadline = time.time() + timeout
    try:
        while not want_ids <= seen and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            ev = json.loads(m.value())
            assert m.key().decode() == ev["model"]
            events.append(ev)
            seen.add(ev["outbox_id"])
    finally:
        c.close()
    return events


def writes(reg, tokens, prefix, n):
    try:
        _writes(reg, tokens, prefix, n)
    except OSError:  # the registry was killed under us (connection reset or refused)
        pass


def _writes(reg, tokens, prefix, n):
    t = tokens["trainer"]
    for i in range(n):
        name = f"{prefix}-{i % 3}"
        if i < 3:
            assert reg.post(RM + "/create", {"name": name}, token=t).status == 200
        r = reg.request("POST", f"/api/v1/models/{name}/versions", raw=model_doc(name), token=t)
        if r.status != 201:
            return  # the registry was killed under us
        v = r.json()["model_version"]["version"]
        reg.post(f"/api/v1/models/{name}/aliases/champion/promote", {"version": int(v)})


def check_order(events, db_ids):
    firsts, seen = [], set()
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for ev in events:
        validator.validate(ev)
        if ev["outbox_id"] not in seen:
            seen.add(ev["outbox_id"])
            firsts.append(ev["outbox_id"])
    assert firsts == sorted(firsts), "first deliveries must be in commit order"
    assert firsts == db_ids, "every committed row, no gaps"


def test_outbox_in_commit_order_across_kill9(tmp_path, db, topic):
    reg = Registry(tmp_path / "a", db, topic=topic)
    try:
        tokens = {"trainer": reg.token("trainer")}
        writes(reg, tokens, "ob", 12)
        # kill -9 while a writer is busy, then restart on the same database
        th = threading.Thread(target=writes, args=(reg, tokens, "obk", 60))
        th.start()
        time.sleep(0.3)
        reg.proc.send_signal(signal.SIGKILL)
        reg.proc.wait()
        th.join()
        reg.start()
        writes(reg, tokens, "obz", 6)
        # the other kinds of change, so every shape meets the schema
        t = tokens["trainer"]
        assert reg.post("/api/v1/models/obz-0/aliases/challenger/promote",
                        {"version": 1}).status == 200
        assert reg.call("PUT", "/api/v1/models/obz-0/deployment",
                        {"mode": "canary", "canary_share": 0.25}).status == 200
        assert reg.post(RM + "/rename", {"name": "obz-1", "new_name": "obz-1b"}).status == 200
        assert reg.call("DELETE", RM + "/delete", {"name": "obz-2"}).status == 200
        assert reg.post(MV + "/transition-stage", {"name": "obz-0", "version": "1",
                                                   "stage": "Staging"}).status == 200
        assert reg.post(RM + "/set-tag", {"name": "obz-0", "key": "k", "value": "v"},
                        token=t).status == 200
        db_ids = [int(x) for x in db.sql("SELECT id FROM outbox ORDER BY id")]
        assert len(db_ids) >= 12 * 2 + 3
        events = read_all(topic, set(db_ids))
        check_order(events, db_ids)
        # everything is marked sent once the relay caught up
        deadline = time.time() + 20
        while time.time() < deadline:
            if db.sql("SELECT count(*) FROM outbox WHERE sent_ms IS NULL") == ["0"]:
                break
            time.sleep(0.1)
        assert db.sql("SELECT count(*) FROM outbox WHERE sent_ms IS NULL") == ["0"]
        # the last event of a model is a full snapshot: the alias points at the
        # newest version, with the artifact's digest
        last = {}
        for ev in events:
            last[ev["model"]] = ev
        for name, ev in last.items():
            snap = ev["snapshot"]
            if snap["aliases"]:
                champ = snap["aliases"]["champion"]
                assert len(champ["sha256"]) == 64
                assert champ["version"] in [v["version"] for v in snap["versions"]]
        dep = last["obz-0"]["snapshot"]["deployment"]
        assert dep["canary_share"] == 0.25 and dep["challenger"] == 1
        assert last["obz-1"]["change"]["renamed_to"] == "obz-1b"
        assert last["obz-1"]["snapshot"]["deleted"] is True
        assert last["obz-2"]["snapshot"]["deleted"] is True
        assert reg.request("GET", "/health").json()["outbox_published"] >= 1
        # the metrics, read with Prometheus' own parser
        from prometheus_client.parser import text_string_to_metric_families
        fams = {f.name: f for f in text_string_to_metric_families(
            reg.request("GET", "/metrics").body.decode())}
        assert fams["mlops_registry_outbox_published"].samples[0].value >= 1
        deadline = time.time() + 5
        while time.time() < deadline:
            fams = {f.name: f for f in text_string_to_metric_families(
                reg.request("GET", "/metrics").body.decode())}
            if fams["mlops_registry_outbox_unsent"].samples[0].value == 0:
                break
            time.sleep(0.2)
        assert fams["mlops_registry_outbox_unsent"].samples[0].value == 0
    finally:
        reg.stop()
