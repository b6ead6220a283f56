"""`mlopsctl produce` and `mlopsctl datagen --topic` against the real broker:
what is produced is read back with confluent_kafka and compared with the
input (values, keys, per-key order), labels are split off into label/1
records that validate against schemas/label.schema.json, bad JSONL lines are
counted and named, and a missing topic is a clear error. Each test creates
its own topics and deletes them at the end."""
import csv
import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
MLOPSCTL = BUILD / "cli" / "mlopsctl"
BROKERS = os.environ.get("MLOPS_KAFKA_BROKERS", "127.0.0.1:9092")
SPEC = ROOT / "examples" / "attrition" / "spec.json"
LABEL_SCHEMA = json.loads((ROOT / "schemas" / "label.schema.json").read_text())
PARTITIONS = 3


@pytest.fixture
def topics():
    """make(n) creates n fresh topics and returns their names; all are deleted at the end."""
    admin = AdminClient({"bootstrap.servers": BROKERS})
    made = []

    def make(n):
        names = [f"cli-it-{uuid.uuid4().hex[:12]}" for _ in range(n)]
        futures = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names],
                                      operation_timeout=30)
        for f in futures.values():
            f.result(timeout=30)
        made.extend(names)
        return names

    yield make
    if made:
        for f in admin.delete_topics(made, operation_timeout=30).values():
            try:
                f.result(timeout=30)
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass


