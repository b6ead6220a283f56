"""Fixtures for the mlops-registry tests: the real binary on the stack's
PostgreSQL, in a database of its own (created and dropped per test module
through the superuser's private socket), with its own compacted topic."""
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from pgtest import PSQL, admin_psql, dsn_for, stack_dsn, user_psql  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
STATE = Path(os.environ.get("MLOPS_STATE_DIR", ROOT / ".state"))
BROKERS = os.environ.get("MLOPS_TEST_KAFKA_BROKERS", "127.0.0.1:9092")
BINARY = BUILD / "services/registry/mlops-registry"


class Database:
    def __init__(self, settings=""):
        self.name = "reg_t_" + uuid.uuid4().hex[:12]
        admin_psql(f"CREATE DATABASE {self.name} OWNER mlops")
        if settings:
            admin_psql(f"ALTER DATABASE {self.name} SET {settings}")
        self.dsn = dsn_for(self.name)

    def sql(self, q):
        return user_psql(self.dsn, q)

    def drop(self):
        try:
            admin_psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        except subprocess.CalledProcessError:
            pass


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Registry:
    """One mlops-registry process on a free loopback port."""

    def __init__(self, tmp_path, db, topic=None, extra=()):
        self.db = db
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.topic = topic
        args = [str(BINARY), "--pg-dsn", db.dsn, "--metrics-port", "0",
                "--state-dir", str(self.state), "--kafka-brokers", BROKERS,
                "--drain-timeout-ms", "3000"]
        if topic:
            args += ["--models-topic", topic, "--outbox-poll-ms", "50"]
        else:
            args += ["--no-outbox-relay"]
        self.args = args + list(extra)
        self.scheme = "https" if "--tls-cert-file" in extra else "http"
        self.ssl = None
        if self.scheme == "https":
            import ssl
            self.ssl = ssl.create_default_context(cafile=extra[list(extra).index("--tls-cert-file") + 1])
        self.proc = None
        self.start()

    def start(self):
        self.logs = []
        self.port = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.time() + 20
        while self.port is None:
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise RuntimeError(f"registry exited {self.proc.returncode}: {self.logs}")
            if time.time() > deadline:
                raise RuntimeError(f"registry did not come up: {self.logs}")
            time.sleep(0.02)
        tok = self.state / "registry/admin_token"
        self.admin = tok.read_text().strip() if tok.exists() else None

    def _read(self):
        for line in self.proc.stderr:
            self.logs.append(line)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == "mlops-registry up":
                self.port = rec["metrics_port"]

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.05)  # let the reader thread take the last lines
        bad = [ln for ln in self.logs if "Sanitizer" in ln or "runtime error:" in ln]
        assert not bad, "".join(self.logs[-60:])
        if sig == signal.SIGTERM:
            assert self.proc.returncode == 0, (self.proc.returncode, self.logs[-20:])
        return self.proc.returncode

    @property
    def base(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def request(self, method, path, body=None, token=None, headers=None, raw=None, timeout=30):
        hdrs = dict(headers or {})
        data = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    # shorthands with the admin token
    def get(self, path, token="admin", **kw):
        return self.request("GET", path, token=self.admin if token == "admin" else token, **kw)

    def post(self, path, body=None, token="admin", **kw):
        return self.request("POST", path, body=body,
                            token=self.admin if token == "admin" else token, **kw)

    def call(self, method, path, body=None, token="admin", **kw):
        return self.request(method, path, body=body,
                            token=self.admin if token == "admin" else token, **kw)

    def token(self, role, **extra):
        r = self.post("/api/v1/tokens", {"role": role, "name": f"t-{role}", **extra})
        assert r.status == 201, r
        return r.json()["token"]


_BASE_ARTIFACT = None


def _base_artifact():
    """A real model/1 document (a small logistic regression made by our own
    datagen and trainer, once per test process): the registry validates every
    upload with the loader the scorer uses, so fakes would be refused."""
    global _BASE_ARTIFACT
    if _BASE_ARTIFACT is None:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="reg-art-") as d:
            subprocess.run([str(BUILD / "cli/mlopsctl"), "datagen", "attrition", "--rows", "1500",
                            "--seed", "3", "--out", f"{d}/t.csv"], check=True,
                           capture_output=True, timeout=120)
            subprocess.run([str(BUILD / "services/trainer/mlops-trainer"), "fit", "--data",
                            f"{d}/t.csv", "--spec", str(ROOT / "examples/attrition/spec.json"),
                            "--algo", "logreg", "--no-profile-sample", "--out", f"{d}/m.json"],
                           check=True, capture_output=True, timeout=300)
            _BASE_ARTIFACT = json.loads(Path(f"{d}/m.json").read_text())
    return json.loads(json.dumps(_BASE_ARTIFACT))


def model_doc(name="m", passed=True, extra=None):
    doc = _base_artifact()
    doc["name"] = name
    doc.pop("gates", None)
    if passed is not None:
        doc["gates"] = {"passed": passed, "auc": 0.91, "min_auc": 0.8}
    if extra:
        doc.update(extra)
    return json.dumps(doc, sort_keys=True).encode()


def sha256(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def db():
    d = Database()
    yield d
    d.drop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, db):
    r = Registry(tmp_path_factory.mktemp("registry"), db)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def tokens(registry):
    return {role: registry.token(role) for role in ("reader", "trainer", "admin")}
