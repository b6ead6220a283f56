"""`mlopsctl spec infer|check|diff` (cli/spec_cmd.c).

infer runs on a generated CSV whose column types are known by construction
and must give the types, required flags, missing policies, categories, case
rule and ranges that its documented rules (`spec infer --help`) say, the
ranges recomputed here from the data; the spec must validate against
schemas/feature_spec.schema.json and `mlopsctl features` must accept every
row. On the two real example datasets (examples/titanic, examples/creditcard,
made by their make_data.sh; skipped only when R or its packages are absent)
infer and the committed specs must accept every row, and the values that
`features` writes must match pandas reading the same CSV: the same missing
cells per field (kept or imputed as the spec says), the same numbers and
categories. Then spec diff verdicts and exit codes, and bad inputs."""
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
MLOPSCTL = BUILD / "cli" / "mlopsctl"
SCHEMA = json.loads((ROOT / "schemas" / "feature_spec.schema.json").read_text())

EXIT_OK, EXIT_USAGE, EXIT_BREAKING = 0, 2, 3


def run(*args, timeout=120):
    return subprocess.run([str(MLOPSCTL), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def infer(csv, *flags, out=None):
    out = out or csv.with_suffix(".spec.json")
    r = run("spec", "infer", csv, "--out", out, *flags)
    assert r.returncode == EXIT_OK, r.stderr
    return json.loads(out.read_text()), out


def features(spec, csv, tmp_path):
    """Run `mlopsctl features`; returns ({event_id: values}, dlq records)."""
    out, dlq = tmp_path / "features.jsonl", tmp_path / "dlq.jsonl"
    r = run("features", "--spec", spec, "--csv", csv, "--out", out, "--dlq", dlq)
    assert r.returncode == EXIT_OK, r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    refused = [json.loads(line) for line in dlq.read_text().splitlines()]
    return {rec["event_id"]: rec["values"] for rec in recs}, refused


def widened(lo, hi, integer):
    """The range rule as `spec infer --help` states it."""
    span = hi - lo
    if not span > 0:
        span = max(abs(hi), 1.0)
    a, b = lo - span / 2, hi + span / 2
    if lo >= 0 and a < 0:
        a = 0.0
    if hi <= 0 and b > 0:
        b = 0.0
    k = math.floor(math.log10(span)) - 1
    if integer and k < 0:
        k = 0
    if k >= 0:
        step = 10.0 ** k
        return math.floor(a / step) * step, math.ceil(b / step) * step
    scale = 10.0 ** -k
    return math.floor(a * scale) / scale, math.ceil(b * scale) / scale


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


# ---- infer on generated data with known types --------------------------------------------


def make_known(seed, n=600):
    """A CSV whose columns each have one type by construction. Returns the
    frame (strings as written, None = empty cell) and the expectations."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-03-01T00:00:00Z")

    def holes(values, share):
        return [None if rng.random() < share else v for v in values]

    ints = [str(int(x)) for x in rng.integers(-40, 900, n)]
    nums = [f"{x:.4f}" for x in rng.normal(12.5, 4.0, n)]
    colors = ["Red", "red", "RED", "Blue", "blue", "Green"]
    many = [f"item-{i}" for i in range(75)]
    df = pd.DataFrame({
        "event_id": [f"ev{i:05d}" for i in range(n)],
        "customer_id": [f"c{int(x)}" for x in rng.integers(0, 40, n)],
        "event_time": [(t0 + pd.Timedelta(seconds=int(s))).strftime("%Y-%m-%dT%H:%M:%SZ")
                       for s in np.sort(rng.integers(0, 30 * 86400, n))],
        "count": ints,                                            # integer, required
        "amount": holes(nums, 0.1),                               # numeric, missing
        "score": holes(ints, 0.05),                               # integer, missing
        "flag": [str(int(x)) for x in rng.integers(0, 2, n)],     # boolean (0/1)
        "active": holes([str(rng.choice(["yes", "no", "Yes", "NO"])) for _ in range(n)], 0.1),
        "color": holes([str(rng.choice(colors)) for _ in range(n)], 0.08),  # case differs
        "plan": [str(rng.choice(["basic", "pro", "team"])) for _ in range(n)],
        "sku": [str(rng.choice(many)) for _ in range(n)],         # > 50 distinct values
        "zip": [f"{int(x):05d}" for x in rng.integers(0, 3000, n)],  # leading zeros: code
        "signup": holes([(t0 - pd.Timedelta(days=int(d))).strftime("%Y-%m-%d")
                         for d in rng.integers(0, 900, n)], 0.2),  # timestamp (dates)
        "churned": [str(rng.choice(["yes", "no"])) for _ in range(n)],
    })
    # the one cell that makes "sku" have more than 50 values is guaranteed
    df.loc[: len(many) - 1, "sku"] = many
    df.loc[0, "color"] = "Red"
    df.loc[1, "color"] = "red"
    expect = {
        "count": ("integer", True), "amount": ("numeric", False), "score": ("integer", False),
        "flag": ("boolean", True), "active": ("boolean", False),
        "color": ("categorical", False), "plan": ("categorical", True),
        "sku": ("categorical", True), "zip": ("categorical", True),
        "signup": ("timestamp", False),
    }
    return df, expect


def write_csv(df, path):
    df.to_csv(path, index=False, na_rep="")
    return path


@pytest.mark.parametrize("seed", [1, 7, 2026])
def test_infer_known_types(tmp_path, seed):
    df, expect = make_known(seed)
    csv = write_csv(df, tmp_path / "known.csv")
    spec, path = infer(csv, "--label", "churned")
    jsonschema.validate(spec, SCHEMA)

    assert (spec["entity"], spec["event_id"], spec["event_time"]) == \
        ("customer_id", "event_id", "event_time")
    assert spec["label"] == {"field": "churned", "positive": "yes"}
    assert spec["name"] == "known"
    fields = {f["name"]: f for f in spec["fields"]}
    assert list(fields) == list(expect), "one field per column, in file order, ids and label out"
    for name, (typ, required) in expect.items():
        f = fields[name]
        assert f["type"] == typ, name
        # required exactly when no cell is empty (as pandas counts them)
        assert f.get("required", False) == (not df[name].isna().any()) == required, name
        if not required:
            want = {"integer": "median", "numeric": "median", "categorical": "mode",
                    "boolean": "mode", "timestamp": "keep"}[typ]
            assert f["missing"] == want, name
        if typ in ("integer", "numeric"):
            x = pd.to_numeric(df[name]).dropna()
            lo, hi = widened(x.min(), x.max(), typ == "integer")
            assert close(f["min"], lo) and close(f["max"], hi), (name, f, lo, hi)
            assert f["min"] <= x.min() and f["max"] >= x.max()
        else:
            assert "min" not in f and "max" not in f, name

    # categories: listed (normalised, sorted) when at most 50, case lowered when
    # two differ only by case
    color = df["color"].dropna()
    assert fields["color"]["case"] == "lower"
    assert fields["color"]["values"] == sorted(set(color.str.lower()))
    assert fields["color"]["unknown"] == "dlq"
    assert fields["plan"]["values"] == sorted(set(df["plan"])) and "case" not in fields["plan"]
    assert "values" not in fields["sku"] and fields["sku"]["unknown"] == "keep"
    assert fields["zip"]["values"] if df["zip"].nunique() <= 50 else "values" not in fields["zip"]

    # every row passes the inferred spec, and what features writes matches the CSV
    got, refused = features(path, csv, tmp_path)
    assert not refused and len(got) == len(df)
    for name in expect:
        nulls = sum(got[e][name] is None for e in df["event_id"])
        assert nulls == df[name].isna().sum(), name
    for _, row in df.iterrows():
        v = got[row["event_id"]]
        if pd.notna(row["color"]):
            assert v["color"] == row["color"].lower()
        assert v["flag"] == int(row["flag"])
        if pd.notna(row["active"]):
            assert v["active"] == int(row["active"].lower() == "yes")
        if pd.notna(row["signup"]):
            assert v["signup"] == pd.Timestamp(row["signup"], tz="UTC").value // 10**6
        assert v["zip"] == row["zip"]

    # the same input gives the same bytes
    again = tmp_path / "again.json"
    infer(csv, "--label", "churned", out=again)
    assert again.read_bytes() == path.read_bytes()


def test_infer_max_categories_lists_more_values(tmp_path):
    df, _ = make_known(3)
    csv = write_csv(df, tmp_path / "known.csv")
    spec, _ = infer(csv, "--label", "churned", "--max-categories", "100")
    sku = next(f for f in spec["fields"] if f["name"] == "sku")
    assert sku["values"] == sorted(set(df["sku"])) and sku["unknown"] == "dlq"


def test_infer_needs_ids_or_the_flags(tmp_path):
    csv = tmp_path / "plain.csv"
    csv.write_text("a,b,when,x\nk1,r1,2026-01-01T00:00:00Z,1.5\nk2,r2,2026-01-02T00:00:00Z,2\n")
    r = run("spec", "infer", csv)
    assert r.returncode == EXIT_USAGE
    assert "--entity COL" in r.stderr and "--event-id COL" in r.stderr
    assert "plain.csv" in r.stderr and "columns: a, b, when, x" in r.stderr
    # the event time was found (the one timestamp column), so it is not asked for
    assert "--event-time" not in r.stderr
    spec, path = infer(csv, "--entity", "a", "--event-id", "b")
    assert (spec["entity"], spec["event_id"], spec["event_time"]) == ("a", "b", "when")
    assert [f["name"] for f in spec["fields"]] == ["x"]
    jsonschema.validate(spec, SCHEMA)
    got, refused = features(path, csv, tmp_path)
    assert len(got) == 2 and not refused

    r = run("spec", "infer", csv, "--entity", "nope", "--event-id", "b")
    assert r.returncode == EXIT_USAGE and "--entity 'nope': no such column" in r.stderr
    r = run("spec", "infer", csv, "--entity", "a", "--event-id", "b", "--event-time", "a")
    assert r.returncode == EXIT_USAGE and "--event-time 'a': the column is already used" in r.stderr


def test_infer_refuses_ids_features_would_refuse(tmp_path):
    csv = tmp_path / "dup.csv"
    csv.write_text("event_id,user_id,ts,x\ne1,u1,2026-01-01,1\ne2,u1,2026-01-02,2\n"
                   "e1,u2,2026-01-03,3\n")
    r = run("spec", "infer", csv)
    assert r.returncode == EXIT_USAGE
    assert "repeats 'e1' at records 2 and 4" in r.stderr and "--event-id" in r.stderr
    csv.write_text("event_id,user_id,ts,x\ne1,u1,2026-01-01,1\ne2,u1,not a time,2\n")
    r = run("spec", "infer", csv, "--event-time", "ts")
    assert r.returncode == EXIT_USAGE and "'not a time' at record 3" in r.stderr


def test_infer_label_positive(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("event_id,user_id,ts,x,y\ne1,u1,2026-01-01,1,cat\ne2,u1,2026-01-02,2,dog\n")
    r = run("spec", "infer", csv, "--label", "y")
    assert r.returncode == EXIT_USAGE and "--positive" in r.stderr and "'cat'" in r.stderr
    r = run("spec", "infer", csv, "--label", "y", "--positive", "cow")
    assert r.returncode == EXIT_USAGE and "not a value of column 'y'" in r.stderr
    spec, _ = infer(csv, "--label", "y", "--positive", "dog")
    assert spec["label"] == {"field": "y", "positive": "dog"}


BAD_CSV = {
    "empty": ("", "empty file"),
    "header_only": ("event_id,user_id,ts,x\n", "no data rows"),
    "ragged": ("event_id,user_id,ts,x\ne1,u1,2026-01-01,1\ne2,u1,2026-01-02\n",
               "record 3 has 3 fields, the header has 4"),
    "named_twice": ("event_id,user_id,ts,x,x\ne1,u1,2026-01-01,1,2\n",
                    "column 'x' is named twice"),
    "unnamed_column": ("event_id,user_id,ts,\ne1,u1,2026-01-01,1\n", "column 4 has no name"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_infer_bad_input(tmp_path, case):
    text, message = BAD_CSV[case]
    csv = tmp_path / f"{case}.csv"
    csv.write_text(text)
    out = tmp_path / "out.json"
    r = run("spec", "infer", csv, "--out", out)
    assert r.returncode == EXIT_USAGE, r.stderr
    assert message in r.stderr and f"{case}.csv" in r.stderr
    assert not out.exists()


def test_infer_bad_utf8(tmp_path):
    csv = tmp_path / "bytes.csv"
    csv.write_bytes(b"event_id,user_id,ts,x\ne1,u1,2026-01-01,caf\xe9\n")
    r = run("spec", "infer", csv)
    assert r.returncode == EXIT_USAGE
    assert "record 2: column 'x' is not valid UTF-8" in r.stderr


def test_infer_byte_order_mark(tmp_path):
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbfevent_id,user_id,ts,x\ne1,u1,2026-01-01,1\n")
    r = run("spec", "infer", csv)
    assert r.returncode == EXIT_USAGE and "byte order mark" in r.stderr
    csv.write_bytes(csv.read_bytes()[3:])
    infer(csv)


def test_infer_warns_when_na_text_hides_a_number(tmp_path):
    csv = tmp_path / "na.csv"
    csv.write_text("event_id,user_id,ts,x,travel\ne1,u1,2026-01-01,1.5,none\n"
                   "e2,u1,2026-01-02,NA,rarely\ne3,u2,2026-01-03,2,none\n")
    r = run("spec", "infer", csv, "--out", tmp_path / "s.json")
    assert r.returncode == EXIT_OK, r.stderr
    fields = {f["name"]: f for f in json.loads((tmp_path / "s.json").read_text())["fields"]}
    assert fields["x"]["type"] == "categorical" and fields["travel"]["type"] == "categorical"
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'NA'" in warnings[0], r.stderr  # not for 'none'


def test_infer_usage(tmp_path):
    assert run("spec", "infer").returncode == EXIT_USAGE
    assert run("spec", "infer", tmp_path / "missing.csv").returncode == EXIT_USAGE
    assert run("spec").returncode == EXIT_USAGE
    assert run("spec", "frobnicate").returncode == EXIT_USAGE
    h = run("spec", "infer", "--help")
    assert h.returncode == EXIT_OK and "Inference rules" in h.stdout and "--entity" in h.stdout


# ---- the real example datasets -------------------------------------------------------------

EXAMPLES = {
    "titanic": ("carData", "survived"),
    "creditcard": ("AER", "card"),
}


def r_package_missing(pkg):
    if not shutil.which("Rscript"):
        return "Rscript not installed (deploy/setup.sh examples)"
    r = subprocess.run(["Rscript", "-e", f"quit(status = !requireNamespace('{pkg}', "
                        "quietly = TRUE))"], capture_output=True, timeout=120)
    return None if r.returncode == 0 else f"R package {pkg} not installed (deploy/setup.sh examples)"


@pytest.fixture(scope="module")
def example_data(tmp_path_factory):
    made = {}

    def make(name):
        if name not in made:
            pkg, _ = EXAMPLES[name]
            why = r_package_missing(pkg)
            if why:  # `make test` installs them (deploy/setup.sh all): not a reason to skip
                pytest.fail(why)
            out = tmp_path_factory.mktemp(name) / "data.csv"
            r = subprocess.run([str(ROOT / "examples" / name / "make_data.sh"), str(out)],
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            made[name] = out
        return made[name]
    return make


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_make_data_is_deterministic(tmp_path, example_data, name):
    first = example_data(name)
    again = tmp_path / "again.csv"
    r = subprocess.run([str(ROOT / "examples" / name / "make_data.sh"), str(again)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert again.read_bytes() == first.read_bytes()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_infer_accepts_every_row(tmp_path, example_data, name):
    csv = example_data(name)
    _, label = EXAMPLES[name]
    spec, path = infer(csv, "--label", label, "--name", name, out=tmp_path / "inferred.json")
    jsonschema.validate(spec, SCHEMA)
    df = pd.read_csv(csv)
    got, refused = features(path, csv, tmp_path)
    assert not refused and len(got) == len(df)
    # types agree with pandas' own reading of the file
    for f in spec["fields"]:
        dt = df[f["name"]].dtype
        if f["type"] in ("integer", "numeric"):
            assert pd.api.types.is_numeric_dtype(dt), f
        if pd.api.types.is_float_dtype(dt) and not df[f["name"]].dropna().mod(1).eq(0).all():
            assert f["type"] == "numeric", f
        assert f.get("required", False) == (not df[f["name"]].isna().any()), f


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_committed_spec(tmp_path, example_data, name):
    csv = example_data(name)
    spec_path = ROOT / "examples" / name / "spec.json"
    spec = json.loads(spec_path.read_text())
    jsonschema.validate(spec, SCHEMA)
    r = run("spec", "check", spec_path)
    assert r.returncode == EXIT_OK, r.stderr

    df = pd.read_csv(csv)  # pandas' own missing-value rules (empty cells, "NA", ...)
    got, refused = features(spec_path, csv, tmp_path)
    assert not refused, refused[:3]
    assert set(got) == set(df[spec["event_id"]])
    assert spec["label"]["field"] in df and spec["label"]["field"] not in next(iter(got.values()))

    missing_total = 0
    by_id = df.set_index(spec["event_id"])
    for f in spec["fields"]:
        col = by_id[f["name"]]
        na = col.isna()
        missing_total += int(na.sum())
        out = pd.Series({e: got[e][f["name"]] for e in by_id.index})
        policy = f.get("missing", "drop" if f.get("required") else "keep")
        if policy == "drop":
            assert na.sum() == 0, f["name"]
        elif policy == "constant":
            assert (out[na] == f["constant"]).all(), f["name"]
        else:  # keep, and mean/median/mode, which the model imputes: null here
            assert out[na].isna().all() and out[~na].notna().all(), f["name"]
            assert int(out.isna().sum()) == int(na.sum()), f["name"]
        present = col[~na]
        if f["type"] in ("integer", "numeric"):
            assert np.allclose(out[~na].astype(float), present.astype(float), rtol=1e-12,
                               atol=0), f["name"]
        elif f["type"] == "boolean":
            assert (out[~na] == present.map({"yes": 1, "no": 0, True: 1, False: 0,
                                             1: 1, 0: 0})).all(), f["name"]
        elif f["type"] == "categorical":
            want = present.astype(str).str.strip()
            if f.get("case") == "lower":
                want = want.str.lower()
            assert (out[~na] == want).all(), f["name"]
    assert missing_total > 0, "each example has missing values to keep or impute"


def test_example_readme_counts_match_the_data(example_data):
    # the figures the READMEs state, against pandas on the made files
    t = pd.read_csv(example_data("titanic"))
    c = pd.read_csv(example_data("creditcard"))
    readme = (ROOT / "examples" / "README.md").read_text()
    assert f"| {len(t):,} | `age`: {t['age'].isna().sum()} |" in readme
    assert f"| {len(c):,} | `age`: {c['age'].isna().sum()} |" in readme


# ---- diff and check ----------------------------------------------------------------------


BASE = {
    "schema": "feature_spec/1", "name": "d", "version": 1, "entity": "u",
    "event_id": "id", "event_time": "ts",
    "fields": [{"name": "x", "type": "numeric", "min": 0, "max": 10},
               {"name": "c", "type": "categorical", "values": ["a", "b"]}],
}


def variant(tmp_path, name, change):
    doc = json.loads(json.dumps(BASE))
    change(doc)
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize("name,change,verdict,code", [
    ("same", lambda d: None, "identical", EXIT_OK),
    ("add_optional", lambda d: d["fields"].append({"name": "y", "type": "integer"}),
     "compatible: same version can read both", EXIT_OK),
    ("widen", lambda d: d["fields"][0].update(max=100),
     "compatible: same version can read both", EXIT_OK),
    ("add_value", lambda d: d["fields"][1]["values"].append("z"),
     "compatible: same version can read both", EXIT_OK),
    ("remove", lambda d: d["fields"].pop(0), "breaking: needs a new version", EXIT_BREAKING),
    ("retype", lambda d: d["fields"][0].update(type="integer"),
     "breaking: needs a new version", EXIT_BREAKING),
    ("add_required", lambda d: d["fields"].append({"name": "y", "type": "integer",
                                                   "required": True}),
     "breaking: needs a new version", EXIT_BREAKING),
    ("narrow", lambda d: d["fields"][0].update(max=5), "breaking: needs a new version",
     EXIT_BREAKING),
    ("rename_spec", lambda d: d.update(name="other"), "breaking: needs a new version",
     EXIT_BREAKING),
])
def test_diff_verdicts(tmp_path, name, change, verdict, code):
    old = variant(tmp_path, "old", lambda d: None)
    new = variant(tmp_path, name, change)
    r = run("spec", "diff", old, new)
    assert r.returncode == code, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == f"verdict: {verdict}"
    if code == EXIT_BREAKING:
        assert any(line.startswith("breaking: ") for line in lines[:-1])
        assert "hint: NEW keeps version 1" in r.stdout


def test_diff_bad_input(tmp_path):
    old = variant(tmp_path, "old", lambda d: None)
    bad = variant(tmp_path, "bad", lambda d: d["fields"][0].update(type="float"))
    r = run("spec", "diff", old, bad)
    assert r.returncode == EXIT_USAGE and "fields[0].type: 'float'" in r.stderr
    assert run("spec", "diff", old).returncode == EXIT_USAGE
    assert run("spec", "diff", old, tmp_path / "absent.json").returncode == 1


def test_check(tmp_path):
    ok = variant(tmp_path, "ok", lambda d: d.update(derived=[
        {"name": "c1", "op": "one_hot", "input": "c"}]))
    r = run("spec", "check", ok)
    assert r.returncode == EXIT_OK, r.stderr
    assert "columns (4): x, c, c1__a, c1__b" in r.stdout
    bad = variant(tmp_path, "bad", lambda d: d.pop("entity"))
    r = run("spec", "check", bad)
    assert r.returncode == EXIT_USAGE and "'entity' is required" in r.stderr
