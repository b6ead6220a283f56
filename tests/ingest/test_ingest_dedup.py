"""Dedup through the real mlops-ingest and Redis: an event id sent again at
another position is `duplicate_event`; a second process that re-reads the same
positions (a new consumer group: a restart that lost its offsets) takes them as
replays, not duplicates, and computes the same rolling features from the
state it finds in Redis."""
import json

from conftest import consume_all, produce, valid_event


def by_event(records):
    return {json.loads(m.value())["event_id"]: json.loads(m.value()) for m in records}


def test_resent_ids_are_duplicates_and_reread_positions_are_replays(ingest_factory):
    n, resent = 40, [0, 7, 13, 21, 39]
    events = [valid_event(i, entity=f"emp-{i % 6}") for i in range(n)]
    items = [(e["employee_id"].encode(), json.dumps(e).encode()) for e in events]
    ig = ingest_factory(exactly_once=False)
    produce(ig.input, items)
    produce(ig.input, [items[i] for i in resent])  # the same ids at later offsets
    feats = consume_all(ig.features, expect=n, timeout=60)
    dlq = consume_all(ig.dlq, expect=len(resent), timeout=60)
    assert len(feats) == n and len(dlq) == len(resent)
    first = by_event(feats)
    assert set(first) == {e["event_id"] for e in events}
    dups = [json.loads(m.value()) for m in dlq]
    assert sorted(d["reason"] for d in dups) == ["duplicate_event"] * len(resent)
    assert ig.metric("mlops_ingest_dedup_replays_total") == 0
    assert ig.stop() == 0

    # a new group re-reads every position: the originals are replays (their
    # own positions are in Redis), the resent copies duplicates again
    i = ig.args.index("--group-id")
    ig.args[i + 1] = ig.group + "-again"
    ig.start()
    feats = consume_all(ig.features, expect=2 * n, timeout=60)
    dlq = consume_all(ig.dlq, expect=2 * len(resent), timeout=60)
    assert len(feats) == 2 * n and len(dlq) == 2 * len(resent)
    assert all(json.loads(m.value())["reason"] == "duplicate_event" for m in dlq)
    assert ig.metric("mlops_ingest_dedup_replays_total") == n
    # the replayed features carry the same values (rolling state replay-safe)
    again = {}
    for m in feats:
        rec = json.loads(m.value())
        again.setdefault(rec["event_id"], []).append(rec["values"])
    changed = [e for e, vs in again.items() if len(vs) != 2 or vs[0] != vs[1]]
    assert not changed, f"{len(changed)} events with other features on replay, e.g. {changed[:3]}"
    assert ig.stop() == 0
