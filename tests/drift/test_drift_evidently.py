"""Evidently's legacy data-drift preset (evidently.legacy, the pinned version in
requirements.txt) against `mlopsctl drift-stat` on the same generated frames:
the test Evidently picks per column, its drift decision, its score (to 1e-9
relative or 1e-12 absolute: the statistics are the same), the share of drifted
columns and the dataset-drift flag must all be equal. Frames cover references
at and around the 1000-row switch, every column kind of the default rules,
NaN and inf, unseen categories and constant columns; a second pass forces each
binned test (PSI, KL, Jensen-Shannon, Hellinger) on every column."""
import json
import math
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

# Evidently 0.7 imports a pandas helper that pandas 3 removed; it is only used
# by a data-integrity test we do not run. Give it a stand-in before importing.
import pandas.core.dtypes.common as _pdc

if not hasattr(_pdc, "infer_dtype_from_object"):
    _pdc.infer_dtype_from_object = lambda dtype: dtype

from evidently.legacy.metric_preset import DataDriftPreset  # noqa: E402
from evidently.legacy.pipeline.column_mapping import ColumnMapping  # noqa: E402
from evidently.legacy.report import Report  # noqa: E402

from test_drift_oracle import MLOPSCTL, _dec, _enc  # noqa: E402

NAMES = {"K-S p_value": "ks", "chi-square p_value": "chisquare", "Z-test p_value": "z",
         "Wasserstein distance (normed)": "wasserstein",
         "Jensen-Shannon distance": "jensenshannon", "PSI": "psi",
         "Kullback-Leibler divergence": "kl_div", "Hellinger distance": "hellinger",
         "Anderson-Darling": "anderson"}

NUM = ["num_cont", "num_round", "num_4", "num_2", "num_1", "num_30", "num_nan"]
CAT = ["cat_3", "cat_2", "cat_8"]


def frame(rng, n, drift):
    d = {}
    d["num_cont"] = rng.normal(0.4 * drift, 1, n)
    d["num_round"] = np.round(rng.normal(0, 1 + 0.3 * drift, n), 1)
    d["num_4"] = rng.integers(0, 4 + (drift > 0.5), n).astype(float)
    d["num_2"] = (rng.uniform(size=n) < 0.3 + 0.2 * drift).astype(float)
    d["num_1"] = np.full(n, 3.0)
    d["num_30"] = rng.integers(0, 30, n).astype(float) + (drift > 0.5) * rng.integers(0, 3, n)
    x = rng.exponential(1 + drift, n)
    x[rng.uniform(size=n) < 0.05] = np.nan
    x[rng.uniform(size=n) < 0.02] = np.inf
    x[rng.uniform(size=n) < 0.01] = -np.inf
    # Evidently drops inf only from a column that also holds a NaN (it tests
    # isna() first); we always drop both (test_inf_without_nan_...)
    x[0] = np.nan
    d["num_nan"] = x
    cats3 = ["a", "b", "c", "d"] if drift > 0.5 else ["a", "b", "c"]
    d["cat_3"] = rng.choice(cats3, n)
    d["cat_2"] = rng.choice(["yes", "no"], n, p=[0.5 + 0.3 * drift, 0.5 - 0.3 * drift])
    c8 = rng.choice([f"k{i}" for i in range(8)], n).astype(object)
    c8[rng.uniform(size=n) < 0.03] = None
    d["cat_8"] = c8
    return pd.DataFrame(d)


