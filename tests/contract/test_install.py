"""Contract: `make install` (cmake --install) gives a working install: the binaries, the
schemas and examples, and systemd units that `systemd-analyze verify` accepts, whose
ExecStart lines each installed binary accepts with its installed example config and its
credential files (run with --print-config: exit 0, every credential read, no secret
printed). Needs the build (MLOPS_BUILD_DIR, default build/).

    .state/venv/bin/python -m pytest tests/contract/test_install.py -q
"""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR") or REPO / "build")
SERVICES = ["registry", "ingest", "trainer", "scorer", "monitor", "notify"]


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix")
    run = subprocess.run(["cmake", "--install", str(BUILD), "--prefix", str(root)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return root


def unit_file(prefix, name):
    return prefix / "lib" / "systemd" / "system" / name


def unit_settings(path):
    """(key, value) pairs of a unit file, in order (comments and sections left out)."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def test_install_puts_everything_in_place(prefix):
    for svc in SERVICES:
        binary = prefix / "bin" / f"mlops-{svc}"
        assert os.access(binary, os.X_OK), binary
        assert unit_file(prefix, f"mlops-{svc}.service").is_file()
        assert (prefix / "share" / "mlops" / "conf" / f"{svc}.conf").is_file()
    assert os.access(prefix / "bin" / "mlopsctl", os.X_OK)
    assert unit_file(prefix, "mlops.target").is_file()
    shipped = {p.name for p in (REPO / "schemas").glob("*.json")}
    assert shipped and shipped == {p.name for p in (prefix / "share/mlops/schemas").iterdir()}
    spec = prefix / "share/mlops/examples/attrition/spec.json"
    assert spec.read_text() == (REPO / "examples/attrition/spec.json").read_text()
    version = subprocess.run([str(prefix / "bin" / "mlopsctl"), "--version"],
                             capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip(), version


def test_target_wants_every_service(prefix):
    wants = dict(unit_settings(unit_file(prefix, "mlops.target")))["Wants"].split()
    assert sorted(wants) == sorted(f"mlops-{s}.service" for s in SERVICES)


def test_systemd_analyze_verifies_the_units(prefix):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing (Debian package systemd; deploy/setup.sh apt)"
    units = sorted(str(p) for p in unit_file(prefix, "").iterdir())
    run = subprocess.run([tool, "verify", "--man=no", *units], capture_output=True, text=True)
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr


@pytest.mark.parametrize("svc", SERVICES)
def test_each_unit_starts_its_binary_with_the_example_config(prefix, svc, tmp_path):
    settings = unit_settings(unit_file(prefix, f"mlops-{svc}.service"))
    creds = {}
    for key, value in settings:
        if key == "LoadCredential":
            name, _, source = value.partition(":")
            assert source.startswith("/etc/mlops/secrets/"), value
            secret = f"canary-{svc}-{name}-7f3a"
            (tmp_path / name).write_text(secret)
            creds[name] = secret
    exec_start = [v for k, v in settings if k == "ExecStart"]
    assert len(exec_start) == 1
    argv = shlex.split(exec_start[0])
    assert argv[0] == str(prefix / "bin" / f"mlops-{svc}")
    assert argv[1:3] == ["--config", f"/etc/mlops/{svc}.conf"]
    argv[2] = str(prefix / "share" / "mlops" / "conf" / f"{svc}.conf")
    argv = [a.replace("%d", str(tmp_path)) for a in argv]
    assert not any("%" in a for a in argv), argv  # no other specifier to stand in for
    used = {Path(a).name for a in argv if a.startswith(str(tmp_path))}
    assert used == set(creds), f"credentials loaded but not passed, or passed but not loaded"
    run = subprocess.run(argv + ["--print-config"], capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=30)
    assert run.returncode == 0, run.stderr
    for name, secret in creds.items():
        assert secret not in run.stdout + run.stderr, f"{name} printed by --print-config"
    conf = (prefix / "share" / "mlops" / "conf" / f"{svc}.conf").read_text()
    for line in conf.splitlines():
        m = re.match(r"\s*([a-z_]+)\s*=\s*(.*?)\s*$", line)
        if m:  # every example setting took effect (a value from the file, not a default)
            assert re.search(rf"^{m.group(1)} = .*# .*{svc}\.conf:\d+$", run.stdout, re.M), \
                f"{svc}.conf: {m.group(1)} not taken from the file:\n{run.stdout}"
