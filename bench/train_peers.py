"""bench/train.sh's Python side: the peers on the same encoded rows.

Reads the design matrices mlops-trainer wrote (--dump-matrix: our encoding,
our split) and our artifacts, fits scikit-learn's LogisticRegression (lbfgs,
the same C) and XGBoost `hist` (the same depth, trees, rate, lambda, min
child weight, bins, base score, 2 threads, no early stopping) on the training
rows, and prints one JSON line per model: fit seconds and held-out AUC for
ours and the peer, and single-row predict latency of the peer
(predict_proba / inplace_predict on one row, 2,000 rows timed one by one).
"""
import json
import sys
import time

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def load(dump):
    d = pd.read_csv(dump)
    cols = list(d.columns[3:])
    tr, va = d[d.split == "train"], d[d.split == "valid"]
    return (tr[cols].to_numpy(float), tr.label.to_numpy(int), va[cols].to_numpy(float),
            va.label.to_numpy(int))


def latency(fn, rows):
    for r in rows[:200]:
        fn(r)
    lat = []
    for r in rows:
        t = time.perf_counter()
        fn(r)
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    n = len(lat)
    return {"p50_us": lat[n // 2], "p90_us": lat[n * 9 // 10], "p99_us": lat[n * 99 // 100]}


def main(lr_dump, lr_model, gb_dump, gb_model):
    out = []
    m = json.load(open(lr_model))
    X, y, Xv, yv = load(lr_dump)
    # scikit-learn as users run it (lbfgs, default tol 1e-4), and to a tight
    # tolerance as the oracle tests do
    t = time.perf_counter()
    tight = LogisticRegression(C=m["logreg"]["C"], solver="lbfgs", tol=1e-10,
                               max_iter=100000).fit(X, y)
    dt_tight = time.perf_counter() - t
    t = time.perf_counter()
    lr = LogisticRegression(C=m["logreg"]["C"], solver="lbfgs", max_iter=100000).fit(X, y)
    dt = time.perf_counter() - t
    rows = [Xv[i:i + 1] for i in range(min(2000, len(Xv)))]
    out.append({"model": "logreg", "peer": "scikit-learn LogisticRegression(lbfgs, tol 1e-4)",
                "peer_tight_fit_s": dt_tight,
                "peer_tight_auc": roc_auc_score(yv, tight.predict_proba(Xv)[:, 1]),
                "ours_fit_s": m["lineage"]["timings_ms"]["fit"] / 1e3,
                "peer_fit_s": dt, "ours_auc": m["metrics"]["auc"],
                "peer_auc": roc_auc_score(yv, lr.predict_proba(Xv)[:, 1]),
                "peer_latency": latency(lambda r: lr.predict_proba(r), rows),
                "rows_train": len(y), "slots": X.shape[1]})
    m = json.load(open(gb_model))
    p = m["lineage"]["params"]
    X, y, Xv, yv = load(gb_dump)
    types = ["c" if i["kind"] == "categorical" else "q" for i in m["inputs"]]
    t = time.perf_counter()
    dtr = xgb.DMatrix(X, y, feature_types=types, enable_categorical=True, nthread=2)
    b = xgb.train(dict(objective="binary:logistic", tree_method="hist", max_depth=p["max_depth"],
                       eta=p["learning_rate"], reg_lambda=p["lambda"],
                       min_child_weight=p["min_child_weight"], max_bin=p["max_bins"], nthread=2,
                       base_score=float(y.mean())), dtr, p["n_trees"])
    dt = time.perf_counter() - t
    dva = xgb.DMatrix(Xv, feature_types=types, enable_categorical=True)
    b.set_param({"nthread": 1})
    rows = [Xv[i:i + 1] for i in range(min(2000, len(Xv)))]
    out.append({"model": "gbdt", "peer": "XGBoost hist",
                "ours_fit_s": m["lineage"]["timings_ms"]["fit"] / 1e3, "peer_fit_s": dt,
                "ours_auc": m["metrics"]["auc"], "peer_auc": roc_auc_score(yv, b.predict(dva)),
                "peer_latency": latency(lambda r: b.inplace_predict(r), rows),
                "trees": p["n_trees"], "depth": p["max_depth"], "bins": p["max_bins"],
                "rows_train": len(y), "slots": X.shape[1]})
    for o in out:
        print(json.dumps(o))


if __name__ == "__main__":
    main(*sys.argv[1:5])
