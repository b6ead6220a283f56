"""Fixtures for the Slack notifier tests: a fake Slack on 127.0.0.1 (HTTPS
with certificates from a test CA made by the openssl CLI, or plain HTTP),
the real mlops-notify binary on the real broker, unique topics."""
import http.server
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import kafkatest  # noqa: E402
from kafkatest import BROKERS, create_topics, delete_topics, produce  # noqa: E402,F401
from proctest import ServiceProc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build"))
SOAK = os.environ.get("MLOPS_TEST_SCALE") == "soak"
SCHEMAS = ROOT / "schemas"
SECRET = "T0000SECRET/B0000SECRET/XXXXSECRETXXXX"


# ---- certificates -------------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class CA:
    """A throw-away certificate authority (openssl CLI)."""

    def __init__(self, d: Path, name: str):
        self.dir = d / name
        self.dir.mkdir(parents=True)
        self.key = self.dir / "ca.key"
        self.pem = self.dir / "ca.pem"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                 "-out", "ca.pem", "-days", "30", "-subj", f"/CN={name} test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        (self.dir / "ca.cnf").write_text(
            "[ca]\ndefault_ca=d\n[d]\ndir=.\ndatabase=index.txt\nserial=serial\n"
            "new_certs_dir=.\ndefault_md=sha256\npolicy=p\ncopy_extensions=copy\n"
            "unique_subject=no\n[p]\ncommonName=supplied\n")

    def leaf(self, name, san="IP:127.0.0.1", expired=False):
        """A server certificate and key for `san`; `expired` puts its validity in 2020."""
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}",
                 "-addext", f"subjectAltName={san}", cwd=self.dir)
        dates = (["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"] if expired
                 else ["-days", "30"])
        _openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
                 "-in", f"{name}.csr", "-out", f"{name}.pem", "-notext", *dates, cwd=self.dir)
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    good = CA(d, "good")
    other = CA(d, "other")
    return {
        "ca": good.pem,
        "ok": good.leaf("ok"),
        "wrong_host": good.leaf("wronghost", san="DNS:other.example"),
        "expired": good.leaf("expired", expired=True),
        "untrusted": other.leaf("untrusted"),
    }


# ---- the fake Slack -----------------------------------------------------------------

class FakeSlack:
    """Records every request (time, path, JSON body) and answers with what
    `respond(path, n)` returns: (status, headers dict, body, delay seconds)."""

    def __init__(self, cert=None, respond=None, port=0):
        self.requests = []
        self.lock = threading.Lock()
        self.respond = respond or (lambda path, n: (200, {}, "ok", 0))
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    k = sum(1 for r in outer.requests if r["path"] == self.path)
                    outer.requests.append({"t": time.monotonic(), "path": self.path,
                                           "body": json.loads(body),
                                           "ctype": self.headers.get("Content-Type")})
                status, headers, text, delay = outer.respond(self.path, k)
                if delay:
                    time.sleep(delay)
                data = text.encode()
                try:
                    self.send_response(status)
                    for hk, hv in headers.items():
                        self.send_header(hk, hv)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.srv.daemon_threads = True
        self.scheme = "http"
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
            self.scheme = "https"
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path="/services/" + SECRET):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def snapshot(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def alerts_counted(self, path=None):
        """Alerts carried by the messages, from each digest's header count."""
        total = 0
        for r in self.snapshot(path):
            head = r["body"]["blocks"][0]["text"]["text"]
            total += int(head.split()[0])
        return total

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def fake_slack():
    made = []

    def make(**kw):
        s = FakeSlack(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# ---- Kafka --------------------------------------------------------------------------

def alert(i, state="firing", **over):
    a = {"schema": "alert/1", "fingerprint": f"fp-{i:05d}", "state": state,
         "alertname": "feature_drift", "severity": "warning", "metric": "drift_wasserstein",
         "value": 0.2 + i / 1000, "threshold": 0.1, "comparison": ">=",
         "window": "1000 events", "model": "churn", "labels": {"feature": f"f{i}"},
         "annotations": {"summary": f"feature f{i} drifted",
                         "runbook_url": "https://runbooks.example/drift"},
         "starts_at": "2026-12-02T10:00:00.000Z"}
    a.update(over)
    return a


def consume_all(topic, expect, timeout=30):
    return kafkatest.consume_all(topic, expect=expect, timeout=timeout)


class Notify(ServiceProc):
    """One mlops-notify process with its own alerts / alerts.dlq topics and group."""

    def __init__(self, urls, ca=None, extra=(), topics=None):
        self.id = uuid.uuid4().hex[:10]
        self.alerts, self.dlq = topics or (f"it-alerts-{self.id}", f"it-alerts-dlq-{self.id}")
        if not topics:
            create_topics([self.alerts, self.dlq], partitions=1)
        self.group = f"it-notify-{self.id}"
        self.silences_key = f"it:silences:{self.id}"
        self.urls = urls
        self.args = [str(BUILD / "services/monitor/mlops-notify"), "--alerts-topic", self.alerts,
                     "--alerts-dlq-topic", self.dlq, "--group-id", self.group,
                     "--metrics-port", "0", "--group-wait-ms", "200",
                     "--silences-key", self.silences_key, "--silence-refresh-ms", "200",
                     "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=2000",
                     *(["--slack-ca-file", str(ca)] if ca else []), *extra]
        # secrets by env, not argv
        super().__init__("notify", self.args, env={"MLOPS_SLACK_WEBHOOK_URLS": ",".join(urls)},
                         up_timeout=20)

    def metric(self, name, labels="", default=0.0):
        return super().metric(name, labels, default)

    def wait_metric(self, name, labels, at_least, timeout):
        deadline = time.monotonic() + timeout
        v = 0.0
        while time.monotonic() < deadline:
            v = self.metric(name, labels)
            if v >= at_least:
                return v
            time.sleep(0.1)
        raise AssertionError(f"{name}{{{labels}}} = {v}, wanted >= {at_least}")

    def send(self, alerts):
        produce(self.alerts, [(a["fingerprint"].encode(), json.dumps(a).encode())
                              for a in alerts])

    def stop(self, sig=signal.SIGTERM, timeout=40):
        return super().stop(sig, timeout)


@pytest.fixture
def notify_factory():
    made = []

    def make(urls, **kw):
        n = Notify(urls, **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()
    delete_topics([t for n in made for t in (n.alerts, n.dlq)])
    for n in made:
        redis("DEL", f"mlops:notify:{n.group}:firing", n.silences_key)


def redis(*args):
    """One redis-cli call on the local stack's Redis."""
    port = os.environ.get("MLOPS_TEST_REDIS_PORT", "6380")
    out = subprocess.run(["redis-cli", "-p", port, *args], check=True, capture_output=True,
                         text=True)
    return out.stdout.strip()
