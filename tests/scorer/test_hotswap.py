"""Model lifecycle with the real mlops-registry (its own database and models
topic): the scorer starts on the version behind `champion`, follows `models`,
swaps a promoted version in between two messages (every prediction of a
partition before the logged switch offset from the old version, after it from
the new one, every event scored exactly once), never serves a bad artifact (the
registry refuses it at upload, and the old model keeps serving), and keeps
serving when the registry is down."""
import importlib.util
import json
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from conftest import (KAFKA_TEST_PROPS, create_topics, delete_topics, predict_csv,
                      predictions, produce, validator)

_spec = importlib.util.spec_from_file_location(
    "registry_conftest", Path(__file__).resolve().parents[1] / "registry" / "conftest.py")
reg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reg)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, stream):
    db = reg.Database()
    topic = f"sc-models-{stream.id}"
    create_topics([topic], 1)
    r = reg.Registry(tmp_path_factory.mktemp("registry"), db, topic=topic)
    r.models_topic = topic
    yield r
    r.stop()
    db.drop()
    delete_topics([topic])


def register(registry, name, path, gates=True):
    doc = json.loads(Path(path).read_text())
    if gates is not None:
        doc["gates"] = {"passed": gates}
    body = json.dumps(doc).encode()
    r = registry.request("POST", f"/api/v1/models/{name}/versions", raw=body,
                         token=registry.admin_trainer,
                         headers={"Content-Type": "application/json"})
    assert r.status == 201, r
    return int(r.json()["model_version"]["version"])


def promote(registry, name, version, alias="champion", force=False):
    body = {"version": version}
    if force:
        body.update(force=True, reason="scorer test")
    r = registry.post(f"/api/v1/models/{name}/aliases/{alias}/promote", body)
    assert r.status == 200, r


def test_hot_swap_under_load_bad_artifact_and_registry_down(stream, registry, scorers):
    registry.admin_trainer = registry.token("trainer")
    reader = registry.token("reader")
    name = f"m{stream.id}"
    v1 = register(registry, name, stream.models["lr"])
    v2 = register(registry, name, stream.models["gbdt"])
    promote(registry, name, v1)
    inp, out = stream.copy_topic(), stream.new_topic()
    sc = scorers(["--registry-url", registry.base, "--registry-token", reader, "--model-name",
                  name, "--models-topic", registry.models_topic, "--registry-poll-s", 1,
                  "--input-topic", inp, "--predictions-topic", out, "--group-id", f"g-{out}",
                  "--transactional-id", f"tx-{out}", "--redis-url", stream.redis.url,
                  "--no-enrich", "--commit-interval-ms", 200, *KAFKA_TEST_PROPS])
    assert sc.metric("mlops_scorer_model_info",
                     f'role="champion",model="{name}",version="{v1}",sha256="'
                     + __import__("hashlib").sha256(
                         json.dumps({**json.loads(stream.models["lr"].read_text()),
                                     "gates": {"passed": True}}).encode()).hexdigest()
                     + '"') == 1
    # stream the records in slices while v2 is promoted half-way
    records = stream.records  # 10,000; 100,000 under MLOPS_TEST_SCALE=soak
    n = len(records)
    slices = 40

    def feeder():
        for k in range(slices):
            produce(inp, [(m.key(), m.value()) for m in records[k::slices]])
            time.sleep(0.1)

    t = threading.Thread(target=feeder)
    t.start()
    time.sleep(1.5)
    promote(registry, name, v2)
    t.join()
    preds = predictions(out, expect=n, timeout=120, quiet=10)
    assert len(preds) == n
    swaps = [x for x in sc.logs if x.get("msg", "").startswith("model set swapped in")]
    assert len(swaps) == 1, swaps
    switch = dict(tuple(map(int, po.split(":"))) for po in swaps[0]["switch_offsets"].split(","))
    by_part = defaultdict(list)
    for p in preds:
        by_part[p["source"]["partition"]].append(p)
    seen = set()
    for part, ps in by_part.items():
        ps.sort(key=lambda p: p["source"]["offset"])
        versions = [p["model"]["version"] for p in ps]
        k = versions.index(v2) if v2 in versions else len(versions)
        assert set(versions[:k]) <= {v1} and set(versions[k:]) <= {v2}, \
            f"partition {part}: versions are not old-then-new"
        first_new = ps[k]["source"]["offset"] if k < len(ps) else None
        if part in switch and first_new is not None:
            assert first_new == switch[part], (part, first_new, switch[part])
        seen.update((part, p["source"]["offset"]) for p in ps)
    assert len(seen) == n, "every input scored exactly once"
    versions = Counter(p["model"]["version"] for p in preds)
    assert versions[v1] > 0 and versions[v2] > 0, versions
    # scores: each from the offline path of the version that made it
    ids = stream.event_ids()
    offline = {v1: dict(zip(ids, predict_csv(stream.models["lr"], stream.csv))),
               v2: dict(zip(ids, predict_csv(stream.models["gbdt"], stream.csv)))}
    v = validator()
    for p in preds[:: max(1, n // 2000)]:
        assert p["score"] == offline[p["model"]["version"]][p["event_id"]]
        v.validate(p)

    # a bad artifact (valid JSON, not a valid model/1) never reaches the scorer: the
    # registry refuses it with the loader the scorer uses; v2 keeps serving
    bad = {"schema": "model/1", "name": name, "algo": "logreg", "gates": {"passed": True}}
    r = registry.request("POST", f"/api/v1/models/{name}/versions",
                         raw=json.dumps(bad).encode(), token=registry.admin_trainer,
                         headers={"Content-Type": "application/json"})
    assert r.status == 400 and "not a valid model/1" in r.json()["message"], r
    more = stream.records[:500]
    produce(inp, [(m.key(), m.value()) for m in more])
    preds = predictions(out, expect=n + len(more), timeout=60)
    assert {p["model"]["version"] for p in preds[n:]} <= {v2}
    assert Counter(p["model"]["version"] for p in preds)[v2] >= len(more)

    # registry down: the scorer keeps serving v2 and model_stale_seconds grows
    registry.stop()
    try:
        time.sleep(3.5)
        assert sc.metric("mlops_scorer_model_stale_seconds") >= 2
        produce(inp, [(m.key(), m.value()) for m in more])
        preds = predictions(out, expect=n + 2 * len(more), timeout=60)
        assert len(preds) == n + 2 * len(more)
        assert {p["model"]["version"] for p in preds[n + len(more):]} == {v2}
    finally:
        registry.start()
    assert sc.stop() == 0
