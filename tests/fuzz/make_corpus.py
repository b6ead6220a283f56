#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ from our own files:
the example specs, the golden bad events (tests/golden/ingest_bad_events.jsonl),
events made valid for each example spec, requests like those of
tests/registry, alerts like those of tests/monitor, and small model/1 artifacts
trained by our own trainer on `mlopsctl datagen` data (needs a build: BUILD_DIR
or ./build). No third-party corpora. Run from anywhere:

    python3 tests/fuzz/make_corpus.py            # rewrites every corpus folder
    BUILD_DIR=build python3 tests/fuzz/make_corpus.py

Seeds are named <target>/<short name>; the fuzzer's own finds stay in the
build folder (tests/fuzz/run.sh), so this tree only holds what is written here.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
BUILD = Path(os.environ.get("BUILD_DIR", ROOT / "build")).resolve()


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if not isinstance(data, (bytes, str)):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def reset(target):
    shutil.rmtree(CORPUS / target, ignore_errors=True)
    (CORPUS / target).mkdir(parents=True)


def valid_event(spec, i=1):
    """An event every rule of the spec takes (values from the spec itself)."""
    ev = {spec["entity"]: f"ent-{i}", spec["event_id"]: f"ev-{i}",
          spec["event_time"]: "2026-11-25T10:00:00Z"}
    for f in spec["fields"]:
        t = f["type"]
        if t == "categorical":
            v = (f.get("values") or ["a"])[0]
        elif t == "boolean":
            v = i % 2 == 0
        elif t == "timestamp":
            v = "2025-06-01T00:00:00Z"
        else:
            lo, hi = f.get("min", 0), f.get("max", lo + 10 if (lo := f.get("min", 0)) else 10)
            v = lo + (hi - lo) / 3
            if t == "integer":
                v = int(v)
        ev[f["name"]] = v
    return ev


def ingest():
    reset("ingest")
    seen = set()
    for line in (ROOT / "tests/golden/ingest_bad_events.jsonl").read_text().splitlines():
        case = json.loads(line)
        key = (case["reason"], case["field"])
        if key in seen:  # one case per reason and field keeps the corpus small
            continue
        seen.add(key)
        write("ingest", f"golden-{len(seen):03d}", case["payload"])
    for p in sorted((ROOT / "examples").glob("*/spec.json")):
        spec = json.loads(p.read_text())
        for i in (1, 2):
            write("ingest", f"valid-{p.parent.name}-{i}", valid_event(spec, i))
        ev = valid_event(spec)
        for f in spec["fields"]:  # every field missing once: the missing policies
            if not f.get("required"):
                ev.pop(f["name"], None)
        write("ingest", f"sparse-{p.parent.name}", ev)


def spec():
    reset("spec")
    for p in sorted((ROOT / "examples").glob("*/spec.json")):
        write("spec", p.parent.name, p.read_bytes())


def registry():
    reset("registry")
    RM = "/api/2.0/mlflow/registered-models/"
    MV = "/api/2.0/mlflow/model-versions/"
    V1 = "/api/v1/"
    reqs = [
        ("POST", RM + "create", {"name": "churn", "description": "d",
                                 "tags": [{"key": "team", "value": "risk"}]}),
        ("GET", RM + "get?name=churn", None),
        ("POST", RM + "rename", {"name": "churn", "new_name": "churn2"}),
        ("PATCH", RM + "update", {"name": "churn", "description": "x"}),
        ("DELETE", RM + "delete", {"name": "churn"}),
        ("GET", RM + "search?filter=name%20LIKE%20%27srch-%25%27%20AND%20tags.parity%20%3D"
                "%20%27even%27&max_results=3&order_by=name%20DESC", None),
        ("GET", RM + "search", {"filter": "name ILIKE 'SRCH-0%'", "order_by": ["name DESC"],
                                "max_results": 3, "page_token": "3"}),
        ("POST", RM + "get-latest-versions", {"name": "churn", "stages": ["Production"]}),
        ("POST", RM + "set-tag", {"name": "churn", "key": "k", "value": "v"}),
        ("POST", RM + "alias", {"name": "churn", "alias": "champion", "version": "1"}),
        ("GET", RM + "alias?name=churn&alias=champion", None),
        ("POST", MV + "create", {"name": "churn", "source": "s3://b/m", "run_id": "run1"}),
        ("GET", MV + "get?name=churn&version=1", None),
        ("GET", MV + "search?filter=name%20%3D%20%27mv-a%27%20AND%20run_id%20%3D%20%27run1%27",
         None),
        ("GET", MV + "search", {"filter": "tags.`mlflow.prompt.is_prompt` != 'true' AND "
                                          "version_number >= 2", "order_by": "version ASC"}),
        ("POST", MV + "transition-stage", {"name": "churn", "version": "1", "stage": "production",
                                           "archive_existing_versions": True}),
        ("GET", MV + "get-download-uri?name=churn&version=1", None),
        ("GET", V1 + "routes", None),
        ("POST", V1 + "models/churn/versions", None),
        ("PUT", V1 + "models/churn/versions/1/gates", {"gates": {"auc": 0.8}}),
        ("POST", V1 + "models/churn/aliases/champion/promote",
         {"version": 2, "expected_version": 1, "force": False}),
        ("POST", V1 + "models/ch%2Furn/aliases/champion/rollback", {"reason": "bad"}),
        ("GET", V1 + "models/churn/history?alias=champion&limit=10", None),
        ("PUT", V1 + "models/churn/deployment", {"canary_share": 0.1, "mode": "canary"}),
        ("GET", V1 + "audit?after_id=3&limit=5", None),
        ("POST", V1 + "tokens", {"role": "trainer", "name": "t", "expires_in": "30d"}),
        ("DELETE", V1 + "tokens/7", None),
        ("GET", V1 + "whoami?access_token=x", None),
    ]
    for i, (method, uri, body) in enumerate(reqs, 1):
        text = f"{method} {uri}\n" + (json.dumps(body) if body is not None else "")
        write("registry", f"req-{i:02d}", text)


