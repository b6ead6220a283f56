"""Operations on the real broker: `mlopsctl dlq list|show|redrive` after a
spec fix, and `mlopsctl replay` of an offset or time range into another
topic. The expected results come from what the test itself produced and
read back with confluent-kafka, not from the code under test."""
import json
import re
import subprocess
import time
import uuid

from conftest import (BROKERS, BUILD, consume_all, create_topics, delete_topics, produce,
                      valid_event)

MLOPSCTL = BUILD / "cli" / "mlopsctl"


def ctl(*args, timeout=120):
    return subprocess.run([str(MLOPSCTL), *args, "--brokers", BROKERS], capture_output=True,
                          text=True, timeout=timeout)


def test_dlq_list_show_and_redrive_after_a_spec_fix(ingest_factory):
    # ingest refuses ages over 60; 40 events are too old, 10 have text for a number
    ig = ingest_factory(spec_patch=lambda s: s["fields"][0].update(max=60))
    old = [valid_event(i, age=61 + i % 10) for i in range(40)]
    badtype = [valid_event(100 + i, monthly_income="lots") for i in range(10)]
    good = [valid_event(200 + i, age=30) for i in range(20)]
    items = [(e["employee_id"].encode(), json.dumps(e).encode()) for e in old + badtype + good]
    produce(ig.input, items)
    dlq = consume_all(ig.dlq, expect=50, timeout=90)
    assert len(dlq) == 50
    assert len(consume_all(ig.features, expect=20, timeout=60)) == 20

    # list: the table and the per-reason count cover all 50, the filter works
    r = ctl("dlq", "list", "--topic", ig.dlq)
    assert r.returncode == 0, r.stderr
    assert "50 records: wrong_type 10, out_of_range 40" in r.stdout, r.stdout
    rows = [ln for ln in r.stdout.splitlines() if re.match(r"\d+:\d+ ", ln)]
    assert len(rows) == 50
    r = ctl("dlq", "list", "--topic", ig.dlq, "--reason", "out_of_range", "--json")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(recs) == 40 and {x["reason"] for x in recs} == {"out_of_range"}
    assert {x["field"] for x in recs} == {"age"}
    want = {(m.partition(), m.offset()) for m in dlq
            if json.loads(m.value())["reason"] == "out_of_range"}
    assert {(x["kafka"]["partition"], x["kafka"]["offset"]) for x in recs} == want
    assert ctl("dlq", "list", "--topic", ig.dlq, "--reason", "nope").returncode == 2

    # --limit cuts the table, not the count
    r = ctl("dlq", "list", "--topic", ig.dlq, "--limit", "5")
    assert "... 45 more" in r.stdout and "50 records" in r.stdout

    # --since in the future selects nothing
    r = ctl("dlq", "list", "--topic", ig.dlq, "--since", "2999-01-01T00:00:00Z")
    assert r.returncode == 0 and "0 records" in r.stdout, r.stdout + r.stderr

    # show: one record in full, with the original event decoded
    p, o = recs[0]["kafka"]["partition"], recs[0]["kafka"]["offset"]
    r = ctl("dlq", "show", f"{p}:{o}", "--topic", ig.dlq)
    assert r.returncode == 0, r.stderr
    original = json.loads(r.stdout.split("):\n", 1)[1])
    assert original["age"] > 60
    by_id = {e["event_id"]: e for e in old}
    assert original == by_id[original["event_id"]]
    assert ctl("dlq", "show", f"{p}:999999", "--topic", ig.dlq).returncode == 1
    assert ctl("dlq", "show", "garbage", "--topic", ig.dlq).returncode == 2

    # the fix: a second ingest whose spec allows ages to 80 reads the redrive topic
    fixed = ingest_factory()
    r = ctl("dlq", "redrive", "--topic", ig.dlq, "--reason", "out_of_range", "--into",
            fixed.input, "--dry-run")
    assert r.returncode == 0 and "40 would be re-sent" in r.stderr, r.stderr
    r = ctl("dlq", "redrive", "--topic", ig.dlq, "--reason", "out_of_range", "--into",
            fixed.input)
    assert r.returncode == 0, r.stderr
    assert "40 re-sent" in r.stderr, r.stderr
    raw = consume_all(fixed.input, expect=40, timeout=60)
    assert sorted((m.key(), m.value()) for m in raw) == sorted(
        (e["employee_id"].encode(), json.dumps(e).encode()) for e in old), \
        "redrive must re-send the original bytes with the original keys"
    feats = consume_all(fixed.features, expect=40, timeout=90)
    assert sorted(json.loads(m.value())["event_id"] for m in feats) == \
        sorted(e["event_id"] for e in old)
    assert consume_all(fixed.dlq, timeout=3, quiet=2) == []


