"""common/drift.c against SciPy (the pinned version in requirements.txt), through
`mlopsctl drift-stat`: every statistic to 1e-9 relative, every p-value to 1e-9
relative or 1e-12 absolute, on generated data over many seeds and sizes (ties,
one value, tiny and large samples), for both KS methods and SciPy's automatic
choice between them. The largest errors seen are printed at the end (run with
-s to see them) and written to $MLOPS_BUILD_DIR/drift_oracle_errors.json."""
import json
import math
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats
from scipy.spatial import distance

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
MLOPSCTL = BUILD / "cli" / "mlopsctl"

STAT_REL = 1e-9
P_REL, P_ABS = 1e-9, 1e-12

MAX_ERR = {}


def _enc(v):
    if isinstance(v, dict):
        return {k: _enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_enc(x) for x in v]
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def _dec(v):
    if v is None:
        return math.nan
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    return v


def run(reqs):
    """Send requests (dicts) to mlopsctl drift-stat, return the results."""
    data = "".join(json.dumps({k: _enc(v) for k, v in r.items()}) + "\n" for r in reqs)
    p = subprocess.run([str(MLOPSCTL), "drift-stat"], input=data, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(out) == len(reqs)
    return out


def relerr(a, b):
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def note(name, ours, ref):
    e = relerr(ours, ref)
    if name not in MAX_ERR or e > MAX_ERR[name][0]:
        MAX_ERR[name] = (e, (ours, ref))
    return e


def check_stat(name, ours, ref, ctx=""):
    ours, ref = _dec(ours), float(ref)
    e = note(name, ours, ref)
    assert e <= STAT_REL, f"{name}{ctx}: ours {ours!r} scipy {ref!r} (rel {e:.3g})"


def check_p(name, ours, ref, ctx=""):
    ours, ref = _dec(ours), float(ref)
    e = note(name, ours, ref)
    ok = e <= P_REL or abs(ours - ref) <= P_ABS
    assert ok, f"{name}{ctx}: ours {ours!r} scipy {ref!r} (rel {e:.3g})"


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    lines = [f"  {k:28s} max rel err {v[0]:.3g} (ours {v[1][0]!r}, scipy {v[1][1]!r})"
             for k, v in sorted(MAX_ERR.items())]
    print("\nmax relative errors vs SciPy:\n" + "\n".join(lines))
    try:
        (BUILD / "drift_oracle_errors.json").write_text(
            json.dumps({k: v[0] for k, v in MAX_ERR.items()}, indent=1))
    except OSError:
        pass


def sample(rng, kind, n, shift=0.0):
    if kind == "normal":
        return rng.normal(shift, 1.0, n)
    if kind == "ties":  # few distinct values
        return rng.integers(0, 8, n).astype(float) + (shift > 0.3)
    if kind == "round":  # many ties among many values
        return np.round(rng.normal(shift, 1.0, n), 1)
    if kind == "exp":
        return rng.exponential(1.0 + shift, n)
    raise ValueError(kind)


KS_SIZES = [(1, 1), (1, 2), (2, 1), (1, 7), (3, 3), (3, 5), (5, 3), (7, 11), (10, 10), (12, 18),
            (20, 35), (50, 50), (60, 45), (99, 101), (128, 256), (200, 150), (300, 1000),
            (500, 499), (1000, 1000), (1000, 37), (2000, 3000), (4000, 3999), (10000, 10000),
            (10000, 200), (10001, 300), (12000, 800), (15000, 20000), (30000, 29999)]


def ks_cases(seed_base):
    reqs, refs = [], []
    for i, (n1, n2) in enumerate(KS_SIZES):
        for j, kind in enumerate(["normal", "ties", "round", "exp"]):
            for shift in (0.0, 0.15, 0.6):
                rng = np.random.default_rng(seed_base + 1000 * i + 10 * j + int(shift * 100))
                a, b = sample(rng, kind, n1), sample(rng, kind, n2, shift)
                reqs.append({"a": a, "b": b})
                refs.append((n1, n2, kind, shift, a, b))
    return reqs, refs


@pytest.mark.parametrize("method", ["auto", "exact", "asymp"])
def test_ks_2samp_matches_scipy(method):
    reqs, refs = ks_cases(11 if method == "auto" else 23 if method == "exact" else 37)
    if method == "exact":  # SciPy's exact path is slow on the largest pairs; keep CI time down
        keep = [k for k, r in enumerate(refs) if r[0] * r[1] <= 2.5e7]
        reqs, refs = [reqs[k] for k in keep], [refs[k] for k in keep]
    for r in reqs:
        r.update(op="ks", method=method)
    out = run(reqs)
    n_exact = 0
    for res, (n1, n2, kind, shift, a, b) in zip(out, refs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want = stats.ks_2samp(a, b, method=method)
        ctx = f" n1={n1} n2={n2} {kind} shift={shift} method={method}"
        check_stat(f"ks statistic ({method})", res["statistic"], want.statistic, ctx)
        check_p(f"ks pvalue ({method})", res["pvalue"], want.pvalue, ctx)
        n_exact += res["exact"]
        if method == "auto":
            assert res["exact"] == (max(n1, n2) <= 10000), ctx
    if method == "asymp":
        assert n_exact == 0


def test_ks_many_seeds_small_and_medium():
    """Random sizes in the exact regime, many seeds, mixed ties."""
    rng = np.random.default_rng(2026)
    reqs, refs = [], []
    for s in range(400):
        n1, n2 = int(rng.integers(1, 400)), int(rng.integers(1, 400))
        kind = ["normal", "ties", "round", "exp"][s % 4]
        a, b = sample(rng, kind, n1), sample(rng, kind, n2, float(rng.uniform(0, 0.8)))
        for m in ("auto", "asymp"):
            reqs.append({"op": "ks", "a": a, "b": b, "method": m})
            refs.append((a, b, m))
    out = run(reqs)
    for res, (a, b, m) in zip(out, refs):
        want = stats.ks_2samp(a, b, method=m)
        ctx = f" n1={len(a)} n2={len(b)} method={m}"
        check_stat(f"ks statistic ({m})", res["statistic"], want.statistic, ctx)
        check_p(f"ks pvalue ({m})", res["pvalue"], want.pvalue, ctx)


def test_kstwo_sf_every_region():
    """The one-sample two-sided distribution behind the asymptotic path, over
    each region SciPy's algorithm selects (Ruben-Gambino ends, Durbin matrix,
    Pomeranz, Pelz-Good, twice the one-sided tail)."""
    ns = [1, 2, 3, 5, 10, 27, 64, 100, 139, 140, 141, 300, 1000, 4999, 20000, 99999, 100001,
          400000, 1500000]
    reqs, refs = [], []
    for n in ns:
        xs = set(np.linspace(0, 1, 41).tolist())
        for c in (0.3, 0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 9.0):
            xs.add(min(1.0, c / math.sqrt(n)))
        xs.update([0.5 / n, 0.75 / n, 1.0 / n, 1.5 / n, 1 - 1.0 / n, 0.5])
        # the Durbin-matrix region of large n: n x^1.5 <= 1.4
        xs.update(f * (1.4 / n) ** (2 / 3) for f in (0.6, 0.8, 0.95, 1.0, 1.05))
        for x in sorted(xs):
            reqs.append({"op": "kstwo_sf", "x": x, "n": n})
            refs.append((n, x))
    out = run(reqs)
    for res, (n, x) in zip(out, refs):
        check_p("kstwo.sf", res["value"], stats.kstwo.sf(x, n), f" n={n} x={x}")


def test_smirnov_matches_scipy_special():
    reqs, refs = [], []
    for n in [1, 2, 3, 7, 10, 11, 50, 140, 141, 1000, 10000, 123457, 1000001, 3000000]:
        for x in np.concatenate([np.linspace(0, 1, 23), [0.5 / n, 1.0 / n, 2.0 / n,
                                                         1 - 1.0 / n, 1.7 / math.sqrt(n)]]):
            x = float(min(max(x, 0.0), 1.0))
            reqs.append({"op": "smirnov", "n": n, "x": x})
            refs.append((n, x))
    out = run(reqs)
    for res, (n, x) in zip(out, refs):
        check_p("smirnov", res["value"], special.smirnov(n, x), f" n={n} x={x}")


def test_gammaincc_and_chi2_tail():
    reqs, refs = [], []
    for a in [0.5, 1, 1.5, 2, 3.5, 10, 49.5, 100, 1000, 5000]:
        for f in [0.001, 0.1, 0.5, 0.9, 0.99, 1.0, 1.01, 1.1, 1.5, 2, 4, 10]:
            x = a * f
            reqs.append({"op": "gammaincc", "a": a, "x": x})
            refs.append(("gammaincc", a, x))
            reqs.append({"op": "chi2_sf", "df": 2 * a, "x": 2 * x})
            refs.append(("chi2_sf", 2 * a, 2 * x))
    out = run(reqs)
    for res, (kind, a, x) in zip(out, refs):
        want = special.gammaincc(a, x) if kind == "gammaincc" else special.chdtrc(a, x)
        check_p(kind, res["value"], want, f" a={a} x={x}")


def test_chisquare_matches_scipy():
    rng = np.random.default_rng(5)
    reqs, refs = [], []
    for s in range(300):
        k = int(rng.integers(2, 60)) if s % 10 else int(rng.integers(100, 400))
        probs = rng.dirichlet(np.ones(k))
        n = int(rng.integers(5, 20000))
        ref_counts = rng.multinomial(n, probs).astype(float)
        cur_n = int(rng.integers(5, 20000))
        shifted = probs * rng.uniform(0.7, 1.3, k) if s % 3 else probs
        obs = rng.multinomial(cur_n, shifted / shifted.sum()).astype(float)
        mask = ref_counts > 0
        if s % 7 == 0:
            mask[:] = True  # keep empty expected cells: statistic inf, p 0, as SciPy
        exp = ref_counts[mask] * (obs[mask].sum() / ref_counts[mask].sum())
        obs = obs[mask]
        if len(obs) < 2:
            continue
        reqs.append({"op": "chisquare", "obs": obs, "exp": exp})
        refs.append((obs, exp))
    out = run(reqs)
    for res, (obs, exp) in zip(out, refs):
        with np.errstate(divide="ignore", invalid="ignore"):
            want = stats.chisquare(obs, exp)
        check_stat("chisquare statistic", res["statistic"], want.statistic, f" k={len(obs)}")
        check_p("chisquare pvalue", res["pvalue"], want.pvalue, f" k={len(obs)}")


def test_wasserstein_and_normed_matches_scipy():
    rng = np.random.default_rng(9)
    reqs, refs = [], []
    for s in range(200):
        nu, nv = int(rng.integers(1, 3000)), int(rng.integers(1, 3000))
        kind = ["normal", "ties", "round", "exp"][s % 4]
        u, v = sample(rng, kind, nu), sample(rng, kind, nv, float(rng.uniform(0, 1)))
        reqs.append({"op": "wasserstein", "u": u, "v": v})
        reqs.append({"op": "wasserstein_norm", "ref": u, "cur": v})
        reqs.append({"op": "std", "x": u})
        refs.append((u, v))
    out = run(reqs)
    for s, (u, v) in enumerate(refs):
        w = stats.wasserstein_distance(u, v)
        check_stat("wasserstein", out[3 * s]["value"], w)
        check_stat("wasserstein_norm", out[3 * s + 1]["value"], w / max(float(np.std(u)), 0.001))
        if np.std(u) > 0:
            check_stat("std", out[3 * s + 2]["value"], np.std(u))


def test_jensenshannon_entropy_psi_match_scipy():
    rng = np.random.default_rng(13)
    reqs, refs = [], []
    for s in range(300):
        k = int(rng.integers(1, 50))
        p = rng.dirichlet(np.ones(k)) * rng.uniform(0.5, 3)
        q = rng.dirichlet(np.ones(k)) * rng.uniform(0.5, 3)
        if s % 3 == 0 and k > 2:
            p[rng.integers(0, k)] = 0.0
        if s % 5 == 0 and k > 2:
            q[rng.integers(0, k)] = 0.0
        base = [None, 2.0, 10.0][s % 3]
        r = {"op": "jensenshannon", "p": p, "q": q}
        e = {"op": "entropy", "p": p, "q": q}
        if base:
            r["base"] = e["base"] = base
        pf, qf = p + 1e-4, q + 1e-4  # PSI needs no empty bin
        reqs += [r, e, {"op": "psi", "p": pf, "q": qf}]
        refs.append((p, q, base, pf, qf))
    out = run(reqs)
    for s, (p, q, base, pf, qf) in enumerate(refs):
        js = distance.jensenshannon(p, q, base)
        # sqrt of a sum of rounding noise when p == q: compare js^2 there
        if js > 1e-6:
            check_stat("jensenshannon", out[3 * s]["value"], js)
        else:
            assert abs(_dec(out[3 * s]["value"]) ** 2 - js ** 2) < 1e-15
        check_stat("entropy (KL)", out[3 * s + 1]["value"], stats.entropy(p, q, base=base))
        check_stat("psi", out[3 * s + 2]["value"], np.sum((pf - qf) * np.log(pf / qf)))


def test_ztest_matches_normal_tail():
    rng = np.random.default_rng(17)
    reqs, refs = [], []
    for _ in range(200):
        n1, n2 = int(rng.integers(2, 5000)), int(rng.integers(2, 5000))
        x1, x2 = int(rng.integers(1, n1)), int(rng.integers(0, n2 + 1))
        reqs.append({"op": "ztest", "x1": x1, "n1": n1, "x2": x2, "n2": n2})
        refs.append((x1, n1, x2, n2))
    out = run(reqs)
    for res, (x1, n1, x2, n2) in zip(out, refs):
        p1, p2 = x1 / n1, x2 / n2
        pp = (x1 + x2) / (n1 + n2)
        z = (p1 - p2) / math.sqrt(pp * (1 - pp) * (1 / n1 + 1 / n2))
        check_stat("ztest z", res["z"], z)
        check_p("ztest pvalue", res["pvalue"], 2 * stats.norm.sf(abs(z)))


def test_sturges_edges_match_numpy():
    rng = np.random.default_rng(19)
    reqs, refs = [], []
    for s in range(100):
        x = sample(rng, ["normal", "ties", "round", "exp"][s % 4], int(rng.integers(1, 5000)))
        reqs.append({"op": "sturges", "x": x})
        refs.append(x)
    out = run(reqs)
    for res, x in zip(out, refs):
        want = np.histogram_bin_edges(x, bins="sturges")
        got = [_dec(v) for v in res["edges"]]
        assert len(got) == len(want)
        assert got == want.tolist()


def test_bad_requests_name_the_line_and_field():
    data = '{"op":"ks","a":[1,2],"b":"x"}\n{"op":"ks","a":[],"b":[1]}\n[1]\n{"op":"nope"}\n'
    p = subprocess.run([str(MLOPSCTL), "drift-stat"], input=data, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(lines) == 4 and all("error" in r for r in lines)
    assert "<stdin>:1: b:" in p.stderr
    assert "<stdin>:2:" in p.stderr and "empty" in p.stderr
    assert "<stdin>:3:" in p.stderr
    assert "<stdin>:4: op:" in p.stderr


def test_anderson_ksamp_matches_scipy():
    rng = np.random.default_rng(23)
    reqs, refs = [], []
    for s in range(200):
        n1, n2 = int(rng.integers(2, 1500)), int(rng.integers(2, 1500))
        kind = ["normal", "ties", "round", "exp"][s % 4]
        a, b = sample(rng, kind, n1), sample(rng, kind, n2, float(rng.uniform(0, 0.6)))
        if len(np.unique(np.concatenate([a, b]))) < 2:
            continue
        reqs.append({"op": "anderson", "a": a, "b": b})
        refs.append((a, b))
    out = run(reqs)
    for res, (a, b) in zip(out, refs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = stats.anderson_ksamp([a, b], variant="midrank")
        ctx = f" n1={len(a)} n2={len(b)}"
        check_stat("anderson statistic", res["statistic"], want.statistic, ctx)
        check_p("anderson pvalue", res["pvalue"], want.pvalue, ctx)
