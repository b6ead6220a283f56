"""kill -9 of the streaming trainer inside a request, on the real stack (Kafka, the
real mlops-registry on a database of its own). The design: a trained artifact is
kept under <state_dir>/trainer/requests/ until the request is finished, and it is
registered with an Idempotency-Key derived from the request id, so a restart after
a crash registers the same bytes, the registry answers with the version it made the
first time, and the offset is committed once the request is finished.

The crash points come from the test hook MLOPS_TEST_TRAINER_CRASH_AFTER
(services/trainer/stream.c): `register` (the version made, the record and the
offset not yet written) and `train` (the artifact kept, nothing registered). What
is checked is what the registry's database, the registry's API, the trainer's
request record and the consumer group's committed offset say."""
import hashlib
import json
import signal
import socket
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

import test_trainer_service as ts
from kafkatest import BROKERS, create_topics, delete_topics, produce

ROWS = 1500
# a killed member leaves the group within seconds (the broker's minimum session)
FAST_GROUP = ("-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000")


@pytest.fixture(scope="module")
def crashworld(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer-crash")
    u = uuid.uuid4().hex[:8]
    topics = {k: f"tc-{k}-{u}" for k in ("feat", "lab")}
    create_topics(list(topics.values()), partitions=1)
    ts.produce_dataset(tmp, topics, seed=7, n=ROWS)
    db = ts.reg.Database()
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    registry = ts.reg.Registry(tmp / "registry", db, extra=("--metrics-port", str(port)))
    w = dict(tmp=tmp, topics=topics, registry=registry, db=db,
             token=registry.token("trainer"), extra_topics=[])
    yield w
    registry.stop()
    db.drop()
    delete_topics(list(topics.values()) + w["extra_topics"])


def scenario(w, name):
    """A model, a consumer group, a state folder and a requests topic of its own."""
    u = uuid.uuid4().hex[:6]
    req = f"tc-req-{name}-{u}"
    create_topics([req], partitions=1)
    w["extra_topics"].append(req)
    return dict(model=f"crash-{name}-{u}", group=f"tc-{name}-{u}", state=f"st-{name}",
                topics={**w["topics"], "req": req}, rid=f"{name}-{u}")


def start(w, s, crash=None):
    env = {"MLOPS_TEST_TRAINER_CRASH_AFTER": crash} if crash else {}
    group, state = s["group"], s["state"]
    return ts.Trainer(w["tmp"], s["topics"], w["registry"].base, w["token"], extra=FAST_GROUP,
                      group=group, env=env, state=state)


def wait_killed(t, timeout=120):
    try:
        t.proc.wait(timeout)
    except Exception:
        raise AssertionError("the trainer did not reach its crash point:\n"
                             + "".join(t.logs[-40:]))
    time.sleep(0.1)
    assert t.proc.returncode == -signal.SIGKILL, (t.proc.returncode, "".join(t.logs[-30:]))
    assert any("test hook: MLOPS_TEST_TRAINER_CRASH_AFTER" in ln for ln in t.logs)


def versions(w, model):
    """(version, artifact sha256) of every version of `model`, from the registry's
    own database and its artifact API."""
    q = ("SELECT v.version FROM model_versions v JOIN registered_models m ON m.id = v.model_id"
         f" WHERE m.name = '{model}' ORDER BY v.version")
    out = []
    for line in w["db"].sql(q):
        r = w["registry"].get(f"/api/v1/models/{model}/versions/{line}/artifact")
        assert r.status == 200, r
        out.append((int(line), hashlib.sha256(r.body).hexdigest()))
    return out


def committed(s):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": s["group"],
                  "enable.auto.commit": False})
    try:
        tp = c.committed([TopicPartition(s["topics"]["req"], 0)], timeout=20)[0]
    finally:
        c.close()
    return tp.offset  # negative: nothing committed


def end_offset(s):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": f"x-{uuid.uuid4().hex}"})
    try:
        return c.get_watermark_offsets(TopicPartition(s["topics"]["req"], 0), timeout=20)[1]
    finally:
        c.close()


def file_request(w, s, rid):
    """Files a request; returns its offset on the requests topic."""
    off, model = end_offset(s), s["model"]
    feat, lab = w["topics"]["feat"], w["topics"]["lab"]
    produce(s["topics"]["req"], [(model.encode(), ts.request(rid, model, {
        "kind": "ranges", "ranges": [{"topic": feat, "partition": 0, "from": 0, "to": ROWS},
                                     {"topic": lab, "partition": 0, "from": 0, "to": ROWS}]},
        {"algo": "logreg"}))])
    assert end_offset(s) == off + 1
    return off


def kept(w, s, rid):
    """The trainer's files for a request: its record and the kept artifact."""
    key = hashlib.sha256(rid.encode()).hexdigest()
    d = w["tmp"] / s["state"] / "trainer/requests"
    return d / f"{key}.json", d / f"{key}.model.json"


def wait_committed(s, want, timeout=30):
    deadline = time.time() + timeout
    while (got := committed(s)) != want:
        assert time.time() < deadline, (got, want)
        time.sleep(0.5)


def finish_after_restart(w, s, off, first_sha):
    """The restarted trainer finishes the request once, with the first version."""
    model, rid = s["model"], s["rid"]
    t = start(w, s)
    try:
        rec = t.wait(rid)
        assert rec["state"] == "registered", rec
        vs = versions(w, model)
        assert vs == [(rec["version"], first_sha)], (vs, rec)
        assert t.metric("mlops_trainer_requests_total", outcome="registered") == 1
        assert any("registering the artifact of an earlier run" in ln for ln in t.logs)
        record, art = kept(w, s, rid)
        assert not art.exists()
        wait_committed(s, off + 1)
        assert json.loads(record.read_text())["state"] == "registered"
        # a further request still works and makes the next version
        rid2 = f"next-{uuid.uuid4().hex[:6]}"
        off2 = file_request(w, s, rid2)
        rec2 = t.wait(rid2)
        assert rec2["state"] == "registered" and rec2["version"] == rec["version"] + 1, rec2
        assert [v for v, _ in versions(w, model)] == [rec["version"], rec2["version"]]
        wait_committed(s, off2 + 1)
        assert t.metric("mlops_trainer_requests_total", outcome="registered") == 2
    finally:
        t.stop()
    return rec


def test_kill_after_register_before_commit(crashworld):
    w = crashworld
    s = scenario(w, "reg")
    t = start(w, s, crash="register")
    off = file_request(w, s, s["rid"])
    wait_killed(t)
    # the crash came after the registry made the version, before the commit
    vs = versions(w, s["model"])
    assert len(vs) == 1, vs
    first_version, first_sha = vs[0]
    record, art = kept(w, s, s["rid"])
    assert hashlib.sha256(art.read_bytes()).hexdigest() == first_sha
    assert json.loads(record.read_text())["state"] == "running"
    assert committed(s) < 0
    rec = finish_after_restart(w, s, off, first_sha)
    assert rec["version"] == first_version


def test_kill_after_training_before_register(crashworld):
    w = crashworld
    s = scenario(w, "fit")
    t = start(w, s, crash="train")
    off = file_request(w, s, s["rid"])
    wait_killed(t)
    assert versions(w, s["model"]) == []
    record, art = kept(w, s, s["rid"])
    trained_sha = hashlib.sha256(art.read_bytes()).hexdigest()
    assert json.loads(record.read_text())["state"] == "running"
    assert committed(s) < 0
    # the restart registers the bytes the killed run trained, not a new fit
    finish_after_restart(w, s, off, trained_sha)