def evidently_report(ref, cur, **preset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = Report(metrics=[DataDriftPreset(**preset)])
        r.run(reference_data=ref, current_data=cur,
              column_mapping=ColumnMapping(numerical_features=NUM, categorical_features=CAT))
        res = r.as_dict()
    table = next(m["result"] for m in res["metrics"] if m["metric"] == "DataDriftTable")
    # the preset passes drift_share to DatasetDriftMetric only (the table keeps
    # 0.5), so the dataset flag comes from there
    ds = next(m["result"] for m in res["metrics"] if m["metric"] == "DatasetDriftMetric")
    table["dataset_drift"] = ds["dataset_drift"]
    assert ds["share_of_drifted_columns"] == table["share_of_drifted_columns"]
    return table


def ours(ref, cur, test=None, drift_share=0.5):
    cols = []
    for c in NUM + CAT:
        col = {"name": c, "numeric": c in NUM, "ref": ref[c].tolist(), "cur": cur[c].tolist()}
        if test:
            col["test"] = test
        cols.append(col)
    req = {"op": "dataset", "columns": cols, "drift_share": drift_share}
    data = json.dumps({k: _enc(v) for k, v in req.items()}, allow_nan=False)
    p = subprocess.run([str(MLOPSCTL), "drift-stat"], input=data + "\n", capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def compare(ref, cur, ctx, test=None, evidently_test=None, drift_share=0.5):
    preset = {"drift_share": drift_share}
    if evidently_test:
        preset["stattest"] = evidently_test
    ev = evidently_report(ref, cur, **preset)
    # our JSON encoder: NaN -> null, inf -> "inf"; lists from pandas hold floats
    for df in (ref, cur):
        for c in NUM:
            df[c] = df[c].astype(float)
    mine = ours(ref, cur, test=test, drift_share=drift_share)
    by_name = {c["name"]: c for c in mine["columns"]}
    for name, e in ev["drift_by_columns"].items():
        o = by_name[name]
        where = f"{ctx} column {name}"
        assert o["test"] == NAMES[e["stattest_name"]], where
        assert o["drifted"] == e["drift_detected"], f"{where}: ours {o} evidently {e['drift_score']}"
        a, b = _dec(o["value"]), float(e["drift_score"])
        assert a == b or abs(a - b) <= 1e-12 or abs(a - b) <= 1e-9 * max(abs(a), abs(b)), \
            f"{where}: ours {a!r} evidently {b!r}"
        assert o["threshold"] == e["stattest_threshold"], where
    assert mine["dataset_drift"] == ev["dataset_drift"], ctx
    assert math.isclose(mine["share"], ev["share_of_drifted_columns"], rel_tol=1e-15), ctx
    return mine, ev


CASES = [(nref, ncur, drift) for nref in (30, 300, 1000, 1001, 4000) for ncur in (25, 700, 2500)
         for drift in (0.0, 0.3, 1.0)]


@pytest.mark.parametrize("nref,ncur,drift", CASES)
def test_default_preset_decisions_match(nref, ncur, drift):
    rng = np.random.default_rng(nref * 7919 + ncur * 31 + int(drift * 10))
    ref, cur = frame(rng, nref, 0.0), frame(rng, ncur, drift)
    mine, _ = compare(ref, cur, f"nref={nref} ncur={ncur} drift={drift}")
    tests = {c["name"]: c["test"] for c in mine["columns"]}
    if nref <= 1000:
        assert tests["num_cont"] == "ks" and tests["num_4"] == "chisquare"
        assert tests["num_2"] == "z" and tests["cat_2"] == "z" and tests["cat_8"] == "chisquare"
    else:
        assert tests["num_cont"] == "wasserstein" and tests["num_4"] == "jensenshannon"
        assert tests["cat_3"] == "jensenshannon"


@pytest.mark.parametrize("test", ["psi", "kl_div", "jensenshannon", "hellinger"])
@pytest.mark.parametrize("nref,ncur", [(200, 150), (1500, 900), (5000, 3000)])
def test_binned_tests_on_every_column_match(test, nref, ncur):
    rng = np.random.default_rng(nref + ncur + len(test))
    for drift in (0.0, 1.0):
        ref, cur = frame(rng, nref, 0.0), frame(rng, ncur, drift)
        compare(ref, cur, f"{test} nref={nref} ncur={ncur} drift={drift}", test=test,
                evidently_test=test)


@pytest.mark.parametrize("nref,ncur", [(200, 150), (3000, 900)])
def test_anderson_on_numeric_columns_matches(nref, ncur):
    rng = np.random.default_rng(nref + 3 * ncur)
    for drift in (0.0, 0.3, 1.0):
        ref, cur = frame(rng, nref, 0.0), frame(rng, ncur, drift)
        # anderson is numeric only and needs two distinct values: drop num_1, keep chi-square /
        # z for the categorical columns through Evidently's own defaults
        ref, cur = ref.drop(columns=["num_1"]), cur.drop(columns=["num_1"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = Report(metrics=[DataDriftPreset(num_stattest="anderson")])
            nums = [c for c in NUM if c != "num_1"]
            r.run(reference_data=ref, current_data=cur,
                  column_mapping=ColumnMapping(numerical_features=nums, categorical_features=CAT))
        table = next(m["result"] for m in r.as_dict()["metrics"]
                     if m["metric"] == "DataDriftTable")
        for c in nums:
            e = table["drift_by_columns"][c]
            req = {"op": "column", "numeric": True, "ref": ref[c].astype(float).tolist(),
                   "cur": cur[c].astype(float).tolist(), "test": "anderson"}
            p = subprocess.run([str(MLOPSCTL), "drift-stat"],
                               input=json.dumps(_enc(req), allow_nan=False) + "\n",
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, p.stderr
            o = json.loads(p.stdout)
            assert NAMES[e["stattest_name"]] == o["test"] == "anderson"
            assert o["drifted"] == e["drift_detected"], (c, drift, o, e["drift_score"])
            assert o["value"] == pytest.approx(e["drift_score"], rel=1e-9, abs=1e-12), (c, drift)


def test_drift_share_threshold_is_configurable():
    rng = np.random.default_rng(3)
    ref, cur = frame(rng, 800, 0.0), frame(rng, 800, 1.0)
    for share in (0.1, 0.5, 0.9):
        compare(ref.copy(), cur.copy(), f"drift_share={share}", drift_share=share)


def test_inf_without_nan_is_dropped_by_us_and_kept_by_evidently():
    """Our deliberate difference: a column with inf but no NaN. Evidently tests
    isna() before replacing inf, so it keeps the infs there; we drop non-finite
    values always. Ours equals Evidently on the frame with the infs removed."""
    rng = np.random.default_rng(12)
    ref, cur = frame(rng, 300, 0.0), frame(rng, 200, 0.3)
    for df in (ref, cur):
        x = df["num_nan"].to_numpy().copy()
        x[np.isnan(x)] = 1.0
        x[:3] = [np.inf, -np.inf, np.inf]
        df["num_nan"] = x
    mine = {c["name"]: c for c in ours(ref, cur)["columns"]}
    ev = evidently_report(ref, cur)["drift_by_columns"]["num_nan"]
    kept = ref["num_nan"][np.isfinite(ref["num_nan"])], cur["num_nan"][np.isfinite(cur["num_nan"])]
    from scipy import stats
    assert ev["drift_score"] == pytest.approx(stats.ks_2samp(ref["num_nan"], cur["num_nan"])[1],
                                              rel=1e-12)
    assert mine["num_nan"]["value"] == pytest.approx(stats.ks_2samp(*kept)[1], rel=1e-9)
    assert mine["num_nan"]["n_ref"] == len(kept[0]) < 300 - 2


def test_empty_column_is_refused_by_both():
    ref = pd.DataFrame({c: [1.0, 2.0, 3.0] for c in NUM} | {c: ["a", "b", "a"] for c in CAT})
    cur = ref.copy()
    cur["num_cont"] = [np.nan, np.inf, np.nan]
    with pytest.raises(ValueError, match="empty column"):
        evidently_report(ref, cur)
    req = {"op": "column", "ref": [1.0, 2.0], "cur": [None, "inf"]}
    p = subprocess.run([str(MLOPSCTL), "drift-stat"], input=json.dumps(req) + "\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "current sample is empty" in p.stderr
