"""The feature code (common/spec.c, common/rolling.c), run through
`mlopsctl features`, checked against independent oracles on the same random
data: scikit-learn's murmurhash3_32 (hash buckets), numpy.digitize
(bucketize), pandas timestamps (time parts), numpy log1p and division, and
pandas' time-window rolling count/sum/mean (point in time, per entity).
Several seeds; exact where the value is discrete, 1e-9 relative otherwise."""
import csv
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils import murmurhash3_32

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
MLOPSCTL = BUILD / "cli" / "mlopsctl"

BOUNDARIES = [-1.5, 0.0, 0.25, 2.0, 10.0]
ASCII_WS = r"[ \t\n\r\f\v]+"
WINDOWS = {"1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
BUCKETS = [7, 16, 1000]

SPEC = {
    "schema": "feature_spec/1",
    "name": "oracle",
    "entity": "user",
    "event_id": "id",
    "event_time": "ts",
    "fields": [
        {"name": "x", "type": "numeric"},
        {"name": "y", "type": "numeric"},
        {"name": "cat", "type": "categorical", "case": "lower", "max_length": 64},
        {"name": "when", "type": "timestamp"},
    ],
    "derived": (
        [{"name": "lx", "op": "log1p", "input": "x", "on_invalid": "null"},
         {"name": "q", "op": "ratio", "num": "x", "den": "y", "on_invalid": "null"},
         {"name": "b", "op": "bucketize", "input": "x", "boundaries": BOUNDARIES}]
        + [{"name": f"h{n}", "op": "hash", "input": "cat", "buckets": n} for n in BUCKETS]
        + [{"name": f"ev_{p}", "op": "time_part", "input": "ts", "part": p}
           for p in ["hour", "dow", "day", "month", "year"]]
        + [{"name": "when_hour", "op": "time_part", "input": "when", "part": "hour"}]
        + [d for w, s in WINDOWS.items() for d in (
            {"name": f"cnt_{w}", "op": "rolling_count", "window_s": s},
            {"name": f"sum_{w}", "op": "rolling_sum", "input": "x", "window_s": s},
            {"name": f"mean_{w}", "op": "rolling_mean", "input": "y", "window_s": s})]
    ),
}


def make_data(seed, n=3000):
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(25)]
    t0 = pd.Timestamp("2026-01-01T00:00:00Z").value // 10**6
    # times in ms over 90 days; some exact ties to exercise ordering
    ts = t0 + rng.integers(0, 90 * 86400 * 1000, n)
    ts[rng.random(n) < 0.05] = ts[0]
    x = rng.normal(1.0, 3.0, n).round(3)
    x[rng.random(n) < 0.1] = np.nan
    y = rng.normal(0.0, 2.0, n).round(2)
    y[rng.random(n) < 0.05] = 0.0
    y[rng.random(n) < 0.1] = np.nan
    words = ["Alpha", "beta", "GAMMA delta", "épsilon", "zeta-eta", "Θeta", "x" * 40, "12345"]
    cats = []
    for _ in range(n):
        w = rng.choice(words)
        # ASCII white space around and inside, mixed case: normalised by the spec
        pad = rng.choice(["", " ", "\t", "  "])
        cats.append(pad + str(w).replace(" ", rng.choice([" ", "   ", "\t"])) + pad[::-1])
    when = t0 + rng.integers(0, 365 * 86400 * 1000, n)
    rows = []
    for i in range(n):
        rows.append({
            "id": f"e{i}",
            "user": str(rng.choice(users)),
            "ts": pd.Timestamp(int(ts[i]), unit="ms", tz="UTC").strftime(
                "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "x": None if np.isnan(x[i]) else float(x[i]),
            "y": None if np.isnan(y[i]) else float(y[i]),
            "cat": cats[i],
            "when": int(when[i]),
        })
    return rows


def run_features(tmp_path, rows):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    src = tmp_path / "in.jsonl"
    with src.open("w") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n")
    out = tmp_path / "out.jsonl"
    r = subprocess.run([str(MLOPSCTL), "features", "--spec", str(spec), "--jsonl", str(src),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == len(rows), r.stderr
    return {rec["event_id"]: rec for rec in recs}


def close(a, b, rel=1e-9):
    if a is None or b is None or (isinstance(b, float) and np.isnan(b)):
        return (a is None) and (b is None or np.isnan(b))
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


@pytest.mark.parametrize("seed", [1, 2, 3, 42, 2026])
def test_features_match_independent_oracles(tmp_path, seed):
    rows = make_data(seed)
    got = run_features(tmp_path, rows)
    df = pd.DataFrame(rows)
    df["t"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    df["record"] = np.arange(len(df))
    df["x"] = df["x"].astype(float)
    df["y"] = df["y"].astype(float)

    mismatches = []
    for r in rows:
        v = got[r["id"]]["values"]
        # ASCII white space collapsed; Unicode simple case mapping, char by char
        # (str.lower() of one character; full mappings such as 'İ' are out of scope)
        cat = " ".join(re.split(ASCII_WS, r["cat"].strip(" \t\n\r\f\v")))
        cat = "".join(c.lower() if len(c.lower()) == 1 else c for c in cat)
        expect = {
            "cat": cat,
            "b": None if r["x"] is None else int(np.digitize(r["x"], BOUNDARIES)),
            **{f"h{n}": abs(murmurhash3_32(cat, seed=0)) % n for n in BUCKETS},
        }
        t = pd.Timestamp(r["ts"])
        expect.update({"ev_hour": t.hour, "ev_dow": t.day_of_week, "ev_day": t.day,
                       "ev_month": t.month, "ev_year": t.year,
                       "when_hour": pd.Timestamp(r["when"], unit="ms", tz="UTC").hour})
        for k, want in expect.items():
            if v[k] != want:
                mismatches.append((r["id"], k, v[k], want))
        lx = None if r["x"] is None or r["x"] <= -1 else float(np.log1p(r["x"]))
        q = None
        if r["x"] is not None and r["y"] not in (None, 0.0):
            q = r["x"] / r["y"]
        for k, want in (("lx", lx), ("q", q)):
            if not close(v[k], want):
                mismatches.append((r["id"], k, v[k], want))

    # rolling: pandas, per entity in event-time order (ties in file order)
    df = df.sort_values(["t", "record"], kind="stable")
    df["one"] = 1.0
    for w, secs in WINDOWS.items():
        win = pd.Timedelta(seconds=secs)
        for user, g in df.groupby("user", sort=False):
            g = g.set_index("t")
            cnt = g["one"].rolling(win, closed="right").sum()
            sm = g["x"].rolling(win, closed="right").sum()
            mn = g["y"].rolling(win, closed="right").mean()
            for i, eid in enumerate(g["id"]):
                v = got[eid]["values"]
                if v[f"cnt_{w}"] != int(cnt.iloc[i]):
                    mismatches.append((eid, f"cnt_{w}", v[f"cnt_{w}"], cnt.iloc[i]))
                for k, series in ((f"sum_{w}", sm), (f"mean_{w}", mn)):
                    want = series.iloc[i]
                    # pandas: a window whose values are all NaN gives NaN, ours null
                    if not close(v[k], None if np.isnan(want) else float(want)):
                        mismatches.append((eid, k, v[k], want))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"


def test_features_refuses_what_the_stream_refuses(tmp_path):
    rows = make_data(7, n=50)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({k: v for k, v in r.items() if v is not None}) for r in rows]
    lines[3] = '{"id": "bad", "ts": '                       # bad_json
    lines[5] = lines[4]                                      # duplicate_event
    lines[7] = json.dumps({"id": "n1", "user": "u1", "ts": "2026-01-01T00:00:00Z",
                           "x": "abc"})                      # wrong_type
    lines[9] = "[1, 2]"                                      # not_object
    src.write_text("\n".join(lines) + "\n")
    dlq = tmp_path / "dlq.jsonl"
    r = subprocess.run([str(MLOPSCTL), "features", "--spec", str(spec), "--jsonl", str(src),
                        "--out", str(tmp_path / "out.jsonl"), "--dlq", str(dlq)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    reasons = {json.loads(line)["source"]["record"]: json.loads(line)["reason"]
               for line in dlq.read_text().splitlines()}
    assert reasons == {4: "bad_json", 6: "duplicate_event", 8: "wrong_type", 10: "not_object"}
    out = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(out) == 46
    assert "46 rows" in r.stderr and "4 refused" in r.stderr


def test_csv_input_gives_the_same_features_as_jsonl(tmp_path):
    rows = make_data(11, n=400)
    rows[0]["cat"] = 'comma, "quotes" and\na newline'
    via_jsonl = run_features(tmp_path, rows)
    src = tmp_path / "in.csv"
    cols = ["id", "user", "ts", "x", "y", "cat", "when"]
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in cols])
    out = tmp_path / "csv.jsonl"
    res = subprocess.run([str(MLOPSCTL), "features", "--spec", str(tmp_path / "spec.json"),
                          "--csv", str(src), "--out", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    via_csv = {json.loads(line)["event_id"]: json.loads(line)
               for line in out.read_text().splitlines()}
    assert via_csv.keys() == via_jsonl.keys()
    for eid, rec in via_csv.items():
        assert rec["values"] == via_jsonl[eid]["values"], eid
    assert via_csv["e0"]["values"]["cat"] == 'comma, "quotes" and a newline'
