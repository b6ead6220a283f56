"""mlops-notify against a fake Slack on 127.0.0.1: pacing, Retry-After,
retries with backoff, dead letters for permanent failures, TLS
verification, crash safety, and the webhook URL kept secret."""
import json
import time

import jsonschema
import pytest

from conftest import SCHEMAS, SECRET, SOAK, Notify, alert, consume_all

DLQ_SCHEMA = json.loads((SCHEMAS / "alert_dlq.schema.json").read_text())
ALERT_SCHEMA = json.loads((SCHEMAS / "alert.schema.json").read_text())


def never_leaks(n: Notify):
    for line in n.raw:
        assert SECRET not in line and "XXXXSECRET" not in line, f"webhook path logged: {line}"


def test_the_alert_fixture_is_an_alert(tmp_path):
    jsonschema.validate(alert(1), ALERT_SCHEMA)
    jsonschema.validate(alert(2, state="resolved"), ALERT_SCHEMA)


def test_delivers_a_block_kit_message_and_skips_pending(fake_slack, notify_factory, pki):
    slack = fake_slack(cert=pki["ok"])
    n = notify_factory([slack.url()], ca=pki["ca"]).start()
    n.send([alert(1), alert(2, state="pending"), alert(3, state="resolved")])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 2, 20)
    time.sleep(0.5)
    reqs = slack.snapshot()
    assert slack.alerts_counted() == 2, [r["body"]["text"] for r in reqs]
    assert all(r["ctype"] == "application/json" for r in reqs)
    texts = " ".join(b["text"]["text"] for r in reqs for b in r["body"]["blocks"]
                     if b["type"] == "section")
    assert "*FIRING*" in texts and "*RESOLVED*" in texts and "PENDING" not in texts
    assert n.metric("mlops_notify_alerts_total", 'outcome="skipped"') == 1
    assert n.stop() == 0
    never_leaks(n)


def test_429_retry_after_is_honoured(fake_slack, notify_factory, pki):
    slack = fake_slack(cert=pki["ok"], respond=lambda path, k: (
        (429, {"Retry-After": "2"}, "rate_limited", 0) if k == 0 else (200, {}, "ok", 0)))
    n = notify_factory([slack.url()], ca=pki["ca"]).start()
    n.send([alert(1)])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 1, 20)
    reqs = slack.snapshot()
    assert len(reqs) == 2
    gap = reqs[1]["t"] - reqs[0]["t"]
    assert gap >= 2.0, f"retried {gap:.3f} s after a 429 with Retry-After: 2"
    assert gap < 4.0, f"waited {gap:.3f} s: Retry-After is 2 s, not a backoff"
    assert reqs[1]["body"] == reqs[0]["body"]
    never_leaks(n)


def test_outage_then_healthy_delivers_everything_with_backoff(fake_slack, notify_factory, pki):
    """500, 503, a hang longer than the request timeout, then healthy."""
    hang = 20 if SOAK else 3
    plan = [(500, {}, "oops", 0), (503, {}, "busy", 0), (200, {}, "ok", hang)]
    slack = fake_slack(cert=pki["ok"], respond=lambda path, k: plan[k] if k < len(plan)
                       else (200, {}, "ok", 0))
    base, cap = 400, 1600
    n = notify_factory([slack.url()], ca=pki["ca"],
                       extra=["--retry-base-ms", str(base), "--retry-max-ms", str(cap),
                              "--timeout-ms", "1000"]).start()
    n.send([alert(i) for i in range(5)])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 5, 30 + hang)
    reqs = slack.snapshot()
    assert len(reqs) >= 4
    # retry k waits base*2^k capped, jittered into [half, full]; the hung request
    # itself took the 1 s timeout before its retry timer started
    for k in range(3):
        nominal = min(cap, base * 2 ** k)
        gap = reqs[k + 1]["t"] - reqs[k]["t"] - (1.0 if k == 2 else 0.0)
        assert gap >= nominal / 2000 - 0.05, f"retry {k}: {gap:.3f} s < {nominal / 2000} s"
        assert gap <= nominal / 1000 + 1.0, f"retry {k}: {gap:.3f} s >> {nominal / 1000} s"
    assert n.metric("mlops_notify_requests_total", 'webhook="0",result="retry"') >= 3
    # the last (good) message carries all five alerts
    assert int(reqs[-1]["body"]["blocks"][0]["text"]["text"].split()[0]) == 5
    never_leaks(n)


