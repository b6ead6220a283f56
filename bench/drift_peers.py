"""bench/drift.sh's Python side: the data, the peers, the comparison.

  drift_peers.py gen DIR [--windows W] [--window N] [--reference R] [--seed S]
      writes DIR/meta.json, DIR/ref.csv (R reference rows) and DIR/cur.csv
      (W windows of N rows, one after the other): 20 features (12 numeric
      with many values, 3 numeric with at most 5, 5 categorical with 2 to 50
      categories), reference NaNs in one column, and a drift plan per window
      (no drift, a few features, most features, subtle shifts near the
      thresholds, all features).
  drift_peers.py run DIR OURS.jsonl [--passes P] [--evidently-passes E]
      times the same report on the same windows with SciPy (the scipy.stats /
      scipy.spatial calls of Evidently's default tests, the test chosen per
      column by Evidently's rule, the dataset share) and with Evidently's
      legacy DataDriftPreset, reads our side's figures (mlops-bench-drift's
      JSON lines), checks every decision (drift per feature, dataset drift)
      and the test name against ours, prints the table, and exits 1 on any
      mismatch.

Floats go through the CSV files as repr() (shortest round trip) and are read
back with float_precision="round_trip", so both sides test the same doubles.
"""
import argparse
import csv
import json
import math
import os
import platform
import sys
import time
import warnings

import numpy as np
import pandas as pd
import scipy
from scipy import stats
from scipy.spatial import distance

NUMERIC_MANY = ["n_normal", "n_lognormal", "n_uniform", "n_expon", "n_gamma", "n_student",
                "n_mixture", "n_round1", "n_int10", "n_int30", "n_amount", "n_nan_ref"]
NUMERIC_FEW = ["n_binary", "n_3levels", "n_const"]
CATEGORICAL = ["c_2", "c_3", "c_8", "c_20", "c_50"]
FEATURES = NUMERIC_MANY + NUMERIC_FEW + CATEGORICAL

# window kinds, cycled: strength of drift per feature
KINDS = ["none", "few", "most", "subtle", "all"]


def strengths(kind, rng):
    """Drift strength per feature for a window kind (0: none)."""
    f = len(FEATURES)
    s = np.zeros(f)
    if kind == "few":  # 4 of 20: no dataset drift
        s[rng.choice(f, 4, replace=False)] = 1.0
    elif kind == "most":  # 13 of 20: dataset drift
        s[rng.choice(f, 13, replace=False)] = 1.0
    elif kind == "subtle":  # every feature a little, around the 0.1 thresholds
        s[:] = rng.uniform(0.1, 0.35, f)
    elif kind == "all":
        s[:] = 1.0
    return s


def gen_rows(rng, n, s):
    """n rows with drift strengths s (one per feature, in FEATURES order)."""
    d = dict(zip(FEATURES, s))
    out = {}
    # continuous: a shift of 0.5 s standard deviations (normed Wasserstein ~ 0.5 s)
    out["n_normal"] = rng.normal(0.5 * d["n_normal"], 1.0, n)
    out["n_lognormal"] = rng.lognormal(0.0 + 0.4 * d["n_lognormal"], 0.8, n)
    out["n_uniform"] = rng.uniform(0.0, 10.0 + 4.0 * d["n_uniform"], n)
    out["n_expon"] = rng.exponential(2.0 * (1 + 0.5 * d["n_expon"]), n)
    out["n_gamma"] = rng.gamma(2.0 + 1.5 * d["n_gamma"], 1.5, n)
    out["n_student"] = rng.standard_t(4, n) * (1 + 0.6 * d["n_student"])
    comp = rng.uniform(size=n) < 0.3 + 0.3 * d["n_mixture"]
    out["n_mixture"] = np.where(comp, rng.normal(4.0, 0.7, n), rng.normal(0.0, 1.0, n))
    out["n_round1"] = np.round(rng.normal(0.5 * d["n_round1"], 1.0, n), 1)
    out["n_int10"] = np.clip(np.round(rng.normal(4.5 + 1.2 * d["n_int10"], 2.0, n)), 0, 9)
    out["n_int30"] = rng.integers(0, 30 + int(round(12 * d["n_int30"])), n).astype(float)
    out["n_amount"] = np.round(rng.lognormal(3.0 + 0.35 * d["n_amount"], 1.1, n), 2)
    out["n_nan_ref"] = rng.normal(10.0 + 1.0 * d["n_nan_ref"], 2.0, n)
    # few values: Jensen-Shannon on one bin per value
    out["n_binary"] = (rng.uniform(size=n) < 0.3 + 0.25 * d["n_binary"]).astype(float)
    p3 = np.array([0.5, 0.3, 0.2]) * (1 - d["n_3levels"]) + np.array([0.2, 0.3, 0.5]) * d[
        "n_3levels"]
    out["n_3levels"] = rng.choice([0.0, 1.0, 2.0], n, p=p3 / p3.sum())
    out["n_const"] = np.full(n, 3.0)
    # categorical: a mix of the base shares with a reversed set of shares
    for name, k in (("c_2", 2), ("c_3", 3), ("c_8", 8), ("c_20", 20), ("c_50", 50)):
        base = 1.0 / np.arange(1, k + 1) ** 0.8
        base /= base.sum()
        t = min(1.0, 0.7 * d[name])
        p = (1 - t) * base + t * base[::-1]
        out[name] = rng.choice(np.array([f"{name}_k{i}" for i in range(k)], dtype=object), n,
                               p=p / p.sum())
    return out