def alert(i, state="firing", **over):
    a = {"schema": "alert/1", "fingerprint": f"fp-{i:05d}", "state": state,
         "alertname": "feature_drift", "severity": "warning", "metric": "drift_wasserstein",
         "value": 0.2 + i / 1000, "threshold": 0.1, "comparison": ">=",
         "window": "1000 events", "model": "churn", "labels": {"feature": f"f{i}"},
         "annotations": {"summary": f"feature f{i} drifted <&>",
                         "runbook_url": "https://runbooks.example/drift"},
         "starts_at": "2026-12-02T10:00:00.000Z"}
    a.update(over)
    return a


def slack():
    reset("slack")
    write("slack", "one", alert(1))
    write("slack", "resolved", alert(2, "resolved", severity="critical"))
    write("slack", "digest", [alert(i, "firing" if i % 3 else "resolved",
                                    severity=["info", "warning", "critical"][i % 3])
                              for i in range(12)])
    write("slack", "long", [alert(i, annotations={"summary": "é" * 900}) for i in range(4)])
    write("slack", "url", "https://hooks.slack.com/services/T000/B000/XXXX")
    write("slack", "retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")


def model():
    reset("model")
    trainer = BUILD / "services/trainer/mlops-trainer"
    ctl = BUILD / "cli/mlopsctl"
    if not trainer.exists() or not ctl.exists():
        sys.exit(f"make_corpus: build first ({trainer} not found; set BUILD_DIR)")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "a.csv"
        subprocess.run([ctl, "datagen", "attrition", "--rows", "600", "--seed", "3", "--out", csv],
                       check=True, capture_output=True)
        common = ["--data", csv, "--min-rows", "10", "--profile-sample=false", "--quiet"]
        runs = {
            "attrition-logreg": ["--spec", ROOT / "examples/attrition/spec.json",
                                 "--algo", "logreg"],
            "attrition-gbdt": ["--spec", ROOT / "examples/attrition/spec.json", "--algo", "gbdt",
                               "--n-trees", "4", "--max-depth", "3"],
        }
        # a small inferred spec: four columns of the same data
        lines = csv.read_text().splitlines()
        head = lines[0].split(",")
        keep = [head.index(c) for c in ("employee_id", "event_id", "event_time", "age",
                                        "department", "overtime", "left")]
        small = Path(tmp) / "small.csv"
        small.write_text("\n".join(",".join(r.split(",")[k] for k in keep)
                                   for r in lines) + "\n")
        runs["small-gbdt"] = ["--data", small, "--label", "left", "--positive", "yes",
                              "--entity", "employee_id", "--event-id", "event_id",
                              "--event-time", "event_time", "--algo", "gbdt",
                              "--n-trees", "3", "--max-depth", "2"]
        for name, args in runs.items():
            out = Path(tmp) / f"{name}.json"
            argv = [trainer, "fit", *common, *args, "--out", out]
            if name == "small-gbdt":
                argv = [trainer, "fit", "--min-rows", "10", "--profile-sample=false", "--quiet",
                        *args, "--out", out]
            subprocess.run(argv, check=True)
            write("model", name, out.read_bytes())


if __name__ == "__main__":
    for step in (ingest, spec, registry, slack, model):
        step()
    for d in sorted(CORPUS.iterdir()):
        files = list(d.iterdir())
        print(f"make_corpus: {d.name}: {len(files)} seeds, "
              f"{sum(f.stat().st_size for f in files)} bytes")
