"""Lifecycle of every service binary, run as a real subprocess: start-up
line, /health /ready /metrics, JSON logs, SIGHUP reload, SIGTERM drain and
exit codes, configuration errors. (STYLE.md 26)"""
import json
import signal
import socket
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import REQUIRED_ARGS, SERVICES, binary

EXIT_USAGE = 2
EXIT_FAILURE = 1


@pytest.mark.parametrize("svc", SERVICES)
def test_serves_health_ready_metrics_and_drains_on_sigterm(run, svc):
    p = run(svc, "--metrics-port", "0")
    up = p.wait_log(lambda ln: ln.get("msg") == f"mlops-{svc} up")
    for key in ("ts", "level", "service", "msg", "version", "librdkafka"):
        assert key in up, key
    assert up["service"] == svc and up["level"] == "info"

    status, ctype, body = p.get("/health")
    assert status == 200 and ctype == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["service"] == svc

    status, _, body = p.get("/ready")
    assert status == 200 and json.loads(body)["ready"] is True

    status, ctype, body = p.get("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    # the parser is an independent check of the exposition format
    assert "process_resident_memory_bytes" in families
    reqs = families["mlops_http_requests"]  # counters lose _total in the parser's names
    by_route = {(s.labels["route"], s.labels["code"]): s.value for s in reqs.samples
                if s.name == "mlops_http_requests_total"}
    assert by_route[("/health", "2xx")] == 1
    assert by_route[("/ready", "2xx")] == 1

    status, _, body = p.get("/no/such/path")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"

    assert p.stop(signal.SIGTERM) == 0
    msgs = [ln["msg"] for ln in p.lines]
    assert "draining (SIGTERM)" in msgs
    assert f"mlops-{svc} stopped" in msgs


def test_sighup_reloads_reloadable_keys_only(run, tmp_path):
    conf = tmp_path / "ingest.conf"
    conf.write_text("log_level = info\nmetrics_port = 0\n")
    p = run("ingest", "--config", str(conf))  # --spec comes from REQUIRED_ARGS
    p.wait_log(lambda ln: ln.get("msg") == "mlops-ingest up")
    conf.write_text("log_level = debug\nmetrics_port = 0\nbind_address = 0.0.0.0\n")
    p.proc.send_signal(signal.SIGHUP)
    p.wait_log(lambda ln: ln.get("msg") == "reloaded log_level")
    warn = p.wait_log(lambda ln: ln.get("key") == "bind_address")
    assert warn["level"] == "warn" and "not reloadable" in warn["msg"]
    # only log_level was applied: the summary counts one change
    p.wait_log(lambda ln: ln.get("msg") == "configuration reloaded (1 setting changed)")
    assert p.stop() == 0


def test_sighup_with_broken_config_keeps_running(run, tmp_path):
    conf = tmp_path / "monitor.conf"
    conf.write_text("metrics_port = 0\n")
    p = run("monitor", "--config", str(conf))
    p.wait_log(lambda ln: ln.get("msg") == "mlops-monitor up")
    conf.write_text("metrics_port = 0\nlog_level = info\ndrain_timeout_ms = soon\n")
    p.proc.send_signal(signal.SIGHUP)
    err = p.wait_log(lambda ln: "reload failed" in ln.get("msg", ""))
    assert f"{conf}:3: drain_timeout_ms: 'soon' is not an integer" in err["msg"]
    assert p.get("/health")[0] == 200, "still serving after a bad reload"
    assert p.stop() == 0


@pytest.mark.parametrize("args,needle", [
    (["--metrics-port", "70000"], "--metrics-port: metrics_port: 70000 is out of range"),
    (["--log-levl", "debug"], "did you mean '--log-level'?"),
    (["--log-level", "loud"], "log_level: 'loud' is not one of"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_bad_command_line_exits_2_with_a_clear_message(args, needle):
    r = subprocess.run([binary("scorer"), *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == EXIT_USAGE
    assert needle in r.stderr, r.stderr


def test_bad_config_file_names_file_and_line(tmp_path):
    conf = tmp_path / "trainer.conf"
    conf.write_text("# comment\nlog_level = info\nkafka_brokers 127.0.0.1:9092\n")
    r = subprocess.run([binary("trainer"), "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == EXIT_USAGE
    assert f"{conf}:3: expected 'key = value'" in r.stderr


def test_port_in_use_is_a_fatal_error_naming_the_port(run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run("registry", "--metrics-port", str(port))
        assert p.proc.wait(timeout=10) == EXIT_FAILURE
        p._reader.join(timeout=5)
        fatal = [ln for ln in p.lines if ln["level"] == "fatal"]
        assert fatal and f"127.0.0.1:{port}" in fatal[0]["msg"]


@pytest.mark.parametrize("svc", SERVICES)
def test_help_lists_every_key_and_print_config_shows_sources(svc, tmp_path):
    h = subprocess.run([binary(svc), "--help"], capture_output=True, text=True, timeout=10)
    assert h.returncode == 0
    conf = tmp_path / "x.conf"
    conf.write_text("drain_timeout_ms = 1234\n")
    pc = subprocess.run([binary(svc), *REQUIRED_ARGS.get(svc, []), "-c", str(conf),
                         "--print-config",
                         "-X", "sasl.password=hunter2-secret"],
                        capture_output=True, text=True, timeout=10,
                        env={"MLOPS_LOG_LEVEL": "warn", "PATH": "/usr/bin:/bin"})
    assert pc.returncode == 0
    keys = [ln.split(" = ")[0] for ln in pc.stdout.splitlines() if " = " in ln and
            not ln.startswith("kafka.")]
    assert keys, pc.stdout
    for key in keys:
        assert "--" + key.replace("_", "-") in h.stdout, key
    assert f"drain_timeout_ms = 1234  # {conf}:1" in pc.stdout
    assert 'log_level = "warn"  # env MLOPS_LOG_LEVEL' in pc.stdout
    assert "hunter2-secret" not in pc.stdout
    assert 'kafka.sasl.password = "***"  # -X' in pc.stdout


def test_mlopsctl_help_and_errors():
    r = subprocess.run([binary("mlopsctl"), "help"], capture_output=True, text=True)
    assert r.returncode == 0 and "stack" in r.stdout
    r = subprocess.run([binary("mlopsctl"), "frobnicate"], capture_output=True, text=True)
    assert r.returncode == EXIT_USAGE and "unknown command 'frobnicate'" in r.stderr
    r = subprocess.run([binary("mlopsctl"), "stack", "sideways"], capture_output=True, text=True)
    assert r.returncode == EXIT_USAGE and "unknown action 'sideways'" in r.stderr


def test_ingest_without_a_spec_exits_2_naming_the_setting():
    r = subprocess.run([binary("ingest")], capture_output=True, text=True, timeout=10)
    assert r.returncode == EXIT_USAGE
    assert "spec must be set" in r.stderr, r.stderr


def test_ingest_with_a_broken_spec_exits_1_naming_the_file_and_path(tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text('{"schema": "feature_spec/1", "name": "x", "entity": "e", "event_id": "i",'
                    ' "event_time": "t", "fields": [{"name": "a", "type": "float"}]}')
    r = subprocess.run([binary("ingest"), "--spec", str(spec), "--metrics-port", "0"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == EXIT_FAILURE
    assert f"{spec}: fields[0].type: 'float' is not one of" in r.stderr, r.stderr