def test_replay_copies_an_offset_range_and_a_time_range():
    t_in, t_out, t_out2 = (f"it-replay-{uuid.uuid4().hex[:10]}" for _ in range(3))
    create_topics([t_in, t_out, t_out2], partitions=2)
    try:
        first = [(f"k{i}".encode(), f'{{"n":{i}}}'.encode()) for i in range(100)]
        produce(t_in, first)
        time.sleep(1.5)
        cut = int(time.time() * 1000)
        time.sleep(0.5)
        second = [(f"k{i}".encode(), f'{{"n":{i}}}'.encode()) for i in range(100, 130)]
        produce(t_in, second)
        src = consume_all(t_in, expect=130, timeout=60)
        assert len(src) == 130

        # offsets 10..19 of every partition
        r = ctl("replay", "--topic", t_in, "--from", "10", "--to", "20", "--into", t_out)
        assert r.returncode == 0, r.stderr
        want = sorted((m.key(), m.value()) for m in src if 10 <= m.offset() < 20)
        got = consume_all(t_out, expect=len(want), timeout=60)
        assert sorted((m.key(), m.value()) for m in got) == want
        # keys keep their partition (same partitioner on the same key)
        assert {(m.key(), m.partition()) for m in got} <= {(m.key(), m.partition()) for m in src}

        # everything at or after a time
        r = ctl("replay", "--topic", t_in, "--from", f"@{cut}", "--into", t_out2)
        assert r.returncode == 0, r.stderr
        got = consume_all(t_out2, expect=30, timeout=60, quiet=3)
        assert sorted(m.value() for m in got) == sorted(v for _, v in second)

        # a dry run resolves and copies nothing; bad positions are usage errors
        r = ctl("replay", "--topic", t_in, "--dry-run", "--partition", "1")
        assert r.returncode == 0 and "[1]: offsets 0 to" in r.stderr, r.stderr
        assert ctl("replay", "--topic", t_in, "--from", "yesterday", "--into", t_out).returncode == 2
        r = ctl("replay", "--topic", f"no-such-{uuid.uuid4().hex}", "--into", t_out)
        assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
    finally:
        delete_topics([t_in, t_out, t_out2])


def test_rolling_state_of_one_topic_is_not_mistaken_for_replays_on_another(ingest_factory):
    """Rolling state remembers the (partition, offset) positions it applied.
    A second input topic (or a recreated one) starts at offset 0 again; its
    events are new, not replays of the first topic's, so they count."""
    shared = f"shared{uuid.uuid4().hex[:8]}"

    def same_spec(s):
        s["name"] = shared
        s["online"]["view"] = shared

    t0 = 1767225600000
    results = []
    for run in range(2):
        ig = ingest_factory(spec_patch=same_spec, partitions=1)
        evs = [valid_event(1000 * run + i, entity="emp-x", t0=t0 + run * 10_000_000)
               for i in range(3)]
        produce(ig.input, [(b"emp-x", json.dumps(e).encode()) for e in evs])
        feats = consume_all(ig.features, expect=3, timeout=60)
        assert len(feats) == 3
        results.append(sorted(json.loads(m.value())["values"]["events_30d"] for m in feats))
        assert ig.stop() == 0
    # the 30-day count goes on across both topics (one entity, one spec):
    # 1, 2, 3 on the first and 4, 5, 6 on the second, none skipped as a replay
    assert results == [[1, 2, 3], [4, 5, 6]], results