def consume(topic, n, timeout=60, settle=1.5):
    """Every message of the topic, read from the beginning with assign() (no
    consumer group is created): waits for n, then a little longer so extra
    (duplicate) messages would be seen too."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": f"cli-it-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    out = []
    deadline = time.monotonic() + timeout
    settle_until = None
    try:
        while time.monotonic() < deadline:
            if len(out) >= n and settle_until is None:
                settle_until = time.monotonic() + settle
            if settle_until and time.monotonic() > settle_until:
                break
            m = c.poll(0.2)
            if m is None:
                continue
            assert not m.error(), m.error()
            out.append(m)
    finally:
        c.close()
    return out


def run(*args, timeout=180):
    return subprocess.run([str(MLOPSCTL), *args, "--brokers", BROKERS], capture_output=True,
                          text=True, timeout=timeout)


def parse_time(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def check_label_records(msgs, want_delay_s):
    """label/1 records: valid against the schema, keyed by entity, label_time = event_time + delay."""
    validator = jsonschema.Draft202012Validator(LABEL_SCHEMA,
                                                format_checker=jsonschema.FormatChecker())
    recs = {}
    for m in msgs:
        rec = json.loads(m.value())
        validator.validate(rec)
        assert m.key().decode() == rec["entity"]
        assert parse_time(rec["label_time"]) - parse_time(rec["event_time"]) == timedelta(
            seconds=want_delay_s)
        recs.setdefault(rec["event_id"], []).append(rec)
    return recs


def same_value(csv_text, got):
    """A CSV cell (text) against the JSON value datagen produced for it."""
    if isinstance(got, bool):
        return csv_text == ("true" if got else "false")
    if isinstance(got, (int, float)):
        return float(csv_text) == float(got)
    return csv_text == got


def per_key_order(msgs, id_field):
    order = {}
    for m in msgs:
        order.setdefault(m.key(), []).append(json.loads(m.value())[id_field])
    return order


# ---- produce --------------------------------------------------------------------------------


def test_produce_jsonl_with_keys_and_bad_lines(tmp_path, topics):
    (topic,) = topics(1)
    events = [{"event_id": f"e{i}", "user": f"u{i % 7}", "ts": f"2026-01-01T00:00:{i % 60:02d}Z",
               "x": i * 0.25 - 3.1, "n": i, "ok": i % 2 == 0, "tags": ["a", str(i)],
               "nested": {"k": i, "s": "é\"quoted\", comma"}} for i in range(60)]
    lines = [json.dumps(e) for e in events]
    bad = {  # 1-based line number -> expected reason
        5: ('{"event_id": "broken", ', "bad_json"),
        20: ("[1, 2, 3]", "not_object"),
        41: ('{"a": 1, "a": 2}', "duplicate_key"),
    }
    for lineno in sorted(bad):
        lines.insert(lineno - 1, bad[lineno][0])
    lines.insert(30, "")  # a blank line is not an event and not an error
    src = tmp_path / "events.jsonl"
    src.write_text("\n".join(lines) + "\n")
    r = run("produce", "--topic", topic, "--jsonl", str(src), "--key", "user")
    assert r.returncode == 0, r.stderr
    for lineno, (_, reason) in bad.items():
        # the blank line at index 30 shifts the lines after it by one
        shown = lineno + (1 if lineno > 30 else 0)
        assert f"{src}:{shown}: skipped: {reason}" in r.stderr, r.stderr
    assert "bad lines 3" in r.stderr and "failed 0" in r.stderr and "sent 60" in r.stderr

    msgs = consume(topic, 60)
    assert len(msgs) == 60
    got = {json.loads(m.value())["event_id"]: m for m in msgs}
    for e in events:
        m = got[e["event_id"]]
        assert json.loads(m.value()) == e
        assert m.key().decode() == e["user"]
    # per key, the file's order
    for key, ids in per_key_order(msgs, "event_id").items():
        assert ids == [e["event_id"] for e in events if e["user"] == key.decode()]


def test_produce_without_key_or_spec_sends_unkeyed_events(tmp_path, topics):
    (topic,) = topics(1)
    src = tmp_path / "e.jsonl"
    src.write_text("".join(json.dumps({"i": i, "left": "yes"}) + "\n" for i in range(10)))
    r = run("produce", "--topic", topic, "--jsonl", str(src))
    assert r.returncode == 0, r.stderr
    msgs = consume(topic, 10)
    assert len(msgs) == 10
    assert all(m.key() is None for m in msgs)
    # no spec: nothing is taken out of the events
    assert sorted(json.loads(m.value())["i"] for m in msgs) == list(range(10))
    assert all(json.loads(m.value())["left"] == "yes" for m in msgs)


def test_produce_csv_with_spec_splits_the_labels(tmp_path, topics):
    ev, lb = topics(2)
    data = tmp_path / "att.csv"
    g = subprocess.run([str(MLOPSCTL), "datagen", "attrition", "--rows", "400", "--seed", "5",
                        "--out", str(data)], capture_output=True, text=True, timeout=60)
    assert g.returncode == 0, g.stderr
    with data.open(newline="") as f:
        rows = list(csv.DictReader(f))
    r = run("produce", "--topic", ev, "--csv", str(data), "--spec", str(SPEC), "--labels-topic",
            lb, "--label-delay", "90")
    assert r.returncode == 0, r.stderr
    assert "400 events" in r.stderr and "400 labels" in r.stderr

    events = consume(ev, 400)
    assert len(events) == 400
    by_id = {json.loads(m.value())["event_id"]: m for m in events}
    for row in rows:
        m = by_id[row["event_id"]]
        # CSV cells are text; empty cells are absent; the label is gone
        want = {k: v for k, v in row.items() if v != "" and k != "left"}
        assert json.loads(m.value()) == want
        assert m.key().decode() == row["employee_id"]

    labels = check_label_records(consume(lb, 400), 90)
    assert len(labels) == 400
    for row in rows:
        (rec,) = labels[row["event_id"]]
        assert rec["label"] == row["left"]
        assert rec["entity"] == row["employee_id"]
        assert parse_time(rec["event_time"]) == parse_time(row["event_time"])


def test_missing_topic_is_a_clear_error(tmp_path):
    src = tmp_path / "e.jsonl"
    src.write_text('{"a": 1}\n')
    name = f"cli-it-missing-{uuid.uuid4().hex[:8]}"
    r = run("produce", "--topic", name, "--jsonl", str(src), timeout=60)
    assert r.returncode == 1
    assert f"topic '{name}' does not exist" in r.stderr


def test_rate_limit(tmp_path, topics):
    (topic,) = topics(1)
    src = tmp_path / "e.jsonl"
    src.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(31)))
    t0 = time.monotonic()
    r = run("produce", "--topic", topic, "--jsonl", str(src), "--rate", "50")
    secs = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert secs >= 0.55, secs  # 30 intervals at 50/s = 0.6 s
    assert len(consume(topic, 31)) == 31


# ---- datagen --topic ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["0", "0.1"])
def test_datagen_topic_round_trip(tmp_path, topics, bad):
    ev, lb = topics(2)
    n = 3000
    args = ["datagen", "attrition", "--rows", str(n), "--seed", "77", "--bad-fraction", bad]
    r = run(*args, "--topic", ev, "--labels-topic", lb, "--label-delay", "3600")
    assert r.returncode == 0, r.stderr
    assert f"{n} events -> {ev}" in r.stderr and f"{n} labels -> {lb}" in r.stderr
    assert "failed 0" in r.stderr
    # the same rows as CSV, to compare with
    out = tmp_path / "same.csv"
    g = subprocess.run([str(MLOPSCTL), *args, "--out", str(out)], capture_output=True, text=True,
                       timeout=60)
    assert g.returncode == 0, g.stderr
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))

    events = consume(ev, n)
    assert len(events) == n
    got = {}
    for m in events:
        e = json.loads(m.value())
        assert "left" not in e
        assert m.key().decode() == e["employee_id"]
        got.setdefault(e["event_id"], []).append(e)
    want = {}
    for row in rows:
        want.setdefault(row["event_id"], []).append(row)
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in want.items()}
    if bad == "0":
        assert all(len(v) == 1 for v in got.values())
    for eid, rs in want.items():
        for row, e in zip(rs, got[eid]):
            present = {k for k, v in row.items() if v != "" and k != "left"}
            assert set(e) == present, eid
            for k in present:
                assert same_value(row[k], e[k]), (eid, k, row[k], e[k])

    labels = check_label_records(consume(lb, n), 3600)
    assert sum(len(v) for v in labels.values()) == n
    for eid, rs in want.items():
        assert [x["label"] for x in labels[eid]] == [row["left"] for row in rs]
        assert all(x["entity"] == rs[0]["employee_id"] for x in labels[eid])
    # events of one employee keep their order (one key, one partition)
    for key, ids in per_key_order(events, "event_id").items():
        rows_of = [row["event_id"] for row in rows if row["employee_id"] == key.decode()]
        assert ids == rows_of


def test_offsets_prints_the_range_train_takes(topics):
    """mlopsctl offsets: per partition FROM-TO as the broker reports them (read back with
    confluent_kafka's watermarks), in train --range's form; --from narrows it."""
    from confluent_kafka import Producer
    (topic,) = topics(1)
    p = Producer({"bootstrap.servers": BROKERS})
    for i in range(50):
        p.produce(topic, value=b"{}", partition=i % PARTITIONS)
    assert p.flush(30) == 0
    r = subprocess.run([str(MLOPSCTL), "offsets", topic], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": f"cli-it-{uuid.uuid4().hex}"})
    try:
        want = []
        for part in range(PARTITIONS):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
            want.append(f"{topic}:{part}:{lo}-{hi}")
    finally:
        c.close()
    assert r.stdout.strip() == ",".join(want)
    assert sum(int(x.rsplit("-", 1)[1]) for x in want) == 50
    r = subprocess.run([str(MLOPSCTL), "offsets", topic, "--from", "10"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert all(x.split(":")[2].startswith("10-") for x in r.stdout.strip().split(","))
    r = subprocess.run([str(MLOPSCTL), "offsets", f"{topic}-missing"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "does not exist" in r.stderr
