"""deploy/services.sh (what `mlopsctl stack up --services` and `make demo` use): each
service runs under a supervisor that restarts it when it dies and stops it cleanly, on
the real local stack. The tests run mlops-registry and mlops-notify on ports of their own,
from a services folder of their own (MLOPS_SERVICES_DIR), so they never meet the demo's
or another test's services."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "services.sh"
sys.path.insert(0, str(ROOT / "tests" / "support"))
from proctest import free_port  # noqa: E402


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def svc(tmp_path):
    """run(*args) runs services.sh with MLOPS_SERVICES_DIR=tmp_path; every service it
    started is stopped at the end."""
    env = dict(os.environ, MLOPS_SERVICES_DIR=str(tmp_path), MLOPS_START_TIMEOUT="30",
               MLOPS_STOP_TIMEOUT="20")
    env.pop("MLOPS_SLACK_WEBHOOK_URLS", None)

    def run(*args, check=True):
        r = subprocess.run([str(SERVICES), *args], env=env, capture_output=True, text=True,
                           timeout=120)
        if check:
            assert r.returncode == 0, f"services.sh {args}: {r.stdout}\n{r.stderr}"
        return r

    run.dir = tmp_path
    (tmp_path / "conf").mkdir()
    yield run
    run("down", check=False)


def conf(svc, name, **keys):
    (svc.dir / "conf" / f"{name}.conf").write_text(
        "".join(f"{k} = {v}\n" for k, v in keys.items()))


def child_pid(svc, name):
    p = svc.dir / "run" / f"{name}.pid"
    return int(p.read_text()) if p.exists() and p.read_text().strip() else None


def wait_for(what, cond, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_restarts_a_killed_service_and_stops_it_cleanly(svc):
    port = free_port()
    conf(svc, "registry", metrics_port=port)
    r = svc("up", "registry")
    assert f"registry: ready on 127.0.0.1:{port}" in r.stdout
    assert get(port, "/ready")[0] == 200
    first = child_pid(svc, "registry")
    assert first and alive(first)

    st = svc("status", "registry")
    line = [ln for ln in st.stdout.splitlines() if ln.startswith("registry")][0].split()
    assert line[1] == "ready" and line[3] == str(first) and line[4] == "0", st.stdout
    health = json.loads(get(port, "/health")[1])
    assert line[2] == health["version"]

    # a second up is a no-op: the same process keeps serving
    assert "already supervised" in svc("up", "registry").stdout
    assert child_pid(svc, "registry") == first

    os.kill(first, signal.SIGKILL)
    second = wait_for("a restarted registry",
                      lambda: (p := child_pid(svc, "registry")) and p != first and
                      get(port, "/ready")[0] == 200 and p)
    assert alive(second) and not alive(first)
    assert (svc.dir / "run" / "registry.restarts").read_text().strip() == "1"
    log = (svc.dir / "logs" / "registry.log").read_text()
    assert "mlops-registry killed by signal 9; restart 1" in log
    st = svc("status", "registry")
    assert st.stdout.splitlines()[1].split()[4] == "1"

    r = svc("down", "registry")
    assert "registry: stopped" in r.stdout
    assert not alive(second)
    assert get(port, "/health")[0] is None
    assert "exited with status 0 after SIGTERM" in (svc.dir / "logs" / "registry.log").read_text()
    assert not (svc.dir / "run" / "registry.supervisor.pid").exists()
    st = svc("status", "registry", check=False)
    assert st.returncode == 1 and st.stdout.splitlines()[1].split()[1] == "stopped"


def test_a_configuration_error_is_not_restarted(svc):
    port = free_port()
    conf(svc, "notify", metrics_port=port, slack_webhook_urls="https://127.0.0.1:9/hook",
         no_such_key="1")
    r = svc("up", "notify", check=False)
    assert r.returncode != 0
    assert "supervisor exited" in r.stderr
    log = (svc.dir / "logs" / "notify.log").read_text()
    assert "no_such_key" in log
    assert "refused its configuration (status 2); not restarting" in log
    assert log.count("deploy/services.sh: starting mlops-notify") == 1


def test_notify_without_a_webhook_is_skipped_and_a_taken_port_is_named(svc):
    r = svc("up", "notify")
    assert "notify: not started: no Slack webhook" in r.stdout
    assert child_pid(svc, "notify") is None

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        conf(svc, "registry", metrics_port=port)
        r = svc("up", "registry", check=False)
    assert r.returncode != 0
    assert f"port 127.0.0.1:{port} is taken" in r.stderr


def test_unknown_service_is_refused(svc):
    r = svc("up", "nosuch", check=False)
    assert r.returncode != 0 and "unknown service 'nosuch'" in r.stderr
