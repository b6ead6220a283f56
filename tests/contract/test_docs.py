"""Contract: each service's README documents every setting the binary has (the keys of
`--print-config`, from the one table that drives parsing and --help), except the common
settings that README.md's "Configuration (every service)" section documents once; and
every metric a service registers (metrics_counter/gauge/histogram in its sources) is
named in its README, the shared clients' ones (common/) in README.md. Names may be
written `mlops_x_{a,b}_total` or, after one in full, `..._b_total`."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR") or REPO / "build")
BINARIES = {  # binary -> the README that documents it
    "services/ingest/mlops-ingest": "services/ingest/README.md",
    "services/trainer/mlops-trainer": "services/trainer/README.md",
    "services/registry/mlops-registry": "services/registry/README.md",
    "services/scorer/mlops-scorer": "services/scorer/README.md",
    "services/monitor/mlops-monitor": "services/monitor/README.md",
    "services/monitor/mlops-notify": "services/monitor/README.md",
}


def common_keys():
    text = (REPO / "README.md").read_text()
    section = text.split("## Configuration (every service)", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"Common settings:(.*?)\.\s", section, re.S)
    assert m, "README.md names no common settings"
    return set(re.findall(r"`([a-z_]+)`", m.group(1)))


def keys_of(binary):
    r = subprocess.run([str(BUILD / binary), "--print-config"], capture_output=True, text=True,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=30)
    assert r.returncode == 0, r.stderr
    return [ln.split()[0] for ln in r.stdout.splitlines() if ln and not ln.startswith("#")]


@pytest.mark.parametrize("binary", sorted(BINARIES))
def test_every_setting_is_documented(binary):
    doc = (REPO / BINARIES[binary]).read_text()
    common = common_keys()
    keys = keys_of(binary)
    assert len(keys) > len(common)
    missing = [k for k in keys if k not in common and f"`{k}`" not in doc]
    assert not missing, f"{BINARIES[binary]} does not document {missing}"


def test_common_settings_are_every_services():
    common = common_keys()
    assert common
    for binary in BINARIES:
        assert common <= set(keys_of(binary)), f"{binary} lacks a common setting"


METRIC_CALL = re.compile(r'metrics_(?:counter|gauge|histogram)\s*\(\s*[^,]+,\s*"(mlops_[a-z0-9_]+)"')


def registered(folder):
    return {n for f in (REPO / folder).rglob("*.c") for n in METRIC_CALL.findall(f.read_text())}


def documented(text):
    names = set()
    for word in re.findall(r"mlops_[a-z0-9_{},]+", text):
        m = re.fullmatch(r"([a-z0-9_]*)\{([a-z0-9_,]+)\}([a-z0-9_]*)", word)
        if m and (m.group(3) or m.group(1).endswith("_")):  # alternatives
            names |= {m.group(1) + alt + m.group(3) for alt in m.group(2).split(",")}
        elif m:  # labels: name{label,...}
            names.add(m.group(1))
        else:  # a name, maybe followed by labels with values: name{label=a|b}
            names.add(word.split("{")[0].rstrip(","))
    prefixes = {re.match(r"(mlops_[a-z]+_)", n).group(1) for n in names if re.match(r"mlops_[a-z]+_", n)}
    for tail in re.findall(r"`\.\.\._([a-z0-9_]+)`", text):
        names |= {p + tail for p in prefixes}
    return names


@pytest.mark.parametrize("svc", ["ingest", "trainer", "registry", "scorer", "monitor"])
def test_every_metric_is_documented(svc):
    names = registered(f"services/{svc}")
    assert names, f"no metrics found in services/{svc}"
    missing = sorted(names - documented((REPO / f"services/{svc}/README.md").read_text()))
    assert not missing, f"services/{svc}/README.md does not name {missing}"


def test_shared_metrics_are_documented():
    names = registered("common")
    assert len(names) >= 10
    missing = sorted(names - documented((REPO / "README.md").read_text()))
    assert not missing, f"README.md does not name {missing}"