def write_csv(path, cols, n):
    with open(path, "w", newline="") as fp:
        w = csv.writer(fp, lineterminator="\n")
        w.writerow(FEATURES)
        conv = []
        for f in FEATURES:
            c = cols[f]
            if f in CATEGORICAL:
                conv.append(c)
            else:
                conv.append(["" if math.isnan(x) else repr(x) for x in c.tolist()])
        for i in range(n):
            w.writerow([c[i] for c in conv])


def cmd_gen(a):
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    ref = gen_rows(rng, a.reference, np.zeros(len(FEATURES)))
    ref["n_nan_ref"][rng.uniform(size=a.reference) < 0.05] = np.nan
    windows, parts = [], []
    for w in range(a.windows):
        kind = KINDS[w % len(KINDS)]
        s = strengths(kind, rng)
        parts.append(gen_rows(rng, a.window, s))
        windows.append({"window": w, "kind": kind,
                        "strength": {f: round(float(x), 4) for f, x in zip(FEATURES, s) if x}})
    cur = {f: np.concatenate([p[f] for p in parts]) for f in FEATURES}
    write_csv(os.path.join(a.dir, "ref.csv"), ref, a.reference)
    write_csv(os.path.join(a.dir, "cur.csv"), cur, a.window * a.windows)
    meta = {"schema": "drift_bench_data/1", "seed": a.seed, "window": a.window,
            "windows": a.windows, "reference": a.reference,
            "features": [{"name": f, "kind": "categorical" if f in CATEGORICAL else "numeric"}
                         for f in FEATURES],
            "plan": windows}
    with open(os.path.join(a.dir, "meta.json"), "w") as fp:
        json.dump(meta, fp, indent=1)
    # the files must give back the very doubles generated
    back = load_frame(os.path.join(a.dir, "ref.csv"))
    for f in FEATURES:
        if f not in CATEGORICAL:
            assert np.array_equal(back[f].to_numpy(float), ref[f], equal_nan=True), f


def load_frame(path):
    dtypes = {f: (object if f in CATEGORICAL else float) for f in FEATURES}
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False,
                       na_values={f: [""] for f in FEATURES})


# ---- SciPy: Evidently's default tests, written with the scipy calls they make ----

