"""mlops-scorer on the real broker and a real Redis.

Oracles: `mlopsctl predict` (the offline path) on the same CSV rows for every
score, bit for bit; an independent Python implementation of the documented
canary split (FNV-1a 64 + splitmix64); the prediction/1 JSON Schema
(jsonschema); a run with a healthy Redis as the reference for an outage run.
"""
import json
import random
import signal
import struct
import time
from collections import Counter, defaultdict

import pytest

from conftest import (BROKERS, KAFKA_TEST_PROPS, SOAK, Scorer, consume_all, predict_csv,
                      predictions, produce, validator)


def base_args(stream, inp, out, *extra, eos=True):
    return ["--input-topic", inp, "--predictions-topic", out, "--group-id", f"g-{out}",
            "--transactional-id", f"tx-{out}", "--redis-url", stream.redis.url,
            "--exactly-once" if eos else "--no-exactly-once", "--commit-interval-ms", 200,
            *KAFKA_TEST_PROPS, *extra]


def served(preds):
    return [p for p in preds if p["served"]]


def feed(stream, topic, records):
    produce(topic, [(m.key(), m.value()) for m in records])


# ---- the split, as documented in services/scorer/rollout.h ----------------------------------

M64 = (1 << 64) - 1


def fnv1a(h, data):
    for b in data:
        h ^= b
        h = (h * 1099511628211) & M64
    return h


def bucket(salt, entity):
    h = fnv1a(14695981039346656037, salt.encode() + b"\0")
    h = fnv1a(h, entity.encode())
    z = h
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    return (z >> 11) / 9007199254740992.0


# ---- scores --------------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["lr", "gbdt"])
def test_scores_equal_mlopsctl_predict_bit_for_bit(stream, scorers, algo):
    """Without enrichment the scorer imputes exactly as the offline path: every
    one of the rows scores the same double as `mlopsctl predict` on the CSV."""
    check_scores_equal_predict(stream, scorers, algo)


@pytest.mark.parametrize("algo", ["lr", "gbdt"])
def test_example_scores_equal_mlopsctl_predict_bit_for_bit(example_stream, scorers, algo):
    """The same on the real datasets, whose categoricals and missing cells go
    through ingest, the scorer's features/1 decode and the model's imputers."""
    check_scores_equal_predict(example_stream, scorers, algo)


def check_scores_equal_predict(stream, scorers, algo):
    out = stream.new_topic()
    sc = scorers(["--model", stream.models[algo], "--no-enrich",
                  *base_args(stream, stream.features, out)])
    preds = predictions(out, expect=stream.rows)
    sc.stop()
    assert len(preds) == stream.rows
    want = dict(zip(stream.event_ids(), predict_csv(stream.models[algo], stream.csv)))
    got = {p["event_id"]: p["score"] for p in preds}
    assert len(got) == stream.rows
    diff = [(e, got[e], want[e]) for e in want if got[e] != want[e]]
    assert not diff, f"{len(diff)} scores differ, e.g. {diff[:3]}"
    model = json.loads(stream.models[algo].read_text())
    v = validator()
    for p in preds:
        v.validate(p)
        assert p["role"] == "champion" and p["served"]
        assert p["decision"] == (p["score"] >= model["threshold"])
        assert p["threshold"] == model["threshold"]
    src = {(p["source"]["partition"], p["source"]["offset"]) for p in preds}
    assert len(src) == stream.rows