def test_refused_connection_is_retried_until_the_receiver_comes(fake_slack, notify_factory, pki):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    url = f"https://127.0.0.1:{port}/services/{SECRET}"
    n = notify_factory([url], ca=pki["ca"],
                       extra=["--retry-base-ms", "200", "--retry-max-ms", "500"]).start()
    n.send([alert(1), alert(2)])
    n.wait_metric("mlops_notify_requests_total", 'webhook="0",result="retry"', 2, 20)
    slack = fake_slack(cert=pki["ok"], port=port)
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 2, 20)
    assert slack.alerts_counted() == 2
    never_leaks(n)


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_permanent_status_is_dead_lettered_without_retry(fake_slack, notify_factory, pki, status):
    slack = fake_slack(cert=pki["ok"], respond=lambda path, k: (status, {}, "invalid_token " * 40, 0))
    n = notify_factory([slack.url()], ca=pki["ca"],
                       extra=["--retry-base-ms", "5000"]).start()
    t0 = time.monotonic()
    n.send([alert(7)])
    recs = consume_all(n.dlq, 1, timeout=20)
    took = time.monotonic() - t0
    assert len(recs) == 1
    d = json.loads(recs[0].value())
    jsonschema.validate(d, DLQ_SCHEMA)
    assert d["status"] == status
    assert d["alert"]["fingerprint"] == "fp-00007"
    assert recs[0].key() == b"fp-00007"
    assert d["webhook"] == f"https://127.0.0.1/…"
    assert d["body"].startswith("invalid_token") and len(d["body"]) <= 256
    assert took < 4.5, f"dead-lettered after {took:.1f} s: it waited on a retry timer"
    time.sleep(1.0)
    assert len(slack.snapshot()) == 1, "a permanent failure was retried"
    assert n.metric("mlops_notify_alerts_total", 'outcome="dead_lettered"') == 1
    never_leaks(n)


def test_a_burst_is_paced_to_one_message_per_second_and_counts_every_alert(
        fake_slack, notify_factory, pki):
    slack = fake_slack(cert=pki["ok"])
    n = notify_factory([slack.url()], ca=pki["ca"], extra=["--group-wait-ms", "0"]).start()
    total = 600 if SOAK else 120
    t0 = time.monotonic()
    for i in range(0, total, 6):  # spread over about 2 s
        n.send([alert(j) for j in range(i, i + 6)])
        time.sleep(2.0 / (total / 6))
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', total, 40)
    reqs = slack.snapshot()
    assert slack.alerts_counted() == total
    times = [r["t"] for r in reqs]
    burst, rate = 2, 1.0
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            allowed = burst + rate * (times[j] - times[i]) + 0.05
            assert j - i + 1 <= allowed, (
                f"{j - i + 1} messages in {times[j] - times[i]:.3f} s (burst {burst}, 1/s)")
    assert len(reqs) <= 2 + (times[-1] - t0) + 1
    never_leaks(n)


@pytest.mark.parametrize("case", ["untrusted", "wrong_host", "expired"])
def test_bad_certificates_post_nothing(fake_slack, notify_factory, pki, case):
    slack = fake_slack(cert=pki[case])
    n = notify_factory([slack.url()], ca=pki["ca"],
                       extra=["--retry-base-ms", "200", "--retry-max-ms", "400"]).start()
    n.send([alert(1)])
    n.wait_metric("mlops_notify_requests_total", 'webhook="0",result="retry"', 2, 20)
    assert slack.snapshot() == [], "a request got through a certificate that should fail"
    assert n.metric("mlops_notify_alerts_total", 'outcome="delivered"') == 0
    errs = [ln.get("error", "") for ln in n.lines if ln.get("outcome") == "retry"]
    assert any("SSL" in e or "certificate" in e.lower() for e in errs), errs
    never_leaks(n)


def test_kill9_with_alerts_pending_loses_none(fake_slack, notify_factory, pki):
    healthy = {"on": False}
    slack = fake_slack(cert=pki["ok"], respond=lambda path, k: (
        (200, {}, "ok", 0) if healthy["on"] else (503, {}, "down", 0)))
    extra = ["--retry-base-ms", "300", "--retry-max-ms", "600"]
    n = notify_factory([slack.url()], ca=pki["ca"], extra=extra).start()
    count = 100
    n.send([alert(i) for i in range(count)])
    n.wait_metric("mlops_notify_pending", "", count, 20)
    n.kill9()
    healthy["on"] = True
    again = notify_factory([slack.url()], ca=pki["ca"], extra=extra,
                           topics=(n.alerts, n.dlq))
    again.group = n.group
    again.args[again.args.index("--group-id") + 1] = n.group
    again.start()
    again.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', count, 40)
    good = [r for r in slack.snapshot() if int(r["body"]["blocks"][0]["text"]["text"].split()[0])]
    assert sum(int(r["body"]["blocks"][0]["text"]["text"].split()[0]) for r in good) >= count
    assert again.stop() == 0
    # the restarted notifier committed: a third one has nothing to send
    third = notify_factory([slack.url()], ca=pki["ca"], extra=extra, topics=(n.alerts, n.dlq))
    third.args[third.args.index("--group-id") + 1] = n.group
    before = len(slack.snapshot())
    third.start()
    time.sleep(4)
    assert len(slack.snapshot()) == before
    never_leaks(n)
    never_leaks(again)


