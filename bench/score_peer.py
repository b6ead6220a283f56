"""The Python peer of the scorer benchmark (bench/score.sh --peer): what a user
would write instead of mlops-scorer, doing the same work. It consumes
features/1-shaped records, reads the two profile features of the entity from
the Redis online row (redis-py), scores with scikit-learn (one-hot + scaling +
LogisticRegression, fitted at start on bench/score_data.py's CSV; or XGBoost
with 200 trees of depth 6) and produces one JSON prediction per record
carrying its event_id (confluent-kafka), at least once.

  --mode message: one record at a time (poll, HGETALL, predict_proba, produce)
  --mode batch:   up to --batch records per poll, one pipelined Redis round
                  trip, one predict_proba for the batch

Usage: python bench/score_peer.py --brokers B --in T --out T --group G
           --train CSV [--algo logreg|gbdt] [--mode message|batch] [--redis-port P]
"""
import argparse
import json
import signal
import sys

import numpy as np
import pandas as pd
import redis
from confluent_kafka import Consumer, Producer
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CATS = ["currency", "merchant_category", "channel", "device", "country", "plan", "segment",
        "risk_tier"]
NUMS = ["amount", "latitude", "longitude", "distance_from_home_km", "ip_risk_score",
        "card_present", "is_international", "account_age_days", "age", "balance",
        "credit_limit", "txn_count_24h", "txn_count_7d", "amount_avg_30d", "amount_max_30d",
        "customer_tenure_days"]
PROFILE = ["customer_tenure_days", "risk_tier"]


def fit(train, algo):
    df = pd.read_csv(train)
    for b in ("card_present", "is_international"):
        df[b] = df[b].astype(str).str.lower().eq("true").astype(float)
    y = (df["fraud"] == "yes").astype(int)
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), CATS),
                             ("num", StandardScaler(), NUMS)])
    if algo == "gbdt":
        from xgboost import XGBClassifier
        clf = XGBClassifier(n_estimators=200, max_depth=6, learning_rate=0.1, n_jobs=1)
    else:
        clf = LogisticRegression(max_iter=1000)
    return make_pipeline(pre, clf).fit(df[CATS + NUMS], y)


def row_of(rec, prof):
    v = dict(rec["values"])
    v["customer_tenure_days"] = float(prof.get("customer_tenure_days", "nan"))
    v["risk_tier"] = prof.get("risk_tier")
    for b in ("card_present", "is_international"):
        v[b] = 1.0 if v.get(b) else 0.0
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--algo", default="logreg", choices=["logreg", "gbdt"])
    ap.add_argument("--mode", default="batch", choices=["message", "batch"])
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--redis-port", type=int, default=6380)
    a = ap.parse_args()
    model = fit(a.train, a.algo)
    r = redis.Redis(port=a.redis_port, decode_responses=True)
    c = Consumer({"bootstrap.servers": a.brokers, "group.id": a.group,
                  "auto.offset.reset": "earliest"})
    c.subscribe([a.inp])
    p = Producer({"bootstrap.servers": a.brokers, "enable.idempotence": True, "linger.ms": 5})
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    cols = CATS + NUMS

    def emit(rec, score):
        out = {"schema": "peer_prediction", "event_id": rec["event_id"],
               "entity": rec["entity"], "score": float(score)}
        while True:
            try:
                p.produce(a.out, key=rec["entity"], value=json.dumps(out))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)

    while not stop:
        if a.mode == "message":
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            rec = json.loads(m.value())
            prof = r.hgetall(f"mlops:online:bench_score:{rec['entity']}")
            X = pd.DataFrame([row_of(rec, prof)], columns=cols)
            emit(rec, model.predict_proba(X)[0, 1])
        else:
            ms = [m for m in c.consume(a.batch, 0.2) if not m.error()]
            if not ms:
                continue
            recs = [json.loads(m.value()) for m in ms]
            pipe = r.pipeline(transaction=False)
            for rec in recs:
                pipe.hgetall(f"mlops:online:bench_score:{rec['entity']}")
            profs = pipe.execute()
            X = pd.DataFrame([row_of(rec, pr) for rec, pr in zip(recs, profs)], columns=cols)
            for rec, s in zip(recs, model.predict_proba(X)[:, 1]):
                emit(rec, s)
    p.flush(30)
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
