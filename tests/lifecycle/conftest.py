"""Shared fixtures for the lifecycle tests: run the real binaries as
subprocesses, read their JSON log lines, find their ports."""
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from proctest import ServiceProc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
SERVICES = ["ingest", "trainer", "registry", "scorer", "monitor"]
# settings a service cannot start without (its pipeline's own inputs)
REQUIRED_ARGS = {"ingest": ["--spec", str(ROOT / "examples/attrition/spec.json")]}


def _registry_args():
    """mlops-registry needs a database: one of its own on the stack's PostgreSQL
    (created through the superuser's private socket, dropped at exit), so the
    shared database and its first admin token are never touched; and a private
    state folder for the token file it writes at first start."""
    import atexit
    import re
    import shutil
    import tempfile
    import uuid
    state = Path(os.environ.get("MLOPS_STATE_DIR", ROOT / ".state"))
    base = state / "pg-base"
    sock = state / "run/pg-socket"
    if base.exists() and base.read_text().strip() != str(state):
        sock = Path(base.read_text().strip()) / "socket"
    psql = "/usr/lib/postgresql/15/bin/psql"
    psql = psql if Path(psql).exists() else "psql"

    def admin(sql):
        cmd = [psql, "-X", "-q", "-h", str(sock), "-p", "5433", "-U", "postgres", "-d",
               "postgres", "-c", sql]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, cwd="/", capture_output=True, text=True).returncode == 0

    db = "reg_life_" + uuid.uuid4().hex[:12]
    tmp = tempfile.mkdtemp(prefix="reg-life-")
    try:
        dsn = (state / "secrets/pg_dsn").read_text().strip()
    except OSError:
        return ["--state-dir", tmp]  # no stack: the registry says why it cannot start
    if not admin(f"CREATE DATABASE {db} OWNER mlops"):
        return ["--state-dir", tmp]
    atexit.register(lambda: (admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                             shutil.rmtree(tmp, ignore_errors=True)))
    dsn = re.sub(r"/[^/?]*(\?|$)", f"/{db}\\1", dsn, count=1)
    dsn_file = Path(tmp) / "pg_dsn"
    dsn_file.write_text(dsn + "\n")
    dsn_file.chmod(0o600)
    return ["--pg-dsn-file", str(dsn_file), "--state-dir", tmp, "--no-outbox-relay"]


REQUIRED_ARGS["registry"] = _registry_args()


def _scorer_args():
    """mlops-scorer serves a model: a small logistic regression trained here
    with our own datagen and trainer (kept out of the registry)."""
    import atexit
    import shutil
    import tempfile
    tmp = Path(tempfile.mkdtemp(prefix="scorer-life-"))
    atexit.register(lambda: shutil.rmtree(tmp, ignore_errors=True))
    model = tmp / "model.json"
    try:
        subprocess.run([str(BUILD / "cli/mlopsctl"), "datagen", "attrition", "--rows", "2000",
                        "--seed", "3", "--out", str(tmp / "train.csv")], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([str(BUILD / "services/trainer/mlops-trainer"), "fit", "--data",
                        str(tmp / "train.csv"), "--spec", str(ROOT / "examples/attrition/spec.json"),
                        "--algo", "logreg", "--out", str(model)], check=True,
                       capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        pass  # not built: the scorer then says why it cannot start, and the test shows it
    return ["--model", str(model), "--http-port", "0"]


REQUIRED_ARGS["scorer"] = _scorer_args()


def binary(name):
    path = BUILD / ("cli/mlopsctl" if name == "mlopsctl" else f"services/{name}/mlops-{name}")
    assert path.exists(), f"{path} is not built (cmake --build {BUILD})"
    return str(path)


class Proc(ServiceProc):
    """A running service (tests/support/proctest.ServiceProc), strict about its log:
    every line must be JSON; get() answers (status, content type, body)."""

    def __init__(self, name, args=(), env=None):
        super().__init__(name, [binary(name), *REQUIRED_ARGS.get(name, []), *args], env)
        self.start(wait_up=False)

    def get(self, path):
        self.wait_log(lambda ln: ln.get("msg") == f"mlops-{self.name} up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.headers.get("Content-Type"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        rc = super().stop(sig, timeout)
        self._reader.join(timeout=5)
        not_json = [ln["msg"] for ln in self.lines if ln.get("level") == "raw"]
        assert not not_json, f"{self.name}: log lines that are not JSON: {not_json[:3]}"
        return rc


@pytest.fixture
def run():
    procs = []

    def start(name, *args, env=None):
        pr = Proc(name, args, env)
        procs.append(pr)
        return pr

    yield start
    for pr in procs:
        pr.close()
