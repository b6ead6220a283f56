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