def test_enrichment_fills_missing_inputs_from_the_online_row(stream, scorers):
    """With enrichment, complete records score as offline; a record with a
    missing input takes the value of the entity's online row (written by
    mlops-ingest into Redis) and is degraded only if the row lacks it too."""
    out = stream.new_topic()
    sc = scorers(["--model", stream.models["lr"], "--cache-ttl-ms", 0,
                  *base_args(stream, stream.features, out)])
    preds = predictions(out, expect=stream.rows)
    assert (sc.metric("mlops_scorer_cache_misses_total") or 0) > 0
    sc.stop()
    want = dict(zip(stream.event_ids(), predict_csv(stream.models["lr"], stream.csv)))
    model = json.loads(stream.models["lr"].read_text())
    inputs = [i["column"] for i in model["inputs"]]
    rows = {}
    n_filled = 0
    for p in preds:
        rec = json.loads(stream.by_id[p["event_id"]].value())
        missing = [c for c in inputs if rec["values"].get(c) is None]
        if not missing:
            assert p["freshness"]["online"] == "not_needed"
            assert p["score"] == want[p["event_id"]], p["event_id"]
            assert not p["degraded"]
            continue
        key = f"mlops:online:{stream.spec_name}:{p['entity']}"
        if key not in rows:
            flat = stream.redis.cli("HGETALL", key).splitlines()
            rows[key] = dict(zip(flat[0::2], flat[1::2]))
        row = rows[key]
        assert p["freshness"]["online"] == "redis"
        for c in missing:
            if c in row:
                n_filled += 1
                assert p["features"][c] is not None, (p["event_id"], c)
                assert c not in p["imputed"]
            else:
                assert c in p["imputed"] and p["features"][c] is None
        assert p["degraded"] == any(c not in row for c in missing)
    assert n_filled > 0, "no record exercised the online row"


# ---- rollout ---------------------------------------------------------------------------------

def test_canary_split_sticky_and_shadow_never_the_decision(stream, scorers):
    share = 0.3
    out = stream.new_topic()
    sc = scorers(["--model", stream.models["lr"], "--challenger-model", stream.models["gbdt"],
                  "--shadow-model", stream.models["lr2"], "--canary-share", share,
                  "--no-enrich", *base_args(stream, stream.features, out)])
    preds = predictions(out, expect=2 * stream.rows)
    sc.stop()
    assert len(preds) == 2 * stream.rows
    by_event = defaultdict(list)
    for p in preds:
        by_event[p["event_id"]].append(p)
    assert len(by_event) == stream.rows
    role_of_entity = {}
    for eid, ps in by_event.items():
        roles = sorted(p["role"] for p in ps)
        assert len(ps) == 2 and "shadow" in roles, (eid, roles)
        for p in ps:
            assert p["served"] == (p["role"] != "shadow"), p
        s = next(p for p in ps if p["served"])
        assert role_of_entity.setdefault(s["entity"], s["role"]) == s["role"], \
            f"entity {s['entity']} moved between champion and challenger"
    salt = json.loads(stream.models["lr"].read_text())["name"]
    for ent, role in role_of_entity.items():
        assert (role == "challenger") == (bucket(salt, ent) < share), ent
    n = len(role_of_entity)
    got = sum(r == "challenger" for r in role_of_entity.values()) / n
    sd = (share * (1 - share) / n) ** 0.5
    assert abs(got - share) <= max(0.02 * share, 4 * sd), (got, n)
    # every score equals the offline path of the model that made it
    ids = stream.event_ids()
    offline = {k: dict(zip(ids, predict_csv(stream.models[k], stream.csv)))
               for k in ("lr", "gbdt", "lr2")}
    which = {"champion": "lr", "challenger": "gbdt", "shadow": "lr2"}
    v = validator()
    for p in preds:
        assert p["score"] == offline[which[p["role"]]][p["event_id"]]
        v.validate(p)


# ---- exactly once ------------------------------------------------------------------------------

