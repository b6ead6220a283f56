"""Shared fixtures for the lifecycle tests: run the real binaries as
subprocesses, read their JSON log lines, find their ports."""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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
    return ["--model", str(model)]


REQUIRED_ARGS["scorer"] = _scorer_args()


def binary(name):
    path = BUILD / ("cli/mlopsctl" if name == "mlopsctl" else f"services/{name}/mlops-{name}")
    assert path.exists(), f"{path} is not built (cmake --build {BUILD})"
    return str(path)


class Proc:
    """A running service: its process, its parsed log lines, its port."""

    def __init__(self, name, args=(), env=None):
        self.name = name
        self.lines = []
        self.raw = []
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
        full_env.update(env or {})
        self.p = subprocess.Popen([binary(name), *REQUIRED_ARGS.get(name, []), *args],
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=full_env, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.p.stderr:
            self.raw.append(line)
            self.lines.append(json.loads(line))  # every line must be JSON

    def wait_log(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in list(self.lines):
                if pred(ln):
                    return ln
            if self.p.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: no matching log line; got {self.raw}")

    @property
    def port(self):
        up = self.wait_log(lambda ln: ln.get("msg") == f"mlops-{self.name} up")
        return up["metrics_port"]

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.headers.get("Content-Type"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        rc = self.p.wait(timeout=timeout)
        self._reader.join(timeout=5)
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
        if pr.p.poll() is None:
            pr.p.kill()
            pr.p.wait()
