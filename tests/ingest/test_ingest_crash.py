"""Crash safety of mlops-ingest on the real broker: kill -9 mid-stream and
restart. Every input lands in features or the DLQ (never both), none is
lost; in exactly-once mode none twice. Replayed events get the same rolling
features as the first time (state in Redis is replay-safe). CI: 10,000
events, one kill; make soak: 50,000 events, three kills."""
import json
import random
import threading
import time

import pytest

from conftest import SCALE, consume_all, produce, valid_event

BAD_MAKERS = [
    lambda i: json.dumps(valid_event(i, age=200)),                      # out_of_range
    lambda i: json.dumps(valid_event(i, department="marketing")),       # unknown_category
    lambda i: json.dumps(valid_event(i, monthly_income="lots")),        # wrong_type
    lambda i: json.dumps({k: v for k, v in valid_event(i).items() if k != "overtime"}),
    lambda i: f'{{"event_id": "ev-{i}", garbage-{i}',                    # bad_json
]


def make_stream(n, seed):
    rng = random.Random(seed)
    items, kinds = [], {}
    for i in range(n):
        ev_id = f"ev-{i}"
        if rng.random() < 0.3:
            payload = rng.choice(BAD_MAKERS)(i)
            kinds[ev_id] = "bad"
        else:
            payload = json.dumps(valid_event(i))
            kinds[ev_id] = "good"
        items.append((f"emp-{i % 50}".encode(), payload.encode()))
    return items, kinds


def id_of_dlq(rec):
    raw = rec["original"]["bytes"]
    try:
        return json.loads(raw)["event_id"]
    except (ValueError, KeyError):
        return raw.split('"event_id": "')[1].split('"')[0]


def produce_steadily(topic, items, seconds):
    """Spread the stream over `seconds`, so a kill lands mid-stream."""
    chunks = 20
    size = (len(items) + chunks - 1) // chunks
    for k in range(chunks):
        produce(topic, items[k * size:(k + 1) * size])
        time.sleep(seconds / chunks)


def wait_metric_at_least(ig, value, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = (ig.metric("mlops_ingest_features_total") or 0)
        if got >= value:
            return got
        time.sleep(0.05)
    raise AssertionError(f"ingest processed fewer than {value} events")


@pytest.mark.parametrize("exactly_once", [True, False], ids=["eos", "alos"])
def test_kill9_mid_stream_loses_nothing(ingest_factory, exactly_once):
    n = 10000 if SCALE == 1 else 50000
    kills = 1 if SCALE == 1 else 3
    items, kinds = make_stream(n, seed=7 if exactly_once else 8)
    ig = ingest_factory(exactly_once=exactly_once)
    producer = threading.Thread(target=produce_steadily, args=(ig.input, items, 6 * SCALE))
    producer.start()
    good = sum(1 for k in kinds.values() if k == "good")
    for k in range(kills):
        # the counter is per process: each one must get this far before its kill
        wait_metric_at_least(ig, good // (kills + 2))
        ig.kill9()
        time.sleep(0.5)
        ig.start()
    producer.join()
    expect_features = good
    feats = consume_all(ig.features, expect=None if not exactly_once else expect_features,
                        timeout=240, quiet=8)
    dlq = consume_all(ig.dlq, expect=None if not exactly_once else n - good, timeout=120, quiet=8)
    assert ig.stop() == 0

    f_ids, d_ids = {}, {}
    for m in feats:
        rec = json.loads(m.value())
        f_ids.setdefault(rec["event_id"], []).append(rec)
    for m in dlq:
        rec = json.loads(m.value())
        d_ids.setdefault(id_of_dlq(rec), []).append(rec)
    both = set(f_ids) & set(d_ids)
    missing = set(kinds) - set(f_ids) - set(d_ids)
    assert not both, f"{len(both)} events in both features and the DLQ"
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:5]}"
    assert {e for e, k in kinds.items() if k == "good"} == set(f_ids)
    if exactly_once:
        twice = [e for e, recs in {**f_ids, **d_ids}.items() if len(recs) > 1]
        assert not twice, f"{len(twice)} events written twice under exactly-once"
    # replays reproduce the same point-in-time features: events_30d of a good
    # event counts its entity's good events in (t - 30 days, t] (event i is at
    # t0 + i minutes; at soak size the stream is longer than 30 days)
    per_entity = {}
    for i in range(n):
        if kinds[f"ev-{i}"] == "good":
            per_entity.setdefault(i % 50, []).append(i)
    window_min = 30 * 24 * 60
    for idx in per_entity.values():
        lo = 0
        for k, i in enumerate(idx):
            while idx[lo] <= i - window_min:
                lo += 1
            e = f"ev-{i}"
            counts = {r["values"]["events_30d"] for r in f_ids[e]}
            assert counts == {k - lo + 1}, (e, counts, k - lo + 1)
