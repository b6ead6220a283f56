"""Helpers for tests that run the suite's real binaries as processes: free ports, the
HTTP endpoints, waiting, a service process with its log in a file or read as it comes,
a private Redis."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REDIS_SERVER = next((p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
                     if Path(p).exists()), "redis-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    """The body of GET path on 127.0.0.1:port ('' when nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.read().decode(errors="replace")
    except OSError:
        return ""


def metric(port, name):
    """The sum of a metric's series on /metrics, or None when it is not there."""
    total = None
    for line in http_get(port, "/metrics").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def clean_env(**extra):
    """The caller's environment without MLOPS_* (a developer's settings must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(extra)
    return env


def run(cmd, env=None, timeout=120):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                       env=env or clean_env())
    assert r.returncode == 0, f"{cmd[0]} {cmd[1:3]}: {r.stdout[-1000:]} {r.stderr[-2000:]}"
    return r.stdout


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Proc:
    """A service binary with its stderr (the JSON log) appended to a file."""

    def __init__(self, name, argv, log, env):
        self.name, self.argv, self.log, self.env = name, [str(a) for a in argv], Path(log), env
        self.proc = None

    def start(self):
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=err,
                                         env=self.env)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ServiceProc:
    """A service binary whose JSON log (stderr) is read as it comes: `raw` has the lines,
    `lines` (also `logs`) the parsed objects (a line that is not JSON as {"level": "raw",
    "msg": line}); its metrics port is the one of its "mlops-NAME up" line. The
    environment is the caller's without MLOPS_*, plus `env`."""

    def __init__(self, name, argv, env=None, up_timeout=30):
        self.name = name
        self.args = self.argv = [str(a) for a in argv]  # one list: edit before start()
        self.env = env or {}
        self.up_timeout = up_timeout
        self.proc, self.port = None, None
        self.raw, self.lines = [], []

    @property
    def logs(self):
        return self.lines

    def start(self, wait_up=True):
        self.raw, self.lines, self.port = [], [], None
        self.proc = subprocess.Popen(self.argv, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True,
                                     env=clean_env(**self.env))
        self._reader = threading.Thread(target=self._read, args=(self.proc, self.raw,
                                                                 self.lines), daemon=True)
        self._reader.start()
        if wait_up:
            deadline = time.monotonic() + self.up_timeout
            while self.port is None and time.monotonic() < deadline:
                assert self.proc.poll() is None or self._reader.is_alive(), \
                    f"{self.name} exited: {self.raw[-8:]}"
                time.sleep(0.05)
            assert self.port, f"{self.name} did not start: {self.raw[-8:]}"
        return self

    def _read(self, proc, raw, lines):
        for line in proc.stderr:
            raw.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"level": "raw", "msg": line}
            lines.append(obj)
            if obj.get("msg") == f"mlops-{self.name} up" and proc is self.proc:
                self.port = obj["metrics_port"]

    def wait_log(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in list(self.lines):
                if pred(ln):
                    return ln
            if self.proc.poll() is not None and not self._reader.is_alive():
                for ln in list(self.lines):
                    if pred(ln):
                        return ln
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no matching log line; got {self.raw[-20:]}")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name, labels="", default=None):
        """The value of one series (name{labels} exactly), or default."""
        want = f"{name}{{{labels}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return default

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signal it and wait; returns the exit code. Fails on a sanitizer report."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            rc = self.proc.wait(timeout=timeout)
        else:
            rc = self.proc.returncode if self.proc else None
        time.sleep(0.05)
        bad = [x for x in self.raw if "Sanitizer" in x or "runtime error:" in x]
        assert not bad, bad[:3]
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port; with aof, every write is
    in the append-only file before it is answered (a SIGKILL loses nothing), else no
    persistence at all."""

    def __init__(self, folder, password=None, aof=False):
        self.aof = aof
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc = None
        self.start()

    @property
    def url(self):
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.aof else "no", "--appendfsync", "always",
                "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        wait_for(up, 20, "redis-server")

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
