"""`mlopsctl datagen attrition` checked from the outside: the columns the
attrition spec expects, determinism, realism and consistency rules, the spec's
own cleaning (`mlopsctl features`) accepting clean rows and refusing the bad
ones, the positive rate, a label that a linear model cannot fully learn
(scikit-learn), and each drift mode detectable after the drift row and not
before (scipy KS tests, model AUCs). Thresholds are design targets stated in
the tests, not figures copied from a run."""
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
MLOPSCTL = BUILD / "cli" / "mlopsctl"
SPEC_PATH = ROOT / "examples" / "attrition" / "spec.json"
SPEC = json.loads(SPEC_PATH.read_text())
FIELDS = {f["name"]: f for f in SPEC["fields"]}
LABEL = SPEC["label"]["field"]
CATEGORICAL = [f["name"] for f in SPEC["fields"] if f["type"] == "categorical"]
REASONS = {"out_of_range", "wrong_type", "missing_field", "unknown_category", "duplicate_event"}


def datagen(tmp_path, rows, seed, *extra, name=None):
    out = tmp_path / (name or f"att_{rows}_{seed}_{'_'.join(extra).replace('-', '')}.csv")
    r = subprocess.run([str(MLOPSCTL), "datagen", "attrition", "--rows", str(rows), "--seed",
                        str(seed), "--out", str(out), *extra],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def load(path):
    # keep_default_na=False + na_values=[""]: only empty cells are missing
    return pd.read_csv(path, keep_default_na=False, na_values=[""], low_memory=False)


def features(tmp_path, csv):
    dlq = tmp_path / (csv.stem + ".dlq.jsonl")
    out = tmp_path / (csv.stem + ".features.jsonl")
    r = subprocess.run([str(MLOPSCTL), "features", "--spec", str(SPEC_PATH), "--csv", str(csv),
                        "--out", str(out), "--dlq", str(dlq)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    nout = sum(1 for _ in out.open())
    refused = [json.loads(line) for line in dlq.open()]
    return nout, refused


def one_per_employee(df):
    """The first event of each employee: independent rows (an employee's
    events repeat most of its values), so KS p-values mean what they say."""
    return df.drop_duplicates("employee_id", keep="first")


def design(df, columns=None):
    """Raw features for a model: numbers as they are, categories one-hot,
    booleans 0/1; ids, times and the label dropped."""
    x = df.drop(columns=["event_id", "employee_id", "event_time", "last_review_at", LABEL])
    for b in ("overtime", "remote"):
        x[b] = x[b].map({True: 1.0, False: 0.0, "true": 1.0, "false": 0.0})
    x = pd.get_dummies(x, columns=CATEGORICAL, dummy_na=True).astype(float)
    if columns is not None:
        x = x.reindex(columns=columns, fill_value=0.0)
    return x


def y_of(df):
    return (df[LABEL] == SPEC["label"]["positive"]).to_numpy()


def gbdt():
    return HistGradientBoostingClassifier(max_depth=4, max_iter=250, learning_rate=0.08,
                                          random_state=0)


# ---- shape, determinism, consistency -------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for extra in ([], ["--bad-fraction", "0.05", "--drift", "concept", "--drift-at", "0.3"]):
        a = datagen(tmp_path, 5000, 3, *extra, name="a.csv").read_bytes()
        b = datagen(tmp_path, 5000, 3, *extra, name="b.csv").read_bytes()
        c = datagen(tmp_path, 5000, 4, *extra, name="c.csv").read_bytes()
        assert a == b
        assert a != c
        # not just the ids: the values differ too
        da, dc = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "c.csv")
        assert not np.array_equal(da["monthly_income"].to_numpy(),
                                  dc["monthly_income"].to_numpy())


def test_row_count_columns_ids_and_time_order(tmp_path):
    df = load(datagen(tmp_path, 3000, 5))
    assert len(df) == 3000
    expected = {SPEC["entity"], SPEC["event_id"], SPEC["event_time"], LABEL} | set(FIELDS)
    assert set(df.columns) == expected
    assert df[SPEC["event_id"]].is_unique
    t = pd.to_datetime(df[SPEC["event_time"]], utc=True, format="ISO8601")
    assert t.is_monotonic_increasing
    # RFC 3339 UTC with milliseconds
    assert df[SPEC["event_time"]].str.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").all()
    # several events per employee (default entities = rows / 5), close in time
    per = df.groupby(SPEC["entity"]).size()
    assert per.count() <= 3000 // 5
    assert per.median() >= 3
    span = df.assign(t=t).groupby(SPEC["entity"])["t"].agg(lambda s: s.max() - s.min())
    # the default step is one day: an employee's events lie within a few months
    assert span.median() < pd.Timedelta(days=120)
    assert set(df[LABEL]) == {"yes", "no"}


def test_values_realistic_and_consistent(tmp_path):
    df = load(datagen(tmp_path, 40000, 6))
    # within the spec's ranges and vocabularies
    for name, f in FIELDS.items():
        col = df[name].dropna()
        if "min" in f:
            assert col.min() >= f["min"], name
        if "max" in f:
            assert col.max() <= f["max"], name
        if f.get("values"):
            assert set(col) <= set(f["values"]), (name, set(col) - set(f["values"]))
    # required fields are never missing; optional ones are, at a few percent
    for name, f in FIELDS.items():
        share = df[name].isna().mean()
        if f.get("required"):
            assert share == 0, name
        else:
            assert 0.003 < share < 0.25, (name, share)
    # tenure rules (where both values are present)
    def le(a, b):
        both = a.notna() & b.notna()
        assert both.mean() > 0.9
        return bool((a[both] <= b[both]).all())

    assert le(df.years_in_current_role, df.years_at_company)
    assert le(df.years_since_last_promotion, df.years_at_company)
    assert le(df.years_with_manager, df.years_in_current_role)
    assert le(df.years_at_company, df.total_working_years)
    assert le(df.total_working_years, df.age - 16)
    # job roles belong to departments ("manager" exists in every department)
    depts = df.groupby("job_role")["department"].agg(set)
    for role, ds in depts.items():
        if role != "manager":
            assert len(ds) == 1, (role, ds)
    assert depts["sales executive"] == {"sales"}
    assert depts["research scientist"] == {"research & development"}
    assert depts["human resources"] == {"human resources"}
    # income grows with job level and, within a level, with experience
    med = df.groupby("job_level")["monthly_income"].median()
    assert list(med.index) == [1, 2, 3, 4, 5]
    assert med.is_monotonic_increasing and med.iloc[-1] > 4 * med.iloc[0]
    for level, g in df.groupby("job_level"):
        rho = stats.spearmanr(g.total_working_years, g.monthly_income, nan_policy="omit")[0]
        assert rho > 0, (level, rho)
    # an employee's static attributes do not change between events
    static = ["gender", "department", "job_role", "education"]
    assert (df.groupby("employee_id")[static].nunique(dropna=True) <= 1).all().all()
    # a review happened before the event
    rev = pd.to_datetime(df.last_review_at, utc=True, format="ISO8601")
    t = pd.to_datetime(df.event_time, utc=True, format="ISO8601")
    assert (rev.dropna() <= t[rev.notna()]).all()


def test_the_spec_accepts_every_clean_row(tmp_path):
    csv = datagen(tmp_path, 20000, 8)
    nout, refused = features(tmp_path, csv)
    assert refused == []
    assert nout == 20000


@pytest.mark.parametrize("fraction", [0.05, 0.2])
def test_bad_rows_are_refused_for_their_reasons(tmp_path, fraction):
    n = 20000
    csv = datagen(tmp_path, n, 9, "--bad-fraction", str(fraction))
    nout, refused = features(tmp_path, csv)
    assert nout + len(refused) == n
    share = len(refused) / n
    # binomial: 4 standard deviations
    assert abs(share - fraction) < 4 * np.sqrt(fraction * (1 - fraction) / n) + 0.002, share
    reasons = pd.Series([r["reason"] for r in refused]).value_counts()
    assert set(reasons.index) == REASONS, reasons
    # varied: no reason dominates; each names a field
    assert reasons.min() > 0.05 * len(refused)
    assert all(r["field"] for r in refused)
    fields = {r["field"] for r in refused}
    assert {"age", "department", "event_time", "event_id"} <= fields
    # the clean rows are the same rows as without bad ones (bad rows replace rows)
    clean = datagen(tmp_path, n, 9).read_text().splitlines()
    dirty = csv.read_text().splitlines()
    bad_records = {r["source"]["record"] for r in refused}  # the header is record 1
    keep = [i for i in range(1, n + 1) if i + 1 not in bad_records]
    assert [clean[i] for i in keep] == [dirty[i] for i in keep]
    assert all(clean[i] != dirty[i] for i in range(1, n + 1) if i + 1 in bad_records)


# ---- the label ------------------------------------------------------------------------------


def test_positive_rate_about_16_percent(tmp_path):
    for seed in (1, 2):
        df = load(datagen(tmp_path, 200000, seed))
        rate = y_of(df).mean()
        print(f"seed {seed}: positive rate {rate:.4f}")
        assert abs(rate - 0.16) <= 0.02, rate


def test_label_is_non_linear_in_the_fields(tmp_path):
    df = load(datagen(tmp_path, 120000, 12))
    train, test = df.iloc[:90000], df.iloc[90000:]
    # no employee in both (employees are local in the stream; drop the few at the border)
    test = test[~test.employee_id.isin(set(train.employee_id))]
    xtr, ytr = design(train), y_of(train)
    xte, yte = design(test, xtr.columns), y_of(test)
    med = xtr.median()
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    lr.fit(xtr.fillna(med), ytr)
    auc_lr = roc_auc_score(yte, lr.predict_proba(xte.fillna(med))[:, 1])
    gb = gbdt().fit(xtr, ytr)
    auc_gb = roc_auc_score(yte, gb.predict_proba(xte)[:, 1])
    print(f"held-out AUC: logistic regression {auc_lr:.4f}, gradient boosting {auc_gb:.4f}")
    assert auc_gb > 0.65  # the label is learnable at all
    assert auc_gb - auc_lr >= 0.03


# ---- drift ------------------------------------------------------------------------------------


def split_at(df, frac):
    k = int(np.floor(frac * len(df)))
    return df.iloc[:k], df.iloc[k:]


@pytest.mark.parametrize("mode", ["covariate", "new-category", "label-rate", "concept"])
def test_rows_before_the_drift_are_untouched(tmp_path, mode):
    base = datagen(tmp_path, 10000, 21, name="base.csv").read_text().splitlines()
    drifted = datagen(tmp_path, 10000, 21, "--drift", mode, "--drift-at", "0.4",
                      name="drift.csv").read_text().splitlines()
    k = 1 + 4000  # header + rows before the drift
    assert drifted[:k] == base[:k]
    assert drifted[k:] != base[k:]


def test_covariate_drift(tmp_path):
    csv = datagen(tmp_path, 100000, 31, "--drift", "covariate", "--drift-at", "0.5")
    df = load(csv)
    pre, post = split_at(df, 0.5)
    pre1, post1 = one_per_employee(pre), one_per_employee(post)
    post1 = post1[~post1.employee_id.isin(set(pre.employee_id))]
    h = len(pre1) // 2
    for col in ("monthly_income", "age", "weekly_hours"):
        p_drift = stats.ks_2samp(pre1[col].dropna(), post1[col].dropna()).pvalue
        p_same = stats.ks_2samp(pre1[col].iloc[:h].dropna(), pre1[col].iloc[h:].dropna()).pvalue
        print(f"{col}: KS p pre vs post {p_drift:.3g}, pre halves {p_same:.3g}")
        assert p_drift < 1e-6, col
        assert p_same > 0.001, col
    assert (post.overtime == True).mean() > (pre.overtime == True).mean() + 0.05  # noqa: E712
    # the spec still accepts every row: covariate drift is not bad data
    _, refused = features(tmp_path, csv)
    assert refused == []


def test_new_category_drift(tmp_path):
    n = 40000
    csv = datagen(tmp_path, n, 32, "--drift", "new-category", "--drift-at", "0.6")
    df = load(csv)
    pre, post = split_at(df, 0.6)
    new_depts = set(post.department) - set(pre.department)
    new_roles = set(post.job_role) - set(pre.job_role)
    print("new departments", new_depts, "new roles", new_roles)
    assert "data science" in new_depts
    assert len(new_roles) >= 2
    # the new values are unknown to the spec's department vocabulary: ingest refuses them
    assert not new_depts & set(FIELDS["department"]["values"])
    _, refused = features(tmp_path, csv)
    assert refused, "the new department must be refused"
    assert {r["reason"] for r in refused} == {"unknown_category"}
    assert {r["field"] for r in refused} == {"department"}
    first_bad = min(r["source"]["record"] for r in refused) - 2  # header is record 1
    assert first_bad >= int(0.6 * n)
    assert len(refused) == (post.department == "data science").sum()


def test_label_rate_drift(tmp_path):
    df = load(datagen(tmp_path, 100000, 33, "--drift", "label-rate", "--drift-at", "0.5"))
    pre, post = split_at(df, 0.5)
    r_pre, r_post = y_of(pre).mean(), y_of(post).mean()
    h = len(pre) // 2
    r_pre1, r_pre2 = y_of(pre.iloc[:h]).mean(), y_of(pre.iloc[h:]).mean()
    print(f"positive rate: pre {r_pre:.4f} ({r_pre1:.4f} / {r_pre2:.4f}), post {r_post:.4f}")
    assert abs(r_pre - 0.16) <= 0.02
    assert abs(r_pre1 - r_pre2) < 0.015
    assert abs(r_post - 0.30) <= 0.03
    # the features themselves did not move
    pre1, post1 = one_per_employee(pre), one_per_employee(post)
    p = stats.ks_2samp(pre1.monthly_income, post1.monthly_income).pvalue
    assert p > 0.001, p


def test_concept_drift_a_retrained_model_wins(tmp_path):
    df = load(datagen(tmp_path, 160000, 34, "--drift", "concept", "--drift-at", "0.5"))
    pre, post = split_at(df, 0.5)
    post_train, post_test = split_at(post, 0.5)
    pre_train, pre_test = split_at(pre, 0.75)
    seen = set(pre.employee_id) | set(post_train.employee_id)
    post_test = post_test[~post_test.employee_id.isin(seen)]
    pre_test = pre_test[~pre_test.employee_id.isin(set(pre_train.employee_id))]
    old = gbdt().fit(design(pre_train), y_of(pre_train))
    new = gbdt().fit(design(post_train), y_of(post_train))
    cols_old, cols_new = old.feature_names_in_, new.feature_names_in_
    auc = lambda m, cols, d: roc_auc_score(y_of(d), m.predict_proba(design(d, cols))[:, 1])
    old_pre, old_post = auc(old, cols_old, pre_test), auc(old, cols_old, post_test)
    new_post = auc(new, cols_new, post_test)
    print(f"AUC: old model before {old_pre:.4f}, after {old_post:.4f}; "
          f"retrained after {new_post:.4f}")
    assert new_post - old_post >= 0.05
    assert old_pre - old_post >= 0.05  # the old model degrades after the drift
    # the rate stays about the same: only the relationship moved
    assert abs(y_of(post).mean() - 0.16) <= 0.02
    # and the features themselves did not move
    pre1, post1 = one_per_employee(pre), one_per_employee(post)
    p = stats.ks_2samp(pre1.monthly_income, post1.monthly_income).pvalue
    assert p > 0.001, p


def test_half_a_million_rows_in_seconds(tmp_path):
    t0 = time.monotonic()
    out = datagen(tmp_path, 500000, 1)
    secs = time.monotonic() - t0
    with out.open() as f:
        n = sum(1 for _ in f) - 1
    print(f"500,000 rows in {secs:.2f} s ({n / secs:,.0f} rows/s)")
    assert n == 500000
    assert secs < 15


def test_drift_kinds_combine(tmp_path):
    """covariate,concept: the fields of covariate drift and the label function of concept
    drift from the same row; the fields are those of covariate drift alone."""
    n, seed = 20000, 35
    cov = load(datagen(tmp_path, n, seed, "--drift", "covariate", "--drift-at", "0.5",
                       name="cov.csv"))
    both = load(datagen(tmp_path, n, seed, "--drift", "covariate,concept", "--drift-at", "0.5",
                        name="both.csv"))
    fields = [c for c in cov.columns if c != LABEL]
    pd.testing.assert_frame_equal(cov[fields], both[fields])
    k = n // 2
    assert (y_of(cov.iloc[:k]) == y_of(both.iloc[:k])).all()
    changed = (y_of(cov.iloc[k:]) != y_of(both.iloc[k:])).mean()
    print(f"labels changed after the drift row: {changed:.3f}")
    assert changed > 0.05


@pytest.mark.parametrize("kinds,message", [
    ("covariate,bogus", "'bogus' is not one of"),
    ("label-rate,concept", "give one of them"),
    (",", "is not one of"),
])
def test_bad_drift_kinds_are_refused(tmp_path, kinds, message):
    r = subprocess.run([str(MLOPSCTL), "datagen", "attrition", "--rows", "10", "--out",
                        str(tmp_path / "x.csv"), "--drift", kinds], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
