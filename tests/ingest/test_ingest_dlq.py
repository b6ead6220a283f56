"""Bad input of every kind through the real mlops-ingest on the real broker:
each golden case lands in the DLQ with the reason and field the spec's rules
call for, none reaches features; hostile payloads never crash the service;
every output validates against the contracts in schemas/."""
import base64
import hashlib
import json
from pathlib import Path

import pytest

from conftest import consume_all, produce, validator, valid_event

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ingest_bad_events.jsonl"


def dlq_by_original(records):
    out = {}
    for m in records:
        rec = json.loads(m.value())
        o = rec["original"]
        raw = base64.b64decode(o["bytes"]) if o["encoding"] == "base64" else o["bytes"].encode()
        out.setdefault(raw, []).append(rec)
    return out


@pytest.mark.parametrize("exactly_once", [True, False], ids=["eos", "alos"])
def test_golden_bad_events_each_land_in_dlq_with_their_reason(ingest_factory, exactly_once):
    cases = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    assert len(cases) >= 200
    ig = ingest_factory(exactly_once=exactly_once)
    produce(ig.input, [(str(i).encode(), c["payload"].encode()) for i, c in enumerate(cases)])
    dlq = consume_all(ig.dlq, expect=len(cases), timeout=90)
    assert len(dlq) == len(cases), f"{len(dlq)} of {len(cases)} reached the DLQ"
    assert consume_all(ig.features, timeout=5, quiet=2) == [], "a bad event reached features"
    by_raw = dlq_by_original(dlq)
    wrong = []
    v = validator("dlq")
    for i, c in enumerate(cases):
        recs = by_raw.get(c["payload"].encode(), [])
        assert len(recs) >= 1, f"case {c['case']!r} missing from the DLQ"
        rec = recs[0]
        v.validate(rec)
        if (rec["reason"], rec["field"]) != (c["reason"], c["field"]):
            wrong.append((c["case"], (c["reason"], c["field"]), (rec["reason"], rec["field"]),
                          rec["detail"]))
        assert rec["source"]["topic"] == ig.input
        assert rec["detail"], "a DLQ record explains itself"
    assert not wrong, f"{len(wrong)} cases with another reason, e.g. {wrong[:5]}"
    assert ig.metric("mlops_ingest_features_total") == 0
    total = sum(ig.metric("mlops_ingest_dlq_total", f'reason="{r}"') or 0
                for r in {c["reason"] for c in cases})
    assert total == len(cases)
    assert ig.stop() == 0


def test_hostile_payloads_never_crash_and_land_in_the_dlq(ingest_factory):
    # the limit sits between the 1 MB-string event and the broker's own 1 MiB cap
    ig = ingest_factory(extra=["--max-event-bytes", "1020000"])
    good = json.dumps(valid_event(1))
    deep = '{"a":' + "[" * 2049 + "]" * 2049 + "}"
    hostile = [
        ("deep nesting 2049", deep.encode(), "bad_json"),
        ("1 MB string", json.dumps({**valid_event(2), "job_role": "x" * 1_000_000}).encode(),
         "out_of_range"),
        ("over the size limit", b'{"a":"' + b"y" * 1_030_000 + b'"}', "too_large"),
        ("invalid utf-8", good[:-1].encode() + b', "x_extra": "\xff\xfe"}', "bad_json"),
        ("nul escape", good[:-1].encode() + b', "x_extra": "a\\u0000b"}', "bad_json"),
        ("raw nul byte", b'{"a": "x\x00y"}', "bad_json"),
        ("NaN literal", good[:-1].encode() + b', "x": NaN}', "bad_json"),
        ("Infinity literal", good[:-1].encode() + b', "x": -Infinity}', "bad_json"),
        ("1e400", json.dumps(valid_event(3)).replace('"age": 28', '"age": 1e400').encode(),
         "non_finite"),
        ("duplicate keys", b'{"event_id": "a", "event_id": "b"}', "duplicate_key"),
        ("empty payload", b"", "bad_json"),
        ("null payload", None, "bad_json"),
        ("binary", bytes(range(256)), "bad_json"),
        ("lone surrogate escape", good[:-1].encode() + b', "x_extra": "\\ud800"}', "bad_json"),
    ]
    produce(ig.input, [(name.encode(), payload) for name, payload, _ in hostile])
    dlq = consume_all(ig.dlq, expect=len(hostile), timeout=90)
    assert ig.proc.poll() is None, "the service died on hostile input"
    assert len(dlq) == len(hostile)
    by_key = {m.key().decode(): json.loads(m.value()) for m in dlq}
    v = validator("dlq")
    for name, payload, reason in hostile:
        rec = by_key[name]
        v.validate(rec)
        assert rec["reason"] == reason, (name, rec["reason"], rec["detail"])
        raw = payload or b""
        assert rec["original"]["length"] == len(raw)
        assert rec["original"]["sha256"] == hashlib.sha256(raw).hexdigest()
        assert rec["original"]["truncated"] == (len(raw) > 65536)
    # and the service still works
    produce(ig.input, [(b"ok", good.encode())])
    feats = consume_all(ig.features, expect=1, timeout=30)
    assert len(feats) == 1
    assert ig.stop() == 0


@pytest.mark.parametrize("exactly_once", [True, False], ids=["eos", "alos"])
def test_outputs_validate_and_carry_point_in_time_features(ingest_factory, exactly_once):
    ig = ingest_factory(exactly_once=exactly_once)
    n = 300
    events = [valid_event(i) for i in range(n)]
    produce(ig.input, [(e["employee_id"].encode(), json.dumps(e).encode()) for e in events])
    feats = consume_all(ig.features, expect=n, timeout=90)
    assert len(feats) == n
    v = validator("features")
    seen = {}
    for m in feats:
        rec = json.loads(m.value())
        v.validate(rec)
        assert m.key().decode() == rec["entity"]
        seen[rec["event_id"]] = rec
    assert set(seen) == {e["event_id"] for e in events}
    # per entity, events come one minute apart, so within any rolling window
    # the count is the number of that entity's events so far
    by_entity = {}
    for e in events:
        by_entity.setdefault(e["employee_id"], []).append(e["event_id"])
    for ids in by_entity.values():
        for k, eid in enumerate(ids):
            vals = seen[eid]["values"]
            assert vals["events_30d"] == k + 1, (eid, vals["events_30d"], k + 1)
    assert ig.stop() == 0
