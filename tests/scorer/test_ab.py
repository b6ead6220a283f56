"""A/B by Thompson sampling: routes drawn from Beta posteriors kept in Redis,
rewards (served decision == realized label) applied from `labels`,
replay-safe (a second label reader over the same offsets changes nothing),
and the sampler moving traffic to the better arm. Oracle: the rewards
recomputed in Python from the predictions and the labels."""
import json
import time
from collections import Counter

from conftest import (KAFKA_TEST_PROPS, consume_all, predictions, produce)


def always_positive(stream):
    """The lr model with its threshold at 0: it decides every event positive, so its
    decisions are right for the positive rate only (about 0.15 of the events) and the
    champion's (F1-chosen threshold) are right far more often: a clearly worse arm."""
    path = stream.tmp / "always-positive.json"
    if not path.exists():
        doc = json.loads(stream.models["lr"].read_text())
        doc["threshold"] = 0.0
        path.write_text(json.dumps(doc))
    return path


def ab_args(stream, inp, out, lab, group):
    return ["--model", stream.models["lr"], "--challenger-model", always_positive(stream),
            "--rollout", "ab", "--ab-seed", 7, "--labels-topic", lab, "--ab-group-id", group,
            "--no-enrich", "--input-topic", inp, "--predictions-topic", out, "--group-id",
            f"g-{out}", "--transactional-id", f"tx-{out}", "--redis-url", stream.redis.url,
            "--commit-interval-ms", 200, *KAFKA_TEST_PROPS]


def posterior(stream, key):
    flat = stream.redis.cli("HGETALL", key).splitlines()
    h = dict(zip(flat[0::2], flat[1::2]))
    return [int(h.get(f, 0)) for f in ("s0", "f0", "s1", "f1")]


def test_ab_thompson_rewards_from_labels_replay_safe(stream, scorers):
    labels = {json.loads(m.value())["event_id"]: m for m in
              consume_all(stream.labels, expect=stream.rows)}
    positive = json.loads(stream.models["lr"].read_text())["label"]["positive"]
    inp, out, lab = stream.copy_topic(), stream.new_topic(), stream.copy_topic()
    sc = scorers(ab_args(stream, inp, out, lab, f"ab1-{out}"))
    first = stream.records[:3000]
    produce(inp, [(m.key(), m.value()) for m in first])
    preds = predictions(out, expect=len(first))
    assert len(preds) == len(first)
    roles = Counter(p["role"] for p in preds)
    assert roles["champion"] > 900 and roles["challenger"] > 900, roles  # flat priors
    produce(lab, [(labels[p["event_id"]].key(), labels[p["event_id"]].value()) for p in preds])
    # the oracle: rewards from the predictions and the labels
    want = [0, 0, 0, 0]
    for p in preds:
        y = json.loads(labels[p["event_id"]].value())["label"]
        success = p["decision"] == (str(y).lower() == str(positive).lower())
        want[(0 if p["role"] == "champion" else 2) + (0 if success else 1)] += 1
    keys = [k for k in stream.redis.cli("KEYS", "mlops:scorer:*:ab:*").split()
            if ":ab:ev:" not in k]
    assert len(keys) == 1, keys
    deadline = time.monotonic() + 30
    while sum(posterior(stream, keys[0])) < len(first) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert posterior(stream, keys[0]) == want
    sc.stop()
    # a second reader over the same label offsets: every one is a replay
    sc = scorers(ab_args(stream, inp, out, lab, f"ab2-{out}"))
    deadline = time.monotonic() + 30
    while (sc.metric("mlops_scorer_ab_label_replays_total") or 0) < len(first):
        assert time.monotonic() < deadline, sc.metric("mlops_scorer_ab_label_replays_total")
        time.sleep(0.2)
    assert posterior(stream, keys[0]) == want
    # the sampler now sends (nearly) everything to the arm with the better posterior
    mean = [(1 + want[0]) / (2 + want[0] + want[1]), (1 + want[2]) / (2 + want[2] + want[3])]
    better = "champion" if mean[0] > mean[1] else "challenger"
    assert abs(mean[0] - mean[1]) > 0.1, mean  # the always-positive arm is clearly worse
    second = stream.records[3000:6000]
    produce(inp, [(m.key(), m.value()) for m in second])
    preds = predictions(out, expect=len(first) + len(second))
    later = Counter(p["role"] for p in preds[len(first):])
    assert later[better] >= 0.95 * len(second), (later, mean)
    sc.stop()