def test_exactly_once_survives_two_kill9(stream, scorers):
    """10,000 events (100,000 and 5 kills under soak) fed while the scorer is
    killed with SIGKILL twice and restarted with the same transactional id: a
    read_committed reader finds every event scored exactly once."""
    inp, out = stream.copy_topic(), stream.new_topic()
    records = stream.records
    kills = 5 if SOAK else 2
    # a long commit interval: each kill lands inside an open transaction
    args = ["--model", stream.models["lr"], *base_args(stream, inp, out),
            "--commit-interval-ms", 3000, "-X", "group.instance.id=slot-0"]
    sc = scorers(args)
    chunks = [records[i::kills + 1] for i in range(kills + 1)]
    rnd = random.Random(42)
    for k in range(kills):
        feed(stream, inp, chunks[k])
        time.sleep(rnd.uniform(0.2, 1.5))
        sc.kill9()
        sc.start()
    feed(stream, inp, chunks[kills])
    preds = predictions(out, expect=len(records), timeout=120, quiet=10)
    time.sleep(3)
    preds = predictions(out, timeout=60, quiet=5)
    sc.stop()
    ids = Counter(p["event_id"] for p in preds)
    lost = set(stream.by_id) - set(ids)
    dup = {e: c for e, c in ids.items() if c > 1}
    assert not lost and not dup, f"lost {len(lost)}, duplicated {len(dup)}"
    # the kills did interrupt work: aborted outputs are visible to read_uncommitted
    raw = consume_all(out, isolation="read_uncommitted", timeout=60, quiet=5)
    assert len(raw) > len(preds), (len(raw), len(preds))


def test_at_least_once_loses_nothing(stream, scorers):
    inp, out = stream.copy_topic(), stream.new_topic()
    records = stream.records[:3000]
    sc = scorers(["--model", stream.models["lr"], *base_args(stream, inp, out, eos=False)])
    feed(stream, inp, records[:1500])
    time.sleep(0.5)
    sc.kill9()
    sc.start()
    feed(stream, inp, records[1500:])
    preds = predictions(out, timeout=90, quiet=8)
    sc.stop()
    ids = Counter(p["event_id"] for p in preds)
    want = {json.loads(m.value())["event_id"] for m in records}
    assert want <= set(ids), f"lost {len(want - set(ids))}"


# ---- Redis outages ------------------------------------------------------------------------------

def reference(stream, scorers, inp_records):
    out = stream.new_topic()
    inp = stream.copy_topic()
    feed(stream, inp, inp_records)
    sc = scorers(["--model", stream.models["lr"], "--cache-ttl-ms", 0,
                  *base_args(stream, inp, out)])
    preds = predictions(out, expect=len(inp_records))
    sc.stop()
    return {p["event_id"]: p for p in preds}


@pytest.mark.parametrize("fault", ["stop", "freeze"])
def test_redis_outage_keeps_scoring_degraded_then_recovers(stream, scorers, fault):
    """Redis stopped (then restarted from its AOF), or frozen with SIGSTOP,
    while the stream runs: every event is scored; those fed during the outage
    that needed the online row are degraded; after recovery (breaker closed)
    the predictions equal a run with a healthy Redis."""
    outage_s = 30 if SOAK else 4
    records = stream.records[:3000]
    a, b, c = records[:1000], records[1000:2000], records[2000:]
    ref = reference(stream, scorers, records)
    inp, out = stream.copy_topic(), stream.new_topic()
    sc = scorers(["--model", stream.models["lr"], "--cache-ttl-ms", 0,
                  "--redis-breaker-cooldown-ms", 500, *base_args(stream, inp, out)])
    feed(stream, inp, a)
    sc.wait_events(len(a))
    (stream.redis.stop if fault == "stop" else stream.redis.freeze)()
    try:
        t0 = time.monotonic()
        feed(stream, inp, b)
        sc.wait_events(len(a) + len(b), timeout=60)
        time.sleep(max(0.0, outage_s - (time.monotonic() - t0)))
    finally:
        (stream.redis.start if fault == "stop" else stream.redis.thaw)()
    time.sleep(2)  # the breaker's cooldown and one trial call
    feed(stream, inp, c)
    sc.wait_events(len(records))
    assert (sc.metric("mlops_scorer_redis_errors_total") or 0) > 0
    preds = {p["event_id"]: p for p in predictions(out, expect=len(records))}
    assert sc.stop() == 0
    assert set(preds) == set(ref), "every event is scored"
    ids = lambda chunk: [json.loads(m.value())["event_id"] for m in chunk]
    for e in ids(a) + ids(c):
        p, r = preds[e], ref[e]
        assert (p["score"], p["degraded"], p["imputed"]) == (r["score"], r["degraded"], r["imputed"]), e
    needed = 0
    for e in ids(b):
        p, r = preds[e], ref[e]
        if r["freshness"]["online"] == "not_needed":
            assert p["score"] == r["score"] and not p["degraded"]
            continue
        needed += 1
        assert p["degraded"] and p["freshness"]["online"] == "unavailable", e
    assert needed > 0


