"""The trainer against oracles (services/trainer, common/model.c, logreg.c, gbdt.c).

Data: the synthetic attrition set (`mlopsctl datagen attrition`, with the
committed examples/attrition/spec.json: categoricals, missing values, derived
and rolling features), two real public data sets bundled with scikit-learn
(breast_cancer; diabetes with the target split at its median), written to CSV
with an entity, an event id and an event time column, their spec inferred by
the trainer itself (no --spec), and the two real example sets with
categoricals and missing values (examples/titanic, examples/creditcard: R's
carData and AER, exported by their make_data.sh, with their committed specs).

Checks, per data set:
- the encoded design (`--dump-matrix`) of a numeric-only set equals pandas'
  standardisation of the raw CSV rows of the training split;
- logistic regression: scikit-learn's LogisticRegression (lbfgs, same C,
  tol 1e-12) fitted on the same training rows gives a held-out AUC within
  0.001 of ours and close coefficients;
- GBDT: XGBoost `hist` with the same depth, rate, lambda, min child weight,
  bins, base score and early stopping on the same held-out rows gives a
  held-out AUC within 0.005 of ours;
- `mlopsctl predict` equals a Python re-implementation of scoring from the
  artifact JSON, applied to the values `mlopsctl features` (the ingest code,
  itself checked against pandas elsewhere) writes for the same rows;
- metrics in the artifact equal scikit-learn's on the held-out scores;
- every artifact validates against schemas/model.schema.json.
Then determinism, the bad-input cases and the model card.
"""
import json
import math
import os
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from referencing import Registry, Resource
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (accuracy_score, brier_score_loss, f1_score, log_loss,
                             precision_score, recall_score, roc_auc_score)

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
TRAINER = BUILD / "services" / "trainer" / "mlops-trainer"
MLOPSCTL = BUILD / "cli" / "mlopsctl"
SCHEMAS = ROOT / "schemas"

GBDT_PARAMS = dict(n_trees=150, max_depth=4, learning_rate=0.1, lam=1.0, min_child_weight=1.0,
                   max_bins=256, early_stopping=20)


def schema_validator():
    model = json.loads((SCHEMAS / "model.schema.json").read_text())
    spec = json.loads((SCHEMAS / "feature_spec.schema.json").read_text())
    reg = Registry().with_resources([(s["$id"], Resource.from_contents(s)) for s in (model, spec)])
    return jsonschema.Draft202012Validator(model, registry=reg)


VALIDATOR = schema_validator()