def scipy_column(numeric, ref, cur):
    """(test, value, drifted) for one column; ref is already cleaned (once, at load, as the
    monitor cleans its reference sample when it loads a model), cur is the raw window."""
    cur = cur[np.isfinite(cur)] if numeric else cur[~pd.isna(cur)]
    both = np.concatenate([ref, cur])
    # the distinct values (numbers: np.unique's sort; strings: pandas' hash table,
    # much faster than sorting Python strings) and, where a test needs counts, a
    # code per value (inv)
    if numeric:
        keys = np.unique(both)
        inv = None
    else:
        inv, keys = pd.factorize(both)
    nvals = len(keys)
    if inv is None and not (numeric and nvals > 5):
        inv = np.searchsorted(keys, both)
    nr, nc = len(ref), len(cur)
    if nr <= 1000:
        if numeric and nvals > 5:
            p = stats.ks_2samp(ref, cur).pvalue
            return "ks", p, p <= 0.05
        if nvals > 2:
            fr = np.bincount(inv[:nr], minlength=nvals)
            fc = np.bincount(inv[nr:], minlength=nvals)
            p = stats.chisquare(fc, fr * (nc / nr)).pvalue
            return "chisquare", p, p < 0.05
        if nvals == 1:
            return "z", 1.0, False
        low = inv == np.argmin(keys)  # indicator: the smaller of the two values
        x1, x2 = np.sum(~low[:nr]), np.sum(~low[nr:])
        pp = (x1 + x2) / (nr + nc)
        z = (x1 / nr - x2 / nc) / math.sqrt(pp * (1 - pp) * (1 / nr + 1 / nc))
        p = 2 * stats.norm.sf(abs(z))
        return "z", p, p < 0.05
    if numeric and nvals > 5:
        v = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
        return "wasserstein", v, v >= 0.1
    if numeric and len(pd.unique(ref)) > 20:
        edges = np.histogram_bin_edges(both, bins="sturges")
        rs = np.histogram(ref, edges)[0] / nr
        cs = np.histogram(cur, edges)[0] / nc
    else:
        rs = np.bincount(inv[:nr], minlength=nvals) / nr
        cs = np.bincount(inv[nr:], minlength=nvals) / nc
    v = distance.jensenshannon(rs, cs)
    return "jensenshannon", v, v >= 0.1


def scipy_report(ref_clean, cur_cols, drift_share):
    cols = {}
    for f in FEATURES:
        t, v, dr = scipy_column(f not in CATEGORICAL, ref_clean[f], cur_cols[f])
        cols[f] = {"test": t, "value": float(v), "drifted": bool(dr)}
    share = sum(c["drifted"] for c in cols.values()) / len(cols)
    return {"columns": cols, "share": share, "dataset_drift": share >= drift_share}


# ---- Evidently: the legacy DataDriftPreset ----

EV_NAMES = {"K-S p_value": "ks", "chi-square p_value": "chisquare", "Z-test p_value": "z",
            "Wasserstein distance (normed)": "wasserstein",
            "Jensen-Shannon distance": "jensenshannon", "PSI": "psi"}


def evidently_setup():
    # Evidently 0.7 imports a pandas helper that pandas 3 removed, used only by a
    # data-integrity test we do not run (as tests/drift/test_drift_evidently.py does)
    import pandas.core.dtypes.common as _pdc
    if not hasattr(_pdc, "infer_dtype_from_object"):
        _pdc.infer_dtype_from_object = lambda dtype: dtype
    import evidently
    from evidently.legacy.metric_preset import DataDriftPreset
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report
    mapping = ColumnMapping(numerical_features=NUMERIC_MANY + NUMERIC_FEW,
                            categorical_features=CATEGORICAL)

    def report(ref_df, cur_df, drift_share):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = Report(metrics=[DataDriftPreset(drift_share=drift_share)])
            r.run(reference_data=ref_df, current_data=cur_df, column_mapping=mapping)
            res = r.as_dict()
        table = next(m["result"] for m in res["metrics"] if m["metric"] == "DataDriftTable")
        ds = next(m["result"] for m in res["metrics"] if m["metric"] == "DatasetDriftMetric")
        cols = {name: {"test": EV_NAMES.get(e["stattest_name"], e["stattest_name"]),
                       "value": float(e["drift_score"]), "drifted": bool(e["drift_detected"])}
                for name, e in table["drift_by_columns"].items()}
        return {"columns": cols, "share": ds["share_of_drifted_columns"],
                "dataset_drift": bool(ds["dataset_drift"])}

    return evidently.__version__, report


def relerr(a, b):
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def valdiff(a, b):
    """Relative difference, 0 within 1e-12 absolute (as tests/drift does: a Z-test
    p-value of 1e-17 is 0.0 for Evidently, which computes 2 (1 - Phi(|z|)))."""
    return 0.0 if abs(a - b) <= 1e-12 else relerr(a, b)


def median(x):
    return float(np.median(np.asarray(x, float)))


