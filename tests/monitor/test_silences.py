"""The monitor's silence API and `mlopsctl alerts`, end to end with the
notifier: a silence made with the CLI mutes the matching alert."""
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import BUILD, alert, redis


class Monitor:
    def __init__(self, key):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
        self.proc = subprocess.Popen(
            [str(BUILD / "services/monitor/mlops-monitor"), "--metrics-port", "0",
             "--silences-key", key], stderr=subprocess.PIPE, text=True, env=env)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 20
        self.port = None
        while not self.port and time.monotonic() < deadline:
            for ln in list(self.lines):
                if ln.get("msg") == "mlops-monitor up":
                    self.port = ln["metrics_port"]
            assert self.proc.poll() is None, self.lines
            time.sleep(0.05)
        assert self.port
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(json.loads(line))

    def call(self, method, path, body=None):
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(timeout=20)


@pytest.fixture
def monitor():
    key = f"it:silences:{uuid.uuid4().hex[:10]}"
    m = Monitor(key)
    m.key = key
    yield m
    if m.proc.poll() is None:
        m.proc.kill()
        m.proc.wait()
    redis("DEL", key)


def ctl(monitor, *args, check=True):
    env = dict(os.environ, MLOPS_MONITOR_URL=monitor.url)
    p = subprocess.run([str(BUILD / "cli/mlopsctl"), "alerts", *args], capture_output=True,
                       text=True, env=env, timeout=30)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_cli_creates_lists_and_expires_silences(monitor):
    p = ctl(monitor, "silence", "-m", "model=churn", "-m", "alertname=~feature_.*",
            "-m", "feature!=age", "--duration", "2h", "--comment", "retraining",
            "--author", "ana")
    sid = p.stdout.strip().splitlines()[-1]
    assert len(sid) == 36
    listed = json.loads(ctl(monitor, "silences", "--json").stdout)
    assert [s["id"] for s in listed] == [sid]
    s = listed[0]
    assert s["status"] == "active" and s["createdBy"] == "ana" and s["comment"] == "retraining"
    assert {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in s["matchers"]} == {
        ("model", "churn", False, True), ("alertname", "feature_.*", True, True),
        ("feature", "age", False, False)}
    table = ctl(monitor, "silences").stdout
    assert sid in table and "model=churn alertname=~feature_.* feature!=age" in table
    out = ctl(monitor, "expire", sid).stdout
    assert f"expired {sid}" in out
    assert json.loads(ctl(monitor, "silences", "--json").stdout) == []
    listed = json.loads(ctl(monitor, "silences", "--json", "--all").stdout)
    assert listed[0]["status"] == "expired"
    # stored where the notifier reads it
    assert sid in redis("HKEYS", monitor.key)
    assert monitor.stop() == 0


def test_bad_silences_are_refused_with_reasons(monitor):
    p = ctl(monitor, "silence", "-m", "model", "--duration", "1h", "--comment", "x", check=False)
    assert p.returncode == 2 and "expected NAME=VALUE" in p.stderr
    p = ctl(monitor, "silence", "-m", "a=b", "--comment", "x", check=False)
    assert p.returncode == 2 and "--duration or --until" in p.stderr
    p = ctl(monitor, "silence", "-m", "a=~(", "--duration", "1h", "--comment", "x", check=False)
    assert p.returncode == 1 and "HTTP 400" in p.stderr and "regular expression" in p.stderr
    p = ctl(monitor, "expire", "no-such-id", check=False)
    assert p.returncode == 1 and "HTTP 404" in p.stderr
    p = ctl(monitor, "expire", "../etc", check=False)
    assert p.returncode == 2
    code, body = monitor.call("POST", "/api/v1/silences", b"{not json")
    assert code == 400 and body["error"]["code"] == "bad_json"
    code, body = monitor.call("POST", "/api/v1/silences", {"matchers": [{"name": "a", "value": "b"}],
                                                          "duration": "1h", "comment": "c"})
    assert code == 400 and "createdBy" in body["error"]["message"]
    code, body = monitor.call("POST", "/api/v1/silences", {
        "matchers": [{"name": "a", "value": "b"}], "createdBy": "t", "comment": "c",
        "startsAt": "2026-12-02T11:00:00Z", "endsAt": "2026-12-02T10:00:00Z"})
    assert code == 400 and "endsAt must be after startsAt" in body["error"]["message"]
    code, body = monitor.call("POST", "/api/v1/silences", {
        "matchers": [], "createdBy": "t", "comment": "c", "duration": "1h"})
    assert code == 400 and "matchers" in body["error"]["message"]
    code, body = monitor.call("PUT", "/api/v1/silences")
    assert code == 405
    code, body = monitor.call("GET", "/api/v1/silences/x/y")
    assert code == 404
    assert redis("HLEN", monitor.key) == "0"


def test_a_cli_silence_mutes_the_notifier(monitor, fake_slack, notify_factory, pki):
    slack = fake_slack(cert=pki["ok"])
    n = notify_factory([slack.url()], ca=pki["ca"])
    n.silences_key = monitor.key
    n.args[n.args.index("--silences-key") + 1] = monitor.key
    n.start()
    ctl(monitor, "silence", "-m", "model=churn", "--duration", "10m", "--comment", "test")
    time.sleep(0.5)  # the notifier re-reads silences every 200 ms here
    n.send([alert(1), alert(2, model="fraud")])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="silenced"', 1, 20)
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 1, 20)
    assert slack.alerts_counted() == 1