def test_fast_decode_and_jansson_fallback_score_the_same(stream, scorers):
    """Records as ingest writes them take the tree-free decode; the same
    records with an array member (which the fast path refuses) go through
    jansson: both give the offline scores of `mlopsctl predict`."""
    records = stream.records[:2000]
    inp, out = stream.copy_topic(), stream.new_topic()
    half = len(records) // 2
    items = []
    for k, m in enumerate(records):
        if k < half:
            items.append((m.key(), m.value()))
        else:
            rec = json.loads(m.value())
            rec["extra"] = [1, {"a": "\u00e9\\"}]
            items.append((m.key(), json.dumps(rec, indent=1).encode()))
    produce(inp, items)
    sc = scorers(["--model", stream.models["gbdt"], "--no-enrich",
                  *base_args(stream, inp, out)])
    preds = predictions(out, expect=len(records))
    assert sc.metric("mlops_scorer_decoded_total", 'path="fast"') == half
    assert sc.metric("mlops_scorer_decoded_total", 'path="jansson"') == len(records) - half
    sc.stop()
    want = dict(zip(stream.event_ids(), predict_csv(stream.models["gbdt"], stream.csv)))
    assert len(preds) == len(records)
    assert all(p["score"] == want[p["event_id"]] for p in preds)


def test_duplicate_keys_are_refused_not_scored(stream, scorers):
    """A record with a duplicate member (known or not) is refused by jansson's
    rule on both decode paths; the valid records around it are scored."""
    good = stream.records[:3]
    rec = json.loads(good[0].value())
    body = json.dumps(rec)[:-1]
    dup_unknown = (body + ',"source":{},"source":{}}').encode()
    dup_known = (body + ',"entity":"x"}').encode()
    inp, out = stream.copy_topic(1), stream.new_topic(1)
    produce(inp, [(good[1].key(), good[1].value()), (b"k", dup_unknown), (b"k", dup_known),
                  (b"k", b"not json"), (good[2].key(), good[2].value())])
    sc = scorers(["--model", stream.models["lr"], "--no-enrich", *base_args(stream, inp, out)])
    preds = predictions(out, expect=2, quiet=3)
    deadline = time.monotonic() + 10
    while (sc.metric("mlops_scorer_refused_total", 'reason="decode"') or 0) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sc.stop()
    ids = [json.loads(m.value())["event_id"] for m in good[1:]]
    assert sorted(p["event_id"] for p in preds) == sorted(ids)


def test_two_instances_share_the_partitions_exactly_once(stream, scorers):
    """Two scorers in one consumer group (instance slots 0 and 1, their own
    transactional ids) split the partitions: every event scored exactly once,
    by one of them, both doing part of the work."""
    inp, out = stream.copy_topic(4), stream.new_topic()
    common = ["--model", stream.models["lr"], "--no-enrich", "--input-topic", inp,
              "--predictions-topic", out, "--group-id", f"g-{out}", "--redis-url",
              stream.redis.url, "--commit-interval-ms", 200, *KAFKA_TEST_PROPS]
    a = scorers([*common, "--instance", 0, "--transactional-id", f"tx-{out}-0"])
    b = scorers([*common, "--instance", 1, "--transactional-id", f"tx-{out}-1"])
    time.sleep(3)  # both joined: the group rebalanced over the two
    records = stream.records[:5000]
    produce(inp, [(m.key(), m.value()) for m in records])
    preds = predictions(out, expect=len(records))
    time.sleep(1)
    na, nb = (s.metric("mlops_scorer_events_total", 'transport="stream"') for s in (a, b))
    a.stop()
    b.stop()
    ids = Counter(p["event_id"] for p in preds)
    assert len(ids) == len(records) and max(ids.values()) == 1
    assert na > 0 and nb > 0 and na + nb == len(records), (na, nb)