def cmd_run(a):
    meta = json.load(open(os.path.join(a.dir, "meta.json")))
    n, nwin, share_thr = meta["window"], meta["windows"], a.drift_share
    ours_w, ours_sum = {}, None
    for line in open(a.ours):
        o = json.loads(line)
        if o["schema"] == "drift_bench_window/1":
            ours_w[o["window"]] = o
        elif o["schema"] == "drift_bench_ours/1":
            ours_sum = o
    if ours_sum is None or len(ours_w) != nwin:
        sys.exit(f"drift_peers.py: {a.ours}: expected {nwin} windows and a summary")

    ref_df = load_frame(os.path.join(a.dir, "ref.csv"))
    cur_df = load_frame(os.path.join(a.dir, "cur.csv"))
    assert len(cur_df) == n * nwin and list(cur_df.columns) == FEATURES
    ref_clean = {}
    for f in FEATURES:
        x = ref_df[f].to_numpy(object if f in CATEGORICAL else float)
        ref_clean[f] = x[~pd.isna(x)] if f in CATEGORICAL else x[np.isfinite(x)]
    cur_np = {f: cur_df[f].to_numpy(object if f in CATEGORICAL else float) for f in FEATURES}
    windows_np = [{f: cur_np[f][w * n:(w + 1) * n] for f in FEATURES} for w in range(nwin)]
    windows_df = [cur_df.iloc[w * n:(w + 1) * n].reset_index(drop=True) for w in range(nwin)]

    peers = {}
    # SciPy: one warm-up report (imports, caches), then P passes over every window
    scipy_report(ref_clean, windows_np[0], share_thr)
    sc_t = [[] for _ in range(nwin)]
    sc_res = [None] * nwin
    for _ in range(a.passes):
        for w in range(nwin):
            t = time.perf_counter()
            r = scipy_report(ref_clean, windows_np[w], share_thr)
            sc_t[w].append(time.perf_counter() - t)
            sc_res[w] = r
    peers["scipy"] = (sc_res, sc_t)
    ev_version = None
    if a.evidently_passes > 0:
        ev_version, ev_report = evidently_setup()
        ev_report(ref_df, windows_df[0], share_thr)  # warm-up
        ev_t = [[] for _ in range(nwin)]
        ev_res = [None] * nwin
        for _ in range(a.evidently_passes):
            for w in range(nwin):
                t = time.perf_counter()
                r = ev_report(ref_df, windows_df[w], share_thr)
                ev_t[w].append(time.perf_counter() - t)
                ev_res[w] = r
        peers["evidently"] = (ev_res, ev_t)

    # ---- decisions ----
    mismatches = []
    maxrel = {p: 0.0 for p in peers}
    maxabs = {p: 0.0 for p in peers}
    for w in range(nwin):
        o = ours_w[w]
        mine = {c["name"]: c for c in o["features"]}
        for p, (res, _) in peers.items():
            r = res[w]
            for f in FEATURES:
                c, e = mine[f], r["columns"][f]
                if "error" in c:
                    mismatches.append(f"window {w} {f}: ours not computed ({c['error']})")
                    continue
                if c["test"] != e["test"] or c["drifted"] != e["drifted"]:
                    mismatches.append(f"window {w} {f}: ours {c['test']} {c['value']!r} "
                                      f"drifted={c['drifted']}, {p} {e['test']} {e['value']!r} "
                                      f"drifted={e['drifted']}")
                maxrel[p] = max(maxrel[p], valdiff(float(c["value"]), e["value"]))
                if math.isfinite(float(c["value"])) and math.isfinite(e["value"]):
                    maxabs[p] = max(maxabs[p], abs(float(c["value"]) - e["value"]))
            if o["dataset_drift"] != r["dataset_drift"] or o["share"] != r["share"]:
                mismatches.append(f"window {w}: dataset drift ours {o['dataset_drift']} "
                                  f"(share {o['share']}), {p} {r['dataset_drift']} "
                                  f"(share {r['share']})")

    # ---- table ----
    F = len(FEATURES)
    print(f"Drift benchmark: {F} features ({len(NUMERIC_MANY) + len(NUMERIC_FEW)} numeric, "
          f"{len(CATEGORICAL)} categorical), reference {meta['reference']} rows, "
          f"{nwin} windows of {n} rows, seed {meta['seed']}")
    print(f"host {platform.node()} ({os.cpu_count()} cores), {platform.python_implementation()} "
          f"{platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"pandas {pd.__version__}" + (f", evidently {ev_version}" if ev_version else ""))
    print(f"passes: ours {ours_sum['passes']}, scipy {a.passes}, evidently {a.evidently_passes}"
          " (times are medians over the passes)\n")
    hdr = f"{'window':>6}  {'kind':<7} {'drifted ours/scipy/ev':>22} {'dataset':>10}" \
          f" {'ours tick ms':>13} {'ours stream ms':>15} {'scipy ms':>10} {'evidently ms':>13}"
    print(hdr)
    for w in range(nwin):
        o = ours_w[w]
        nd = [sum(c.get("drifted", False) for c in o["features"])]
        ds = ["y" if o["dataset_drift"] else "n"]
        for p in ("scipy", "evidently"):
            if p in peers:
                r = peers[p][0][w]
                nd.append(sum(c["drifted"] for c in r["columns"].values()))
                ds.append("y" if r["dataset_drift"] else "n")
        evm = f"{median(peers['evidently'][1][w]) * 1e3:13.1f}" if "evidently" in peers else \
            f"{'-':>13}"
        print(f"{w:>6}  {meta['plan'][w]['kind']:<7} {'/'.join(map(str, nd)):>22} "
              f"{'/'.join(ds):>10} {median(o['tick_s']) * 1e3:13.3f} "
              f"{median(o['stream_s']) * 1e3:15.3f} {median(peers['scipy'][1][w]) * 1e3:10.2f} "
              f"{evm}")

    def med_all(ts):
        return median([x for per in ts for x in per])

    tick = med_all([ours_w[w]["tick_s"] for w in range(nwin)])
    stream = med_all([ours_w[w]["stream_s"] for w in range(nwin)])
    rows = [("ours: tick (20 tests + dataset share)", tick),
            (f"ours: stream ({n} dstate_add + tick)", stream)]
    for p, label in (("scipy", "SciPy: same tests, numpy + scipy calls"),
                     ("evidently", "Evidently: DataDriftPreset report")):
        if p in peers:
            rows.append((label, med_all(peers[p][1])))
    print(f"\n{'path':<42} {'ticks/s':>10} {'ms/tick':>10} {'x ours tick':>12} "
          f"{'x ours stream':>14}")
    for label, t in rows:
        print(f"{label:<42} {1 / t:10.1f} {t * 1e3:10.3f} {t / tick:11.1f}x {t / stream:13.1f}x")
    print("\n(x ours: the path's median time per window / ours; above 1x: ours is faster)")
    nf = nwin * F
    for p in peers:
        print(f"decisions vs {p}: {nf} feature decisions + {nwin} dataset decisions, largest "
              f"difference of a value {maxabs[p]:.2e} absolute, relative {maxrel[p]:.2e} "
              "where the absolute one is above 1e-12")
    summary = {"schema": "drift_bench_result/1", "features": F, "window": n, "windows": nwin,
               "reference": meta["reference"], "ours_tick_s": tick, "ours_stream_s": stream,
               "ours_passes": ours_sum["passes"], "scipy_passes": a.passes,
               "evidently_passes": a.evidently_passes, "mismatches": len(mismatches),
               "max_rel_value_diff": maxrel, "max_abs_value_diff": maxabs}
    for label, t in rows[2:]:
        summary[label.split(":")[0].lower() + "_s"] = t
    print(json.dumps(summary))
    if mismatches:
        print(f"\nMISMATCH: {len(mismatches)} decisions differ:", file=sys.stderr)
        for m in mismatches[:50]:
            print("  " + m, file=sys.stderr)
        return 1
    print("all decisions identical (ours, " + ", ".join(peers) + ")")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    g.add_argument("--windows", type=int, default=10)
    g.add_argument("--window", type=int, default=10000)
    g.add_argument("--reference", type=int, default=10000)
    g.add_argument("--seed", type=int, default=42)
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("ours")
    r.add_argument("--passes", type=int, default=3)
    r.add_argument("--evidently-passes", type=int, default=1)
    r.add_argument("--drift-share", type=float, default=0.5)
    a = ap.parse_args()
    if a.cmd == "gen":
        cmd_gen(a)
        return 0
    return cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())
