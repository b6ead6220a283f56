"""Contract: the monitoring files for docker-compose.yml hold together.

- deploy/prometheus/prometheus.yml is a valid Prometheus config (promtool check config);
- the stack's alert rules pass promtool check rules and their unit tests
  (deploy/prometheus/tests/*.test.yml, promtool test rules);
- every query of the Grafana dashboard is valid PromQL (checked by promtool as recording
  rules) and reads the provisioned datasource;
- every metric the rules and the dashboard name is one our services export (the names
  registered in common/ and services/, histograms with _bucket/_sum/_count);
- compose mounts the rules, the provisioning and the dashboards where they are read.

promtool comes from Debian's prometheus package (deploy/setup.sh promtool).

    .state/venv/bin/python -m pytest tests/contract/test_prometheus.py -q
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("MLOPS_STATE_DIR") or REPO / ".state")
PROMTOOL = STATE / "tools" / "promtool"
PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "mlops.json"
# names Prometheus itself provides: target health and the alerts it evaluates
BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate",
    "histogram_quantile", "clamp_min", "clamp_max", "le", "on", "ignoring", "and", "or",
    "unless", "bool", "offset", "abs", "topk", "bottomk", "humanizePercentage",
}


def promtool(*args, cwd=None):
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: run deploy/setup.sh promtool"
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def exported_metrics():
    """The metric names our C code registers (metrics_counter/gauge/histogram calls)."""
    names, histograms = set(), set()
    call = re.compile(r'metrics_(counter|gauge|histogram)\s*\(\s*[^,]+,\s*"(mlops_[a-z0-9_]+)"')
    for d in ("common", "services"):
        for path in (REPO / d).rglob("*.c"):
            for kind, name in call.findall(path.read_text()):
                names.add(name)
                if kind == "histogram":
                    histograms.add(name)
    for h in histograms:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names


def metric_names(expr):
    """The metric names an expression reads (label names, functions and keywords left out)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    words = set(re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b", expr))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+[a-z]*", w)}


def dashboard_queries():
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            out.append((panel["title"], t))
    return dash, out


def rule_exprs():
    rules = yaml.safe_load((PROM / "rules" / "mlops.rules.yml").read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def test_prometheus_config_is_valid():
    run = promtool("check", "config", "--syntax-only", "prometheus.yml", cwd=PROM)
    assert run.returncode == 0, run.stdout + run.stderr


def test_alert_rules_check_and_pass_their_unit_tests():
    run = promtool("check", "rules", "rules/mlops.rules.yml", cwd=PROM)
    assert run.returncode == 0, run.stdout + run.stderr
    tests = sorted(str(p.relative_to(PROM)) for p in (PROM / "tests").glob("*.test.yml"))
    assert tests, "no rule unit tests"
    run = promtool("test", "rules", *tests, cwd=PROM)
    assert run.returncode == 0, run.stdout + run.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", "".join(
        (PROM / t).read_text() for t in tests)))
    assert {a for a, _ in rule_exprs()} <= tested, "an alert rule has no unit test"


def test_dashboard_queries_are_valid_promql(tmp_path):
    _, queries = dashboard_queries()
    assert queries
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": t["expr"]} for i, (_, t) in enumerate(queries)]}]}
    f = tmp_path / "dashboard.rules.yml"
    f.write_text(yaml.safe_dump(rules))
    run = promtool("check", "rules", str(f))
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_bad_query_is_caught(tmp_path):
    f = tmp_path / "bad.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (le (rate(mlops_scorer_batch_seconds_bucket[5m]))"}]}]}))
    assert promtool("check", "rules", str(f)).returncode != 0


def test_every_metric_named_is_exported():
    exported = exported_metrics()
    assert len(exported) > 50, "the metric scan found too few names"
    _, queries = dashboard_queries()
    named = [(f"dashboard panel {title!r}", t["expr"]) for title, t in queries]
    named += [(f"alert {a}", e) for a, e in rule_exprs()]
    # the lag rule selects by a name regex: expand it
    for where, expr in named:
        for m in re.findall(r'__name__=~"([^"]+)"', expr):
            hits = {n for n in exported if re.fullmatch(m, n)}
            assert hits, f"{where}: no exported metric matches {m}"
        unknown = metric_names(expr) - exported - BUILTIN
        assert not unknown, f"{where} reads metrics no service exports: {sorted(unknown)}"


def test_dashboard_uses_the_provisioned_datasource():
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"] if d["type"] == "prometheus"}
    dash, queries = dashboard_queries()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for title, t in queries:
        assert t["datasource"]["uid"] in uids, f"panel {title!r} reads another datasource"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("throughput", "latency", "drift", "alerts", "model versions"):
        assert topic in titles, f"the dashboard has no {topic} panel"


def test_compose_mounts_rules_and_grafana_files():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    svc = compose["services"]

    def mounts(name):
        out = {}
        for v in svc[name].get("volumes", []):
            src, dst = v.split(":")[:2]
            if src.startswith("."):
                out[dst] = (REPO / src).resolve()
        return out

    prom = mounts("prometheus")
    assert prom.get("/etc/prometheus/rules") == PROM / "rules"
    conf = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert "/etc/prometheus/rules/*.yml" in conf["rule_files"]
    graf = mounts("grafana")
    assert graf.get("/etc/grafana/provisioning") == GRAFANA / "provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mlops.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert graf.get(path) == DASHBOARD.parent
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    url = ds["datasources"][0]["url"]
    assert re.fullmatch(r"http://prometheus:9090", url) and "prometheus" in svc