def test_malformed_records_are_dead_lettered(fake_slack, notify_factory, pki):
    from conftest import produce
    slack = fake_slack(cert=pki["ok"])
    n = notify_factory([slack.url()], ca=pki["ca"]).start()
    bad = [b"not json", b"[1,2]", json.dumps({"schema": "alert/2"}).encode(),
           json.dumps(dict(alert(1), state="exploded")).encode(), b""]
    produce(n.alerts, [(b"k%d" % i, v) for i, v in enumerate(bad)])
    recs = consume_all(n.dlq, len(bad), timeout=20)
    assert len(recs) == len(bad)
    for r in recs:
        d = json.loads(r.value())
        jsonschema.validate(d, DLQ_SCHEMA)
        assert d["status"] == 0 and d["error"] and "original" in d
    assert n.metric("mlops_notify_alerts_total", 'outcome="malformed"') == len(bad)
    assert slack.snapshot() == []


def test_plain_http_to_a_remote_host_is_refused_at_start(notify_factory):
    n = notify_factory([f"http://192.0.2.10/services/{SECRET}"])
    n.start(wait_up=False)
    rc = n.proc.wait(timeout=20)
    time.sleep(0.3)
    assert rc != 0
    text = "".join(n.raw)
    assert "plain http:// is refused" in text, text
    never_leaks(n)


def test_plain_http_to_loopback_works(fake_slack, notify_factory):
    slack = fake_slack()
    n = notify_factory([slack.url()]).start()
    n.send([alert(1)])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 1, 20)
    assert slack.alerts_counted() == 1


def sections(slack):
    return [b["text"]["text"] for r in slack.snapshot() for b in r["body"]["blocks"]
            if b["type"] == "section"]


def test_a_silence_mutes_until_it_is_removed(fake_slack, notify_factory, pki):
    from datetime import datetime, timedelta, timezone
    from conftest import redis
    slack = fake_slack(cert=pki["ok"])
    n = notify_factory([slack.url()], ca=pki["ca"])
    now = datetime.now(timezone.utc)
    sil = {"id": "s-1", "matchers": [{"name": "model", "value": "churn", "isRegex": False},
                                     {"name": "alertname", "value": "feature_.*",
                                      "isRegex": True}],
           "startsAt": (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
           "endsAt": (now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
           "createdBy": "test", "comment": "maintenance"}
    redis("HSET", n.silences_key, "s-1", json.dumps(sil))
    n.start()
    n.send([alert(1), alert(2, model="fraud")])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="silenced"', 1, 20)
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 1, 20)
    time.sleep(1.5)
    texts = sections(slack)
    assert len(texts) == 1 and "`fraud`" in texts[0], texts
    redis("HDEL", n.silences_key, "s-1")
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 2, 20)
    texts = sections(slack)
    assert len(texts) == 2 and "`churn`" in texts[1], texts
    assert n.metric("mlops_notify_repeats_total") == 1


def test_dataset_drift_inhibits_feature_drift_of_its_model(fake_slack, notify_factory, pki):
    slack = fake_slack(cert=pki["ok"])
    n = notify_factory([slack.url()], ca=pki["ca"]).start()
    ds = alert(100, alertname="dataset_drift", severity="critical",
               metric="dataset_drift_share", labels={})
    n.send([ds])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 1, 20)
    n.send([alert(1), alert(2, model="fraud")])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="inhibited"', 1, 20)
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 2, 20)
    time.sleep(1.0)
    texts = sections(slack)
    assert len(texts) == 2 and "dataset_drift" in texts[0] and "`fraud`" in texts[1], texts
    # the inhibitor resolves: its resolution goes out, and so does the muted alert
    n.send([dict(ds, state="resolved")])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 4, 20)
    texts = sections(slack)
    assert any("*RESOLVED*" in t and "dataset_drift" in t for t in texts), texts
    assert any("*FIRING*" in t and "`churn`" in t and "feature_drift" in t for t in texts[2:]), texts


def test_a_firing_alert_repeats_until_resolved(fake_slack, notify_factory, pki):
    slack = fake_slack(cert=pki["ok"])
    n = notify_factory([slack.url()], ca=pki["ca"],
                       extra=["--repeat-interval-ms", "2000"]).start()
    n.send([alert(1)])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 1, 20)
    n.wait_metric("mlops_notify_repeats_total", "", 1, 10)
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 2, 20)
    reqs = slack.snapshot()
    assert reqs[1]["t"] - reqs[0]["t"] >= 2.0
    n.send([alert(1, state="resolved")])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 3, 20)
    time.sleep(3.5)
    texts = sections(slack)
    assert "*RESOLVED*" in texts[-1] and len(texts) == 3, texts


def test_a_restart_does_not_resend_what_was_delivered(fake_slack, notify_factory, pki):
    slack = fake_slack(cert=pki["ok"])
    n = notify_factory([slack.url()], ca=pki["ca"]).start()
    n.send([alert(1), alert(2)])
    n.wait_metric("mlops_notify_alerts_total", 'outcome="delivered"', 2, 20)
    time.sleep(0.3)
    n.kill9()  # before the auto-commit: the offsets are likely not committed
    again = notify_factory([slack.url()], ca=pki["ca"], topics=(n.alerts, n.dlq))
    again.args[again.args.index("--group-id") + 1] = n.group
    again.start()
    time.sleep(5)
    assert slack.alerts_counted() == 2, [r["body"]["text"] for r in slack.snapshot()]
    assert again.metric("mlops_notify_firing") == 2