def run(cmd, *args, timeout=120):
    return subprocess.run([str(cmd), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def fit(tmp, csv, algo, *flags, name="m"):
    out, dump = tmp / f"{name}.{algo}.json", tmp / f"{name}.{algo}.matrix.csv"
    r = run(TRAINER, "fit", "--data", csv, "--algo", algo, "--out", out, "--dump-matrix", dump,
            *flags)
    assert r.returncode == 0, r.stderr
    model = json.loads(out.read_text())
    VALIDATOR.validate(model)
    return model, pd.read_csv(dump), out


def gbdt_flags():
    p = GBDT_PARAMS
    return ["--n-trees", p["n_trees"], "--max-depth", p["max_depth"], "--learning-rate",
            p["learning_rate"], "--lambda", p["lam"], "--min-child-weight", p["min_child_weight"],
            "--max-bins", p["max_bins"], "--early-stopping", p["early_stopping"]]


def split(dump):
    """The fitting rows, the held-out rows (and their frames) of a dump."""
    tr, va = dump[dump.split == "train"], dump[dump.split == "valid"]
    cols = list(dump.columns[3:])
    return (tr[cols].to_numpy(float), tr.label.to_numpy(int), va[cols].to_numpy(float),
            va.label.to_numpy(int), tr, va)


def stop_rows(dump):
    """The rows GBDT early stopping watches (carved out of the training split)."""
    st = dump[dump.split == "stop"]
    return st[list(dump.columns[3:])].to_numpy(float), st.label.to_numpy(int)


# ---- data sets --------------------------------------------------------------------------

def sk_csv(path, data, target, positive, negative):
    df = pd.DataFrame(data.data, columns=[c.replace(" ", "_") for c in data.feature_names])
    n = len(df)
    df.insert(0, "event_time", [f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z" for i in range(n)])
    df.insert(0, "entity_id", [f"e{i}" for i in range(n)])
    df.insert(0, "event_id", [f"ev{i}" for i in range(n)])
    df["label"] = np.where(target, positive, negative)
    df.to_csv(path, index=False, float_format="%.17g")
    return df


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer")
    sets = {}
    bc = load_breast_cancer()
    sets["breast_cancer"] = (tmp / "bc.csv", ["--label", "label", "--positive", "malignant"])
    sk_csv(sets["breast_cancer"][0], bc, bc.target == 0, "malignant", "benign")
    db = load_diabetes()
    sets["diabetes"] = (tmp / "diabetes.csv", ["--label", "label", "--positive", "high"])
    sk_csv(sets["diabetes"][0], db, db.target > np.median(db.target), "high", "low")
    att = tmp / "attrition.csv"
    r = run(MLOPSCTL, "datagen", "attrition", "--rows", 12000, "--seed", 11, "--out", att)
    assert r.returncode == 0, r.stderr
    sets["attrition"] = (att, ["--spec", ROOT / "examples" / "attrition" / "spec.json"])
    # the real example datasets with categoricals and missing values (R's carData and AER,
    # exported by their make_data.sh; deploy/setup.sh installs R with `all`)
    for name in ("titanic", "creditcard"):
        out = tmp / f"{name}.csv"
        r = run(ROOT / "examples" / name / "make_data.sh", out, timeout=300)
        assert r.returncode == 0, r.stderr
        sets[name] = (out, ["--spec", ROOT / "examples" / name / "spec.json"])
    return tmp, sets


DATASETS = ["breast_cancer", "diabetes", "attrition", "titanic", "creditcard"]
SKLEARN_SETS = ("breast_cancer", "diabetes")


# ---- logistic regression vs scikit-learn ------------------------------------------------------

@pytest.mark.parametrize("name", DATASETS)
def test_logreg_matches_sklearn(data, name):
    tmp, sets = data
    csv, flags = sets[name]
    model, dump, _ = fit(tmp, csv, "logreg", *flags, name=name)
    X, y, Xv, yv, tr, _ = split(dump)
    sk = LogisticRegression(C=1.0, solver="lbfgs", tol=1e-12, max_iter=100000).fit(X, y)
    # fitted on the training rows only: the validation rows are kept for the threshold
    assert model["metrics"]["rows_validation"] == (dump.split == "stop").sum() > 0
    ours_auc = model["metrics"]["auc"]
    sk_auc = roc_auc_score(yv, sk.predict_proba(Xv)[:, 1])
    print(f"{name}: logreg AUC ours {ours_auc:.6f} sklearn {sk_auc:.6f}")
    assert abs(ours_auc - sk_auc) <= 0.001
    coef = np.array(model["logreg"]["coef"])
    assert np.allclose(coef, sk.coef_[0], atol=2e-3, rtol=1e-3), np.abs(coef - sk.coef_[0]).max()
    assert model["logreg"]["intercept"] == pytest.approx(sk.intercept_[0], abs=2e-3)
    if name in SKLEARN_SETS:
        # the design itself: pandas' standardisation of the raw training rows
        raw = pd.read_csv(csv)
        feats = [c for c in raw.columns if c not in ("event_id", "entity_id", "event_time", "label")]
        assert list(dump.columns[3:]) == feats
        # the preprocessing is fitted on the whole training split (validation rows too)
        whole = dump[dump.split.isin(["train", "stop"])]
        rw = raw.iloc[whole.row.to_numpy()][feats].to_numpy(float)
        mu, sd = rw.mean(axis=0), rw.std(axis=0)
        rtr = raw.iloc[tr.row.to_numpy()][feats].to_numpy(float)
        np.testing.assert_allclose(X, (rtr - mu) / sd, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("algo", ["logreg", "gbdt"])
@pytest.mark.parametrize("name", ["breast_cancer", "titanic"])
def test_threshold_maximises_f1_on_the_validation_rows(data, name, algo):
    """The decision threshold is chosen on the validation rows (kept out of the fit), not
    on the held-out rows the metrics are computed on: our threshold's F1 on the validation
    rows is scikit-learn's best F1 over every cut there."""
    tmp, sets = data
    csv, flags = sets[name]
    model, dump, path = fit(tmp, csv, algo, *flags, *(gbdt_flags() if algo == "gbdt" else []),
                            name=f"thr-{name}")
    r = run(MLOPSCTL, "predict", "--model", path, "--data", csv)
    assert r.returncode == 0, r.stderr
    scores = np.array([float(x) for x in r.stdout.split()[1:]])
    val = dump[dump.split == "stop"]
    sv, yv = scores[val.row.to_numpy()], val.label.to_numpy(int)
    thr = model["threshold"]
    best = max(f1_score(yv, (sv >= t).astype(int)) for t in np.unique(sv))
    assert f1_score(yv, (sv >= thr).astype(int)) == pytest.approx(best, abs=1e-12)
    assert model["threshold_rule"] == "max F1 on the validation split"
    # the held-out metrics are at that threshold
    ho = dump[dump.split == "valid"]
    sh, yh = scores[ho.row.to_numpy()], ho.label.to_numpy(int)
    assert model["metrics"]["f1"] == pytest.approx(f1_score(yh, (sh >= thr).astype(int)),
                                                   abs=1e-12)


# ---- GBDT vs XGBoost hist ---------------------------------------------------------------------

@pytest.mark.parametrize("name", DATASETS)
def test_gbdt_matches_xgboost(data, name):
    tmp, sets = data
    csv, flags = sets[name]
    model, dump, _ = fit(tmp, csv, "gbdt", *flags, *gbdt_flags(), name=name)
    X, y, Xv, yv, _, _ = split(dump)
    types = ["c" if i["kind"] == "categorical" else "q" for i in model["inputs"]]
    Xs, ys = stop_rows(dump)
    # early stopping watched its own rows: about a tenth of the training split, both classes
    assert abs(len(ys) - 0.1 * (len(ys) + len(y))) <= 2 and 0 < ys.sum() < len(ys)
    assert model["lineage"]["params"]["early_stopping_rows"] == len(ys)
    dtr = xgb.DMatrix(X, y, feature_types=types, enable_categorical=True)
    dva = xgb.DMatrix(Xv, yv, feature_types=types, enable_categorical=True)
    dst = xgb.DMatrix(Xs, ys, feature_types=types, enable_categorical=True)
    p = GBDT_PARAMS
    params = dict(objective="binary:logistic", tree_method="hist", max_depth=p["max_depth"],
                  eta=p["learning_rate"], reg_lambda=p["lam"], min_child_weight=p["min_child_weight"],
                  max_bin=p["max_bins"], nthread=2, base_score=float(y.mean()),
                  eval_metric="logloss", seed=1)
    booster = xgb.train(params, dtr, p["n_trees"], evals=[(dst, "stop")],
                        early_stopping_rounds=p["early_stopping"], verbose_eval=False)
    xgb_auc = roc_auc_score(yv, booster.predict(dva, iteration_range=(0, booster.best_iteration + 1)))
    ours_auc = model["metrics"]["auc"]
    print(f"{name}: gbdt AUC ours {ours_auc:.6f} ({len(model['gbdt']['trees'])} trees) "
          f"xgboost {xgb_auc:.6f} ({booster.best_iteration + 1} trees)")
    assert abs(ours_auc - xgb_auc) <= 0.005
    # our base margin is XGBoost's base score
    assert model["gbdt"]["base_margin"] == pytest.approx(math.log(y.mean() / (1 - y.mean())))


# ---- scoring: mlopsctl predict vs a Python re-implementation ----------------------------------

def py_encode(model, values):
    lr = model["algo"] == "logreg"
    x = []
    for inp in model["inputs"]:
        v = values.get(inp["column"])
        if inp["kind"] == "categorical":
            cats = inp["categories"]
            idx = cats.index(v) if isinstance(v, str) and v in cats else None
            if v is None and inp.get("fill_category") is not None:
                idx = cats.index(inp["fill_category"])
            if lr:
                x.extend(1.0 if idx == k else 0.0 for k in range(len(cats)))
            else:
                x.append(float(idx) if idx is not None else math.nan)
        else:
            d = float(v) if v is not None else inp["fill"]
            d = math.nan if d is None else d
            x.append((d - inp["mean"]) / inp["scale"] if lr else d)
    return x


def py_tree(t, x):
    n = 0
    while t["feature"][n] >= 0:
        v = x[t["feature"][n]]
        if math.isnan(v):
            left = t["default_left"][n] == 1
        elif t["categories"][n]:
            left = int(v) in t["categories"][n]
        else:
            left = v < t["threshold"][n]
        n = t["left"][n] if left else t["right"][n]
    return t["value"][n]


def py_score(model, x):
    if model["algo"] == "logreg":
        z = model["logreg"]["intercept"]
        for w, xi in zip(model["logreg"]["coef"], x):
            z += w * xi
    else:
        z = model["gbdt"]["base_margin"]
        for t in model["gbdt"]["trees"]:
            z += py_tree(t, x)
    return 1.0 / (1.0 + math.exp(-z))


@pytest.mark.parametrize("algo", ["logreg", "gbdt"])
@pytest.mark.parametrize("name", ["attrition", "breast_cancer", "titanic"])
def test_predict_equals_python_scoring(data, name, algo):
    tmp, sets = data
    csv, flags = sets[name]
    extra = gbdt_flags() if algo == "gbdt" else []
    model, dump, path = fit(tmp, csv, algo, *flags, *extra, name=f"pred-{name}")
    scores = tmp / f"scores-{name}-{algo}.csv"
    r = run(MLOPSCTL, "predict", "--model", path, "--data", csv, "--out", scores)
    assert r.returncode == 0, r.stderr
    ours = pd.read_csv(scores)
    raw = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert list(ours.columns) == ["score"] and len(ours) == len(raw)
    # the cleaned values of every row, by the ingest path, with the embedded spec
    spec = tmp / f"embedded-{name}-{algo}.json"
    spec.write_text(json.dumps(model["spec"]))
    feats = tmp / f"features-{name}-{algo}.jsonl"
    r = run(MLOPSCTL, "features", "--spec", spec, "--csv", csv, "--out", feats)
    assert r.returncode == 0, r.stderr
    values = {}
    for line in feats.read_text().splitlines():
        rec = json.loads(line)
        values[rec["event_id"]] = rec["values"]
    id_col = model["spec"]["event_id"]
    expect = np.array([py_score(model, py_encode(model, values[e])) for e in raw[id_col]])
    got = ours.score.to_numpy(float)
    assert np.max(np.abs(got - expect)) <= 1e-12, np.max(np.abs(got - expect))
    # the scorer's path (features/1 records -> model_encode_json) gives the
    # same bits as the CSV path, row by row
    fscores = tmp / f"fscores-{name}-{algo}.csv"
    r = run(MLOPSCTL, "predict", "--model", path, "--features", feats, "--out", fscores)
    assert r.returncode == 0, r.stderr
    by_id = dict(zip(values.keys(), pd.read_csv(fscores, dtype=str).score))
    csv_text = pd.read_csv(scores, dtype=str).score
    assert [by_id[e] for e in raw[id_col]] == list(csv_text)
    # the artifact's held-out metrics are those of these scores (sklearn's metrics)
    va = dump[dump.split == "valid"]
    s, yv = got[va.row.to_numpy()], va.label.to_numpy(int)
    mt, thr = model["metrics"], model["threshold"]
    pred = (s >= thr).astype(int)
    assert mt["auc"] == pytest.approx(roc_auc_score(yv, s), abs=1e-12)
    assert mt["log_loss"] == pytest.approx(log_loss(yv, s), rel=1e-9)
    assert mt["brier"] == pytest.approx(brier_score_loss(yv, s), rel=1e-9)
    assert mt["accuracy"] == pytest.approx(accuracy_score(yv, pred))
    assert mt["precision"] == pytest.approx(precision_score(yv, pred, zero_division=0))
    assert mt["recall"] == pytest.approx(recall_score(yv, pred))
    assert mt["f1"] == pytest.approx(f1_score(yv, pred))
    # (the threshold is chosen on the validation rows, not on these: see
    # test_threshold_maximises_f1_on_the_validation_rows)
    assert mt["confusion"]["tp"] == int(((pred == 1) & (yv == 1)).sum())
    # profile: label rate and reservoir sample of the training rows
    trn = dump[dump.split != "valid"]  # the training split, early-stopping rows included
    assert model["profile"]["label_rate"] == pytest.approx(trn.label.mean())
    assert model["profile"]["rows"] == len(trn)
    for p in model["profile"]["inputs"]:
        assert len(p["sample"]) == min(10000, p["count"] - p["missing"])
        if p["kind"] == "numeric":
            assert sum(p["bin_counts"]) == p["count"] - p["missing"]


# ---- determinism --------------------------------------------------------------------------

def strip_volatile(m):
    m = dict(m)
    m.pop("created_at")
    m["lineage"] = {k: v for k, v in m["lineage"].items() if k not in ("timings_ms", "params")}
    return m


def test_gbdt_deterministic_across_threads(data):
    tmp, sets = data
    csv, flags = sets["attrition"]
    common = [*flags, *gbdt_flags(), "--subsample", "0.8", "--colsample", "0.7", "--seed", 5]
    a, _, _ = fit(tmp, csv, "gbdt", *common, "--threads", 1, name="det1")
    b, _, _ = fit(tmp, csv, "gbdt", *common, "--threads", 2, name="det2")
    assert strip_volatile(a) == strip_volatile(b)
    c, _, _ = fit(tmp, csv, "gbdt", *flags, *gbdt_flags(), "--subsample", "0.8", "--colsample",
                  "0.7", "--seed", 6, name="det3")
    assert c["gbdt"]["trees"] != a["gbdt"]["trees"]


# ---- bad input ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(data):
    """A 60-row slice of breast_cancer and the spec inferred from it."""
    tmp, sets = data
    raw = pd.read_csv(sets["breast_cancer"][0], dtype=str, keep_default_na=False)
    df = raw.iloc[:60].copy()
    good = tmp / "small.csv"
    df.to_csv(good, index=False)
    spec = tmp / "small.spec.json"
    r = run(MLOPSCTL, "spec", "infer", good, "--label", "label", "--positive", "malignant",
            "--out", spec)
    assert r.returncode == 0, r.stderr
    return tmp, df, spec


def bad_fit(tmp, csv, *flags):
    out = tmp / "bad.model.json"
    if out.exists():
        out.unlink()
    r = run(TRAINER, "fit", "--data", csv, "--out", out, *flags)
    assert r.returncode != 0
    assert not out.exists() and not list(tmp.glob("bad.model.json.tmp*"))
    return r.stderr


def test_bad_input(small):
    tmp, df, spec = small
    lab = ["--label", "label", "--positive", "malignant"]
    sp = ["--spec", spec]
    # ragged row: line 4 (header is line 1)
    text = df.to_csv(index=False).splitlines()
    text[3] = text[3] + ",extra"
    (tmp / "ragged.csv").write_text("\n".join(text) + "\n")
    err = bad_fit(tmp, tmp / "ragged.csv", *sp, *lab)
    assert "ragged.csv:4:" in err and "fields" in err, err
    err = bad_fit(tmp, tmp / "ragged.csv", *lab)  # the inference path says so too
    assert "ragged.csv" in err and "record 4" in err, err
    # unknown label value at line 7
    d = df.copy()
    d.loc[d.index[5], "label"] = "unsure"
    d.to_csv(tmp / "label3.csv", index=False)
    err = bad_fit(tmp, tmp / "label3.csv", *sp, *lab)
    assert "label3.csv:7:" in err and "column 'label'" in err and "'unsure'" in err, err
    # constant column
    d = df.copy()
    d["mean_radius"] = "12.5"
    d.to_csv(tmp / "const.csv", index=False)
    spec_doc = json.loads(spec.read_text())
    for f in spec_doc["fields"]:
        if f["name"] == "mean_radius":
            f["min"], f["max"] = 0, 100
    (tmp / "const.spec.json").write_text(json.dumps(spec_doc))
    err = bad_fit(tmp, tmp / "const.csv", "--spec", tmp / "const.spec.json", *lab)
    assert "const.csv" in err and "column 'mean_radius'" in err and "constant" in err, err
    # all-missing column (the spec lets it be missing)
    d = df.copy()
    d["mean_texture"] = ""
    d.to_csv(tmp / "empty.csv", index=False)
    spec_doc = json.loads(spec.read_text())
    for f in spec_doc["fields"]:
        if f["name"] == "mean_texture":
            f.pop("required", None)
            f["missing"] = "median"
    (tmp / "empty.spec.json").write_text(json.dumps(spec_doc))
    err = bad_fit(tmp, tmp / "empty.csv", "--spec", tmp / "empty.spec.json", *lab)
    assert "empty.csv" in err and "column 'mean_texture'" in err and "missing" in err, err
    # a required value missing: the spec's cleaning names line and column
    d = df.copy()
    d.loc[d.index[2], "mean_area"] = ""
    d.to_csv(tmp / "hole.csv", index=False)
    err = bad_fit(tmp, tmp / "hole.csv", *sp, *lab)
    assert "hole.csv:4:" in err and "mean_area" in err, err
    # one class only
    d = df[df.label == "benign"]
    d.to_csv(tmp / "oneclass.csv", index=False)
    err = bad_fit(tmp, tmp / "oneclass.csv", *sp, *lab)
    assert "oneclass.csv" in err and "one class only" in err, err
    # 0 rows
    (tmp / "norows.csv").write_text(",".join(df.columns) + "\n")
    err = bad_fit(tmp, tmp / "norows.csv", *sp, *lab)
    assert "norows.csv" in err and "no data rows" in err, err
    err = bad_fit(tmp, tmp / "norows.csv", *lab)
    assert "norows.csv" in err and "no data rows" in err, err
    # positive class that never occurs
    err = bad_fit(tmp, tmp / "small.csv", *sp, "--label", "label", "--positive", "maybe")
    assert "small.csv" in err and "'maybe'" in err, err


def test_bad_model_file(small, tmp_path):
    tmp, df, spec = small
    model, _, path = fit(tmp, tmp / "small.csv", "gbdt", "--spec", spec, "--label", "label",
                         "--positive", "malignant", "--n-trees", 5, name="small")
    broken = json.loads(path.read_text())
    broken["gbdt"]["trees"][0]["left"][0] = 999
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    r = run(MLOPSCTL, "predict", "--model", tmp_path / "broken.json", "--data", tmp / "small.csv")
    assert r.returncode != 0
    assert "gbdt.trees[0].left[0]" in r.stderr, r.stderr
    broken = json.loads(path.read_text())
    broken["spec_hash"] = "0" * 64
    (tmp_path / "hash.json").write_text(json.dumps(broken))
    r = run(MLOPSCTL, "predict", "--model", tmp_path / "hash.json", "--data", tmp / "small.csv")
    assert r.returncode != 0 and "spec_hash" in r.stderr, r.stderr
    # slot names must be strings (a number there crashed the model card once)
    broken = json.loads(path.read_text())
    broken["slots"][0] = 1
    (tmp_path / "slots.json").write_text(json.dumps(broken))
    for cmd in (["predict", "--model", tmp_path / "slots.json", "--data", tmp / "small.csv"],
                ["models", "card", tmp_path / "slots.json"]):
        r = run(MLOPSCTL, *cmd)
        assert r.returncode == 1 and "slots[0]: expected a string" in r.stderr, (cmd, r)


def test_model_card(data):
    tmp, sets = data
    csv, flags = sets["breast_cancer"]
    model, _, path = fit(tmp, csv, "logreg", *flags, name="card")
    r = run(MLOPSCTL, "models", "card", path)
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert md.startswith("# Model card: ")
    assert f"| auc | {model['metrics']['auc']:.4f} |" in md
    assert "| mean_radius | numeric |" in md
    assert f"{model['threshold']:.6f}" in md


def test_quality_gates(data):
    tmp, sets = data
    csv, flags = sets["breast_cancer"]
    model, dump, path = fit(tmp, csv, "logreg", *flags, "--min-auc", "0.9", "--max-log-loss",
                            "5", "--min-rows", "100", name="gates-ok")
    g = model["gates"]
    assert g["passed"] is True and [r["gate"] for r in g["results"]] == [
        "min_auc", "max_log_loss", "min_rows"]
    assert g["results"][0]["value"] == model["metrics"]["auc"]
    # the training split's rows (validation rows included)
    assert g["results"][2]["value"] == (dump.split != "valid").sum()
    # an impossible gate: recorded as failed; the artifact is still written,
    # and --strict-gates makes the exit status say so
    out = tmp / "gates-fail.json"
    r = run(TRAINER, "fit", "--data", csv, *flags, "--min-rows", "100000", "--out", out)
    assert r.returncode == 0, r.stderr
    failed = json.loads(out.read_text())
    VALIDATOR.validate(failed)
    assert failed["gates"]["passed"] is False
    assert failed["gates"]["results"][0] == {"gate": "min_rows", "limit": 100000.0,
                                             "value": float((dump.split != "valid").sum()),
                                             "passed": False}
    r = run(TRAINER, "fit", "--data", csv, *flags, "--min-rows", "100000", "--strict-gates",
            "--out", out)
    assert r.returncode == 3 and "min_rows FAILED" in r.stderr
    # no gate asked for: an empty, passing list
    assert fit(tmp, csv, "logreg", *flags, name="nogates")[0]["gates"] == {
        "passed": True, "results": [], "evaluated_on": "held_out"}


def test_algo_auto_picks_the_best_cv_candidate(data):
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    tmp, sets = data
    csv, flags = sets["diabetes"]
    model, dump, _ = fit(tmp, csv, "auto", *flags, name="auto")
    sel = model["selection"]
    means = [c["mean_auc"] for c in sel["candidates"]]
    assert sel["chosen"] == int(np.argmax(means))
    best = sel["candidates"][sel["chosen"]]
    assert model["algo"] == best["algo"]
    for k, v in best["params"].items():
        if k != "n_trees":
            assert model["lineage"]["params"][k] == pytest.approx(v)
    for c in sel["candidates"]:
        assert len(c["cv_auc"]) == sel["folds"] == 3
        assert c["mean_auc"] == pytest.approx(np.mean(c["cv_auc"]))
    # the logistic candidates' CV AUC is close to scikit-learn's own 3-fold CV
    # on the same rows, the whole training split (other folds, so only roughly)
    lr_model, lr_dump, _ = fit(tmp, csv, "logreg", *flags, name="auto-lr")
    whole = lr_dump[lr_dump.split != "valid"]
    X, y = whole[list(lr_dump.columns[3:])].to_numpy(float), whole.label.to_numpy(int)
    for c in sel["candidates"]:
        if c["algo"] != "logreg":
            continue
        sk = cross_val_score(LogisticRegression(C=c["params"]["C"], max_iter=10000), X, y,
                             cv=StratifiedKFold(3, shuffle=True, random_state=0),
                             scoring="roc_auc").mean()
        assert abs(c["mean_auc"] - sk) < 0.03, (c, sk)


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes"])
def test_logreg_l1_matches_sklearn_saga(data, name):
    import warnings
    tmp, sets = data
    csv, flags = sets[name]
    model, dump, _ = fit(tmp, csv, "logreg", *flags, "--penalty", "l1", "--c", "0.1",
                         name=f"l1-{name}")
    X, y, Xv, yv, _, _ = split(dump)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # saga's convergence chatter and deprecations
        sk = LogisticRegression(penalty="l1", C=0.1, solver="saga", tol=1e-12,
                                max_iter=200000).fit(X, y)
    coef = np.array(model["logreg"]["coef"])
    ours_auc, sk_auc = model["metrics"]["auc"], roc_auc_score(yv, sk.predict_proba(Xv)[:, 1])
    print(f"{name}: logreg L1 AUC ours {ours_auc:.6f} sklearn saga {sk_auc:.6f}, "
          f"nonzero {int((coef != 0).sum())}/{len(coef)}")
    assert abs(ours_auc - sk_auc) <= 0.001
    assert np.array_equal(coef != 0, sk.coef_[0] != 0)  # the same sparsity pattern
    assert np.allclose(coef, sk.coef_[0], atol=1e-5)
    assert model["logreg"]["penalty"] == "l1" and 0 < (coef != 0).sum() < len(coef)


def test_profile_sample_can_be_turned_off(data):
    tmp, sets = data
    csv, flags = sets["diabetes"]
    model, _, _ = fit(tmp, csv, "gbdt", *flags, "--n-trees", 5, "--no-profile-sample",
                      name="nosample")
    prof = model["profile"]
    assert prof["sample_enabled"] is False
    assert all(p["sample"] is None for p in prof["inputs"])
    assert all(sum(p["bin_counts"]) == p["count"] - p["missing"] for p in prof["inputs"])
    # the bin counts follow the documented rule (bin = number of edges <= value)
    raw = pd.read_csv(csv)
    trn = pd.read_csv(tmp / "nosample.gbdt.matrix.csv")
    rows = trn[trn.split != "valid"].row.to_numpy()
    for p in prof["inputs"]:
        v = raw.iloc[rows][p["column"]].to_numpy(float)
        counts = np.bincount(np.searchsorted(p["bin_edges"], v, side="right"),
                             minlength=len(p["bin_edges"]) + 1)
        assert counts.tolist() == p["bin_counts"], p["column"]


@pytest.mark.parametrize("name", ["breast_cancer", "attrition"])
def test_gbdt_lossguide_matches_xgboost(data, name):
    tmp, sets = data
    csv, flags = sets[name]
    p = GBDT_PARAMS
    model, dump, _ = fit(tmp, csv, "gbdt", *flags, *gbdt_flags(), "--growth", "lossguide",
                         "--max-leaves", 15, "--max-depth", 0, name=f"lg-{name}")
    X, y, Xv, yv, _, _ = split(dump)
    types = ["c" if i["kind"] == "categorical" else "q" for i in model["inputs"]]
    Xs, ys = stop_rows(dump)
    dtr = xgb.DMatrix(X, y, feature_types=types, enable_categorical=True)
    dva = xgb.DMatrix(Xv, yv, feature_types=types, enable_categorical=True)
    dst = xgb.DMatrix(Xs, ys, feature_types=types, enable_categorical=True)
    params = dict(objective="binary:logistic", tree_method="hist", grow_policy="lossguide",
                  max_leaves=15, max_depth=0, eta=p["learning_rate"], reg_lambda=p["lam"],
                  min_child_weight=p["min_child_weight"], max_bin=p["max_bins"], nthread=2,
                  base_score=float(y.mean()), eval_metric="logloss", seed=1)
    booster = xgb.train(params, dtr, p["n_trees"], evals=[(dst, "stop")],
                        early_stopping_rounds=p["early_stopping"], verbose_eval=False)
    xgb_auc = roc_auc_score(yv, booster.predict(dva, iteration_range=(0, booster.best_iteration + 1)))
    ours_auc = model["metrics"]["auc"]
    print(f"{name}: gbdt lossguide AUC ours {ours_auc:.6f} xgboost {xgb_auc:.6f}")
    assert abs(ours_auc - xgb_auc) <= 0.005
    leaves = [sum(1 for f in t["feature"] if f < 0) for t in model["gbdt"]["trees"]]
    assert max(leaves) <= 15
    if name == "attrition":  # enough rows to reach the leaf budget
        assert max(leaves) == 15


def test_predict_refused_rows(small, tmp_path):
    tmp, df, spec = small
    model, _, path = fit(tmp, tmp / "small.csv", "logreg", "--spec", spec, "--label", "label",
                         "--positive", "malignant", name="refuse")
    d = df.copy()
    d.loc[d.index[4], "mean_area"] = "not-a-number"  # line 6
    d = d.drop(columns=["label"])  # predict needs no label column
    d.to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "scores.csv"
    r = run(MLOPSCTL, "predict", "--model", path, "--data", tmp_path / "bad.csv", "--out", out)
    assert r.returncode != 0 and not out.exists()
    assert "bad.csv:6:" in r.stderr and "mean_area" in r.stderr, r.stderr
    r = run(MLOPSCTL, "predict", "--model", path, "--data", tmp_path / "bad.csv", "--out", out,
            "--skip-refused")
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "score" and len(lines) == len(d) + 1
    assert lines[5] == "" and all(lines[i] for i in range(1, len(lines)) if i != 5)


def test_inferred_spec_is_mlopsctl_spec_infer(data):
    tmp, sets = data
    csv, flags = sets["breast_cancer"]
    model, _, _ = fit(tmp, csv, "logreg", *flags, name="infer")
    out = tmp / "infer.spec.json"
    r = run(MLOPSCTL, "spec", "infer", csv, *flags, "--out", out)
    assert r.returncode == 0, r.stderr
    assert model["spec"] == json.loads(out.read_text())
    assert model["lineage"]["spec_source"] == "inferred"


def test_champion_gate(data):
    tmp, sets = data
    csv, flags = sets["breast_cancer"]
    champ, _, champ_path = fit(tmp, csv, "logreg", *flags, name="champ")
    # a weaker challenger: a few trees; the champion is scored on the same held-out rows
    model, dump, _ = fit(tmp, csv, "gbdt", *flags, "--n-trees", 2, "--max-depth", 1,
                         "--champion", champ_path, "--max-auc-drop", "0.0", name="challenger")
    g = model["gates"]
    assert g["champion"]["auc"] == pytest.approx(champ["metrics"]["auc"], abs=1e-12)
    assert g["champion"]["rows"] == (dump.split == "valid").sum() and g["champion"]["rows_refused"] == 0
    drop = g["champion"]["auc"] - model["metrics"]["auc"]
    assert drop > 0
    assert g["results"] == [{"gate": "max_auc_drop", "limit": 0.0, "value": pytest.approx(drop),
                             "passed": False}]
    assert g["passed"] is False
    model, _, _ = fit(tmp, csv, "gbdt", *flags, "--n-trees", 2, "--max-depth", 1, "--champion",
                      champ_path, "--max-auc-drop", "0.5", name="challenger2")
    assert model["gates"]["passed"] is True
    r = run(TRAINER, "fit", "--data", csv, *flags, "--max-auc-drop", "0.1", "--out",
            tmp / "x.json")
    assert r.returncode == 2 and "--champion" in r.stderr
