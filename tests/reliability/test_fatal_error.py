"""Fatal-error hygiene (issue 9, reliability): a fatal librdkafka error in a service's
producer (raised with rd_kafka_test_fatal_error through the MLOPS_TEST_KAFKA_FATAL_FILE
test hook, as a broker fencing the producer would) makes the service log the error code,
exit non-zero (status 1, not a crash) and be restarted by deploy/services.sh; in
exactly-once mode nothing is lost and nothing is duplicated in features or predictions.
Ingest and the scorer each take one fatal error mid-stream (CI and soak alike: 10,000
events); the verifier is harness.verify."""
import os
import subprocess
import time

from harness import BUILD, EVENTS, Pipeline, metric, verify


def test_fatal_producer_error_exits_restarts_and_loses_nothing(tmp_path):
    p = Pipeline(tmp_path, True, EVENTS)
    try:
        triggers = {}
        for name in ("ingest", "scorer"):
            triggers[name] = tmp_path / f"fatal-{name}"
            p.env["MLOPS_TEST_KAFKA_FATAL_FILE"] = str(triggers[name])
            p.services("up", name)  # the supervisor keeps this environment for restarts
        first = {n: p.child(n) for n in triggers}
        rate = EVENTS / 12
        gen = subprocess.Popen([str(BUILD / "cli/mlopsctl"), "datagen", "attrition", "--rows",
                                str(EVENTS), "--seed", str(p.seed), "--topic", p.topics["raw"],
                                "--labels-topic", p.topics["labels"], "--rate", str(rate),
                                "--bad-fraction", "0.01"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, delay in (("ingest", 3), ("scorer", 3)):
            time.sleep(delay)
            triggers[name].write_text("")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    now = p.child(name)
                except (OSError, ValueError):
                    now = None
                if now and now != first[name] and \
                        metric(p.ports[name], f"mlops_{name}_lag") is not None:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"{name} was not restarted after its fatal error")
            assert not triggers[name].exists(), f"{name} never looked at the trigger"
        _, err = gen.communicate(timeout=300)
        assert gen.returncode == 0, err
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if metric(p.ports["ingest"], "mlops_ingest_lag") == 0 and \
                    metric(p.ports["scorer"], "mlops_scorer_lag") == 0:
                break
            time.sleep(1)
        time.sleep(3)
        r = verify(p)
        for name in triggers:
            log = p.log(name)
            assert "raising a fatal Kafka error" in log, f"{name}: the hook did not fire"
            assert '"msg":"fatal Kafka error' in log and "OUT_OF_ORDER_SEQUENCE_NUMBER" in log, \
                f"{name} did not log the fatal error with its code"
            assert f"mlops-{name} exited with status 1; restart" in log, \
                f"{name} did not exit with status 1 (a crash or a hang instead?)"
        assert r["lost_input"] == 0 and r["lost_predictions"] == 0, r
        assert r["dup_placed"] == 0 and r["dup_predictions"] == 0, r
        assert r["phantom"] == 0 and r["inconsistent"] == 0, r
        assert r["features"] > 0 and r["dlq"] > 0, r
    finally:
        p.close()


def p_build(rel):
    return BUILD / rel
