"""mlops-registry routes on the real PostgreSQL: MLflow's model-registry REST
and our /api/v1, happy paths and errors. Expected values come from the
requests the test made (names, bytes, hashlib digests), never from a run."""
import json
import subprocess
import urllib.parse

import pytest

from conftest import model_doc, sha256

MF = "/api/2.0/mlflow"
RM = MF + "/registered-models"
MV = MF + "/model-versions"


def q(**kw):
    return "?" + urllib.parse.urlencode(kw, doseq=True)


def err(r, status, code=None):
    assert r.status == status, r
    body = r.json()
    assert set(body) == {"error_code", "message"}, body
    if code:
        assert body["error_code"] == code, body
    assert body["message"]
    return body


def register(reg, name, token, passed=True, extra=None):
    doc = model_doc(name, passed, extra)
    r = reg.request("POST", f"/api/v1/models/{urllib.parse.quote(name, safe='')}/versions",
                    raw=doc, token=token, headers={"X-Artifact-Sha256": sha256(doc)})
    assert r.status == 201, r
    return int(r.json()["model_version"]["version"]), doc


def test_registered_model_create_get_update_tags(registry, tokens):
    t = tokens["trainer"]
    r = registry.post(RM + "/create", {"name": "rm-a", "description": "first",
                                       "tags": [{"key": "team", "value": "risk"}]}, token=t)
    assert r.status == 200, r
    m = r.json()["registered_model"]
    assert m["name"] == "rm-a" and m["description"] == "first"
    assert m["tags"] == [{"key": "team", "value": "risk"}]
    assert m["aliases"] == [] and m["latest_versions"] == []
    assert isinstance(m["creation_timestamp"], int)
    err(registry.post(RM + "/create", {"name": "rm-a"}, token=t), 409, "RESOURCE_ALREADY_EXISTS")
    err(registry.post(RM + "/create", {}, token=t), 400, "INVALID_PARAMETER_VALUE")
    err(registry.post(RM + "/create", {"name": 5}, token=t), 400, "INVALID_PARAMETER_VALUE")
    g = registry.get(RM + "/get" + q(name="rm-a"), token=tokens["reader"])
    assert g.status == 200 and g.json()["registered_model"]["name"] == "rm-a"
    err(registry.get(RM + "/get" + q(name="nope"), token=tokens["reader"]), 404,
        "RESOURCE_DOES_NOT_EXIST")
    err(registry.get(RM + "/get", token=tokens["reader"]), 400)
    u = registry.call("PATCH", RM + "/update", {"name": "rm-a", "description": "second"}, token=t)
    assert u.status == 200 and u.json()["registered_model"]["description"] == "second"
    err(registry.call("PATCH", RM + "/update", {"name": "nope", "description": "x"}, token=t), 404)
    assert registry.post(RM + "/set-tag", {"name": "rm-a", "key": "k2", "value": "v2"},
                         token=t).status == 200
    tags = registry.get(RM + "/get" + q(name="rm-a")).json()["registered_model"]["tags"]
    assert tags == [{"key": "k2", "value": "v2"}, {"key": "team", "value": "risk"}]
    assert registry.call("DELETE", RM + "/delete-tag", {"name": "rm-a", "key": "k2"},
                         token=t).status == 200
    err(registry.call("DELETE", RM + "/delete-tag", {"name": "rm-a", "key": "k2"}, token=t), 404)
    err(registry.post(RM + "/set-tag", {"name": "rm-a", "value": "v"}, token=t), 400)


def test_rename_and_delete(registry, tokens):
    t = tokens["trainer"]
    for n in ("rn-a", "rn-b"):
        assert registry.post(RM + "/create", {"name": n}, token=t).status == 200
    assert registry.post(MV + "/create", {"name": "rn-a", "source": "s3://b/1"}, token=t).status == 200
    r = registry.post(RM + "/rename", {"name": "rn-a", "new_name": "rn-c"})
    assert r.status == 200 and r.json()["registered_model"]["name"] == "rn-c"
    assert r.json()["registered_model"]["latest_versions"][0]["name"] == "rn-c"
    err(registry.get(RM + "/get" + q(name="rn-a")), 404)
    err(registry.post(RM + "/rename", {"name": "rn-c", "new_name": "rn-b"}), 409,
        "RESOURCE_ALREADY_EXISTS")
    err(registry.post(RM + "/rename", {"name": "rn-c"}), 400)
    assert registry.call("DELETE", RM + "/delete", {"name": "rn-c"}).status == 200
    err(registry.get(RM + "/get" + q(name="rn-c")), 404)
    err(registry.call("DELETE", RM + "/delete", {"name": "rn-c"}), 404)
    # the name is free again; the deleted model's rows stay for the audit
    assert registry.post(RM + "/create", {"name": "rn-c"}, token=t).status == 200


def test_search_registered_models(registry, tokens):
    t = tokens["trainer"]
    names = [f"srch-{i:02d}" for i in range(7)]
    for i, n in enumerate(names):
        tags = [{"key": "parity", "value": "even" if i % 2 == 0 else "odd"}]
        assert registry.post(RM + "/create", {"name": n, "tags": tags}, token=t).status == 200
    r = registry.get(RM + "/search" + q(filter="name LIKE 'srch-%'"), token=tokens["reader"])
    assert r.status == 200
    assert [m["name"] for m in r.json()["registered_models"]] == names
    r = registry.get(RM + "/search" + q(filter="name LIKE 'srch-%' AND tags.parity = 'even'"))
    assert [m["name"] for m in r.json()["registered_models"]] == names[0::2]
    r = registry.get(RM + "/search" + q(filter="name = 'srch-03'"))
    assert [m["name"] for m in r.json()["registered_models"]] == ["srch-03"]
    r = registry.get(RM + "/search" + q(filter="name ILIKE 'SRCH-0%'", order_by="name DESC"))
    assert [m["name"] for m in r.json()["registered_models"]] == names[::-1]
    # pages of 3
    seen, token = [], None
    for _ in range(5):
        params = {"filter": "name LIKE 'srch-%'", "max_results": 3}
        if token:
            params["page_token"] = token
        page = registry.get(RM + "/search" + q(**params)).json()
        seen += [m["name"] for m in page["registered_models"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == names
    err(registry.get(RM + "/search" + q(filter="name ~ 'x'")), 400, "INVALID_PARAMETER_VALUE")
    err(registry.get(RM + "/search" + q(filter="bogus = 'x'")), 400)
    err(registry.get(RM + "/search" + q(filter="name = 'unterminated")), 400)
    err(registry.get(RM + "/search" + q(order_by="secret ASC")), 400)
    err(registry.get(RM + "/search" + q(max_results=0)), 400)
    err(registry.get(RM + "/search" + q(page_token="zz")), 400)


def test_model_versions_crud_search_and_numbers_never_reused(registry, tokens):
    t = tokens["trainer"]
    assert registry.post(RM + "/create", {"name": "mv-a"}, token=t).status == 200
    vs = []
    for i in range(3):
        r = registry.post(MV + "/create", {"name": "mv-a", "source": f"s3://b/{i}", "run_id": f"run{i}",
                                           "tags": [{"key": "i", "value": str(i)}],
                                           "description": f"d{i}"}, token=t)
        assert r.status == 200, r
        mv = r.json()["model_version"]
        assert mv["current_stage"] == "None" and mv["source"] == f"s3://b/{i}"
        assert mv["tags"] == [{"key": "i", "value": str(i)}] and mv["status"] == "READY"
        vs.append(mv["version"])
    assert vs == ["1", "2", "3"]
    err(registry.post(MV + "/create", {"name": "nope", "source": "x"}, token=t), 404)
    err(registry.post(MV + "/create", {"name": "mv-a"}, token=t), 400)
    g = registry.get(MV + "/get" + q(name="mv-a", version="2"), token=tokens["reader"])
    assert g.status == 200 and g.json()["model_version"]["run_id"] == "run1"
    err(registry.get(MV + "/get" + q(name="mv-a", version="abc")), 400)
    err(registry.get(MV + "/get" + q(name="mv-a", version="99")), 404, "RESOURCE_DOES_NOT_EXIST")
    u = registry.call("PATCH", MV + "/update", {"name": "mv-a", "version": "2", "description": "new"},
                      token=t)
    assert u.status == 200 and u.json()["model_version"]["description"] == "new"
    assert registry.post(MV + "/set-tag", {"name": "mv-a", "version": "2", "key": "k",
                                           "value": "v"}, token=t).status == 200
    tags = registry.get(MV + "/get" + q(name="mv-a", version="2")).json()["model_version"]["tags"]
    assert {"key": "k", "value": "v"} in tags
    assert registry.call("DELETE", MV + "/delete-tag", {"name": "mv-a", "version": "2", "key": "k"},
                         token=t).status == 200
    err(registry.call("DELETE", MV + "/delete-tag", {"name": "mv-a", "version": "2", "key": "k"},
                      token=t), 404)
    assert registry.call("DELETE", MV + "/delete", {"name": "mv-a", "version": "3"}).status == 200
    err(registry.get(MV + "/get" + q(name="mv-a", version="3")), 404)
    err(registry.call("DELETE", MV + "/delete", {"name": "mv-a", "version": "3"}), 404)
    r = registry.post(MV + "/create", {"name": "mv-a", "source": "s3://b/again"}, token=t)
    assert r.json()["model_version"]["version"] == "4"  # 3 is never handed out again
    s = registry.get(MV + "/search" + q(filter="name = 'mv-a'")).json()["model_versions"]
    assert sorted(int(v["version"]) for v in s) == [1, 2, 4]
    s = registry.get(MV + "/search" + q(filter="name = 'mv-a' AND run_id = 'run1'")).json()
    assert [v["version"] for v in s["model_versions"]] == ["2"]
    s = registry.get(MV + "/search" + q(filter="name='mv-a' AND version_number >= 2",
                                        order_by="version_number ASC")).json()
    assert [v["version"] for v in s["model_versions"]] == ["2", "4"]
    p1 = registry.get(MV + "/search" + q(filter="name='mv-a'", max_results=2)).json()
    assert len(p1["model_versions"]) == 2 and p1["next_page_token"]
    p2 = registry.get(MV + "/search" + q(filter="name='mv-a'", max_results=2,
                                         page_token=p1["next_page_token"])).json()
    assert len(p2["model_versions"]) == 1 and "next_page_token" not in p2
    err(registry.get(MV + "/search" + q(filter="version_number = 'x'")), 400)


def test_stages_gates_and_latest_versions(registry, tokens):
    t = tokens["trainer"]
    assert registry.post(RM + "/create", {"name": "st-a"}, token=t).status == 200
    plain = registry.post(MV + "/create", {"name": "st-a", "source": "s3://x"}, token=t).json()
    assert plain["model_version"]["version"] == "1"
    # a version without a model/1 artifact and gate results cannot serve
    err(registry.post(MV + "/transition-stage", {"name": "st-a", "version": "1",
                                                 "stage": "Production",
                                                 "archive_existing_versions": False}),
        409, "INVALID_STATE")
    v2, _ = register(registry, "st-a", t, passed=True)
    v3, _ = register(registry, "st-a", t, passed=True)
    v4, _ = register(registry, "st-a", t, passed=False)
    err(registry.post(MV + "/transition-stage", {"name": "st-a", "version": str(v4),
                                                 "stage": "Staging"}), 409, "INVALID_STATE")
    # an admin may force it, with a reason (recorded in the history)
    err(registry.post(MV + "/transition-stage", {"name": "st-a", "version": str(v4),
                                                 "stage": "Staging", "force": True}), 400)
    r = registry.post(MV + "/transition-stage", {"name": "st-a", "version": str(v4),
                                                 "stage": "Staging", "force": True,
                                                 "reason": "manual check passed"})
    assert r.status == 200 and r.json()["model_version"]["current_stage"] == "Staging"
    assert registry.post(MV + "/transition-stage", {"name": "st-a", "version": str(v4),
                                                    "stage": "None"}).status == 200
    r = registry.post(MV + "/transition-stage", {"name": "st-a", "version": str(v2),
                                                 "stage": "production"})
    assert r.status == 200 and r.json()["model_version"]["current_stage"] == "Production"
    # archive_existing_versions=false: two Production versions, as in MLflow
    r = registry.post(MV + "/transition-stage", {"name": "st-a", "version": str(v3),
                                                 "stage": "Production",
                                                 "archive_existing_versions": False})
    assert r.status == 200
    stages = {v["version"]: v["current_stage"] for v in registry.get(
        MV + "/search" + q(filter="name='st-a'")).json()["model_versions"]}
    assert stages[str(v2)] == "Production" and stages[str(v3)] == "Production"
    # archive_existing_versions=true: the others in Production go to Archived
    r = registry.post(MV + "/transition-stage", {"name": "st-a", "version": str(v2),
                                                 "stage": "Production",
                                                 "archive_existing_versions": True})
    assert r.status == 200
    stages = {v["version"]: v["current_stage"] for v in registry.get(
        MV + "/search" + q(filter="name='st-a'")).json()["model_versions"]}
    assert stages == {"1": "None", str(v2): "Production", str(v3): "Archived", str(v4): "None"}
    # archiving needs no gates
    assert registry.post(MV + "/transition-stage", {"name": "st-a", "version": "1",
                                                    "stage": "Archived"}).status == 200
    err(registry.post(MV + "/transition-stage", {"name": "st-a", "version": "1",
                                                 "stage": "Live"}), 400)
    lat = registry.post(RM + "/get-latest-versions", {"name": "st-a", "stages": ["Production"]},
                        token=tokens["reader"])
    assert lat.status == 200
    assert [v["version"] for v in lat.json()["model_versions"]] == [str(v2)]
    lat = registry.get(RM + "/get-latest-versions" + q(name="st-a"), token=tokens["reader"]).json()
    # latest per stage: Archived -> v3 (newest archived), None -> v4, Production -> v2
    assert sorted((v["current_stage"], v["version"]) for v in lat["model_versions"]) == \
        sorted([("Archived", str(v3)), ("None", str(v4)), ("Production", str(v2))])
    err(registry.post(RM + "/get-latest-versions", {"name": "st-a", "stages": ["Bogus"]}), 400)
    hist = registry.get("/api/v1/models/st-a/history").json()["stages"]
    assert [(h["version"], h["from_stage"], h["to_stage"], h["forced"]) for h in hist][:5] == [
        (v4, "None", "Staging", True), (v4, "Staging", "None", False),
        (v2, "None", "Production", False), (v3, "None", "Production", False),
        (v3, "Production", "Archived", False)]
    assert hist[0]["reason"] == "manual check passed"


def test_aliases_mlflow(registry, tokens):
    t = tokens["trainer"]
    assert registry.post(RM + "/create", {"name": "al-a"}, token=t).status == 200
    registry.post(MV + "/create", {"name": "al-a", "source": "s3://plain"}, token=t)
    v2, _ = register(registry, "al-a", t)
    err(registry.post(RM + "/alias", {"name": "al-a", "alias": "champion", "version": "1"}),
        409, "INVALID_STATE")
    r = registry.post(RM + "/alias", {"name": "al-a", "alias": "champion", "version": str(v2)})
    assert r.status == 200, r
    g = registry.get(RM + "/alias" + q(name="al-a", alias="champion"), token=tokens["reader"])
    assert g.status == 200 and g.json()["model_version"]["version"] == str(v2)
    assert g.json()["model_version"]["aliases"] == ["champion"]
    m = registry.get(RM + "/get" + q(name="al-a")).json()["registered_model"]
    assert m["aliases"] == [{"alias": "champion", "version": str(v2)}]
    err(registry.post(RM + "/alias", {"name": "al-a", "alias": "latest", "version": str(v2)}), 400)
    err(registry.post(RM + "/alias", {"name": "al-a", "alias": "bad alias", "version": str(v2)}), 400)
    err(registry.post(RM + "/alias", {"name": "al-a", "alias": "x", "version": "77"}), 404)
    assert registry.call("DELETE", RM + "/alias" + q(name="al-a", alias="champion")).status == 200
    err(registry.get(RM + "/alias" + q(name="al-a", alias="champion")), 404)
    err(registry.call("DELETE", RM + "/alias", {"name": "al-a", "alias": "champion"}), 404)


def test_artifacts_upload_download_sha256(registry, tokens):
    t = tokens["trainer"]
    doc = model_doc("art-a", True, {"blob": "é" * 1000})
    r = registry.request("POST", "/api/v1/models/art-a/versions", raw=doc, token=t,
                         headers={"X-Artifact-Sha256": sha256(doc)})
    assert r.status == 201, r
    body = r.json()
    assert body["artifact"] == {"schema": "model/1", "sha256": sha256(doc), "size_bytes": len(doc)}
    assert body["gates_passed"] is True
    v = body["model_version"]["version"]
    d = registry.get(f"/api/v1/models/art-a/versions/{v}/artifact", token=tokens["reader"])
    assert d.status == 200 and d.body == doc
    assert d.headers["X-Artifact-Sha256"] == sha256(doc)
    u = registry.get(MV + "/get-download-uri" + q(name="art-a", version=v)).json()
    assert u["artifact_uri"].endswith(f"/api/v1/models/art-a/versions/{v}/artifact")
    # wrong digest, not model/1, not JSON
    err(registry.request("POST", "/api/v1/models/art-a/versions", raw=doc, token=t,
                         headers={"X-Artifact-Sha256": "0" * 64}), 400, "INVALID_PARAMETER_VALUE")
    err(registry.request("POST", "/api/v1/models/art-a/versions",
                         raw=json.dumps({"schema": "other/1"}).encode(), token=t), 400)
    err(registry.request("POST", "/api/v1/models/art-a/versions", raw=b"{not json", token=t), 400)
    # a model/1 the scorer could not load is refused, naming the field
    broken = json.loads(doc)
    broken["slots"] = broken["slots"][:-1]
    r = registry.request("POST", "/api/v1/models/art-a/versions", raw=json.dumps(broken).encode(),
                         token=t)
    err(r, 400, "INVALID_PARAMETER_VALUE")
    assert "not a valid model/1: slots:" in r.json()["message"], r.json()
    r = registry.request("POST", "/api/v1/models/art-a/versions",
                         raw=json.dumps({"schema": "model/1", "name": "x"}).encode(), token=t)
    err(r, 400, "INVALID_PARAMETER_VALUE")
    assert "not a valid model/1" in r.json()["message"]
    # PUT onto an MLflow-made version: once, the same bytes again are fine, others are not
    mv = registry.post(MV + "/create", {"name": "art-a", "source": "s3://later"}, token=t).json()
    v2 = mv["model_version"]["version"]
    assert registry.get(MV + "/get-download-uri" + q(name="art-a", version=v2)).json() == \
        {"artifact_uri": "s3://later"}
    err(registry.get(f"/api/v1/models/art-a/versions/{v2}/artifact"), 404)
    path = f"/api/v1/models/art-a/versions/{v2}/artifact"
    assert registry.request("PUT", path, raw=doc, token=t).status == 201
    assert registry.request("PUT", path, raw=doc, token=t).status == 200
    err(registry.request("PUT", path, raw=model_doc("other"), token=t), 409)
    assert registry.get(path).body == doc
    err(registry.request("PUT", "/api/v1/models/art-a/versions/999/artifact", raw=doc, token=t), 404)
    err(registry.request("PUT", "/api/v1/models/art-a/versions/x/artifact", raw=doc, token=t), 400)


def test_gates_written_only_by_trainers(registry, tokens):
    t = tokens["trainer"]
    v, _ = register(registry, "gt-a", t, passed=None)
    p = f"/api/v1/models/gt-a/versions/{v}/gates"
    err(registry.call("PUT", p, {"passed": True}), 403, "PERMISSION_DENIED")  # admin
    err(registry.call("PUT", p, {"passed": "yes"}, token=t), 400)
    err(registry.post("/api/v1/models/gt-a/aliases/champion/promote", {"version": v}), 409,
        "INVALID_STATE")
    r = registry.call("PUT", p, {"passed": True, "auc": 0.93}, token=t)
    assert r.status == 200 and r.json()["gates_passed"] is True
    assert registry.post("/api/v1/models/gt-a/aliases/champion/promote",
                         {"version": v}).status == 200


def test_promote_expected_version_force_and_rollback(registry, tokens):
    t = tokens["trainer"]
    v1, _ = register(registry, "pr-a", t)
    v2, _ = register(registry, "pr-a", t)
    v3, _ = register(registry, "pr-a", t, passed=False)
    P = "/api/v1/models/pr-a/aliases/champion/promote"
    R = "/api/v1/models/pr-a/aliases/champion/rollback"
    err(registry.post(R, {}), 404)  # not set yet
    r = registry.post(P, {"version": v1, "expected_version": None})
    assert r.status == 200 and r.json()["previous_version"] is None, r
    err(registry.post(P, {"version": v2, "expected_version": None}), 409, "RESOURCE_CONFLICT")
    err(registry.post(P, {"version": v2, "expected_version": v2}), 409, "RESOURCE_CONFLICT")
    r = registry.post(P, {"version": v2, "expected_version": v1})
    assert r.status == 200 and r.json()["previous_version"] == v1
    err(registry.post(P, {"version": v3}), 409, "INVALID_STATE")
    err(registry.post(P, {"version": v3, "force": True}), 400)  # a reason is required
    err(registry.post(P, {"version": v3, "force": True, "reason": "x"}, token=tokens["trainer"]), 403)
    r = registry.post(P, {"version": v3, "force": True, "reason": "hotfix for incident 7"})
    assert r.status == 200 and r.json()["forced"] is True
    err(registry.post(P, {"version": "two"}), 400)
    err(registry.post(P, {}), 400)
    err(registry.post("/api/v1/models/pr-a/aliases/champion/promote", {"version": 99}), 404)
    err(registry.post("/api/v1/models/nope/aliases/champion/promote", {"version": 1}), 404)
    # rollback: back to the previous holder (v2), forced because v3 came in by force? no:
    # the target v2 passed its gates, so no force is needed
    r = registry.post(R, {"expected_version": v3})
    assert r.status == 200 and r.json()["version"] == v2 and r.json()["previous_version"] == v3
    err(registry.post(R, {"expected_version": v3}), 409)  # v2 holds it now
    g = registry.get(RM + "/alias" + q(name="pr-a", alias="champion")).json()
    assert g["model_version"]["version"] == str(v2)
    h = registry.get("/api/v1/models/pr-a/history" + q(alias="champion")).json()["aliases"]
    assert [(x["from_version"], x["to_version"], x["forced"]) for x in h] == [
        (None, v1, False), (v1, v2, False), (v2, v3, True), (v3, v2, False)]
    assert h[2]["reason"] == "hotfix for incident 7"
    err(registry.get("/api/v1/models/nope/history"), 404)


def test_trainer_moves_only_challenger_and_never_forces(registry, db, tokens):
    """The streaming trainer sets 'challenger' with its own token; every
    other alias, and force, stay an admin's."""
    t = tokens["trainer"]
    v1, doc1 = register(registry, "tc-a", t)
    v2, _ = register(registry, "tc-a", t, passed=False)
    v3, _ = register(registry, "tc-a", t, passed=None)
    C = "/api/v1/models/tc-a/aliases/challenger/promote"
    outbox_before = int(db.sql("SELECT coalesce(max(id), 0) FROM outbox")[0])
    r = registry.post(C, {"version": v1, "expected_version": None}, token=t)
    assert r.status == 200, r
    assert (r.json()["alias"], r.json()["version"], r.json()["forced"]) == ("challenger", v1, False)
    g = registry.get(RM + "/alias" + q(name="tc-a", alias="challenger")).json()
    assert g["model_version"]["version"] == str(v1)
    # the audit row names the trainer token, not an admin
    who = registry.get("/api/v1/whoami", token=t).json()
    a = registry.get("/api/v1/audit" + q(object="tc-a@challenger")).json()["entries"]
    assert [e["action"] for e in a] == ["alias.promote"]
    assert who["role"] == "trainer" and a[0]["actor"] == who["actor"], (a[0], who)
    assert a[0]["actor"] == f"token:{who['token_id']}:t-trainer"
    # and one model_event/1 on the outbox, with the challenger in the snapshot
    rows = db.sql(f"SELECT payload FROM outbox WHERE id > {outbox_before} ORDER BY id")
    evs = [json.loads(x) for x in rows]
    assert [e["change"]["action"] for e in evs] == ["alias.promote"]
    ev = evs[0]
    assert ev["model"] == "tc-a" and ev["actor"] == a[0]["actor"]
    assert ev["change"]["alias"] == "challenger"
    assert ev["snapshot"]["aliases"]["challenger"]["version"] == v1
    assert ev["snapshot"]["aliases"]["challenger"]["sha256"] == sha256(doc1)
    # gates are enforced for trainers: failed and missing gate results are refused
    for v in (v2, v3):
        err(registry.post(C, {"version": v}, token=t), 409, "INVALID_STATE")
    # force is an admin's, with or without a reason
    for body in ({"version": v2, "force": True, "reason": "trainer says so"},
                 {"version": v2, "force": True}):
        b = err(registry.post(C, body, token=t), 403, "PERMISSION_DENIED")
        assert "admin" in b["message"]
    # any other alias is refused, naming it
    for alias in ("champion", "shadow", "Challenger", "challenger2"):
        b = err(registry.post(f"/api/v1/models/tc-a/aliases/{alias}/promote", {"version": v1},
                              token=t), 403, "PERMISSION_DENIED")
        assert f"'{alias}'" in b["message"] and "admin" in b["message"], b
    # a reader moves nothing
    err(registry.post(C, {"version": v1}, token=tokens["reader"]), 403, "PERMISSION_DENIED")
    # and nothing of the refused calls changed the alias or wrote rows
    g = registry.get(RM + "/alias" + q(name="tc-a", alias="challenger")).json()
    assert g["model_version"]["version"] == str(v1)
    assert registry.get(RM + "/alias" + q(name="tc-a", alias="champion")).status == 404
    assert len(db.sql(f"SELECT id FROM outbox WHERE id > {outbox_before}")) == 1
    # an admin still forces a failed version onto the challenger, recorded as forced
    r = registry.post(C, {"version": v2, "force": True, "reason": "probe a failed model"})
    assert r.status == 200 and r.json()["forced"] is True, r
    # a trainer moves it on again (gates passed) and an admin's champion is untouched by it
    assert registry.post("/api/v1/models/tc-a/aliases/champion/promote",
                         {"version": v1}).status == 200
    v4, _ = register(registry, "tc-a", t)
    r = registry.post(C, {"version": v4, "expected_version": v2}, token=t)
    assert r.status == 200 and r.json()["previous_version"] == v2, r
    g = registry.get(RM + "/alias" + q(name="tc-a", alias="champion")).json()
    assert g["model_version"]["version"] == str(v1)
    # rollback stays an admin's
    err(registry.post("/api/v1/models/tc-a/aliases/challenger/rollback", {}, token=t), 403,
        "PERMISSION_DENIED")


def test_audit_and_outbox_rows_for_every_write(registry, db, tokens):
    before_audit = int(db.sql("SELECT count(*) FROM audit_log")[0])
    before_outbox = int(db.sql("SELECT count(*) FROM outbox")[0])
    t = tokens["trainer"]
    assert registry.post(RM + "/create", {"name": "au-a"}, token=t).status == 200
    assert registry.post(MV + "/create", {"name": "au-a", "source": "s"}, token=t).status == 200
    assert registry.post(RM + "/set-tag", {"name": "au-a", "key": "k", "value": "v"},
                         token=t).status == 200
    err(registry.post(RM + "/create", {"name": "au-a"}, token=t), 409)  # refused: no rows
    assert int(db.sql("SELECT count(*) FROM audit_log")[0]) == before_audit + 3
    assert int(db.sql("SELECT count(*) FROM outbox")[0]) == before_outbox + 3
    a = registry.get("/api/v1/audit" + q(object="au-a")).json()["entries"]
    assert [e["action"] for e in a] == ["registered_model.create", "registered_model.set_tag"]
    assert all(e["actor"].endswith(":t-trainer") for e in a)
    assert a[0]["after"]["snapshot"]["name"] == "au-a"
    a = registry.get("/api/v1/audit" + q(object="au-a/1")).json()["entries"]
    assert [e["action"] for e in a] == ["model_version.create"]
    ev = json.loads(db.sql("SELECT payload FROM outbox ORDER BY id DESC LIMIT 1")[0])
    assert ev["schema"] == "model_event/1" and ev["model"] == "au-a"
    assert ev["change"]["action"] == "registered_model.set_tag"
    err(registry.get("/api/v1/audit" + q(limit=0)), 400)
    # append-only in the database itself
    for stmt in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                 "TRUNCATE audit_log"):
        with pytest.raises(subprocess.CalledProcessError) as e:
            db.sql(stmt)
        assert "append-only" in e.value.stderr


def test_idempotency_keys(registry, db, tokens):
    t = tokens["trainer"]
    assert registry.post(RM + "/create", {"name": "id-a"}, token=t).status == 200
    body = {"name": "id-a", "source": "s3://idem"}
    h = {"Idempotency-Key": "key-123"}
    r1 = registry.post(MV + "/create", body, token=t, headers=h)
    r2 = registry.post(MV + "/create", body, token=t, headers=h)
    assert r1.status == r2.status == 200
    assert r1.json() == r2.json()
    assert r2.headers.get("Idempotent-Replayed") == "true"
    n = db.sql("SELECT count(*) FROM model_versions v JOIN registered_models m ON m.id = v.model_id"
               " WHERE m.name = 'id-a'")
    assert n == ["1"]
    err(registry.post(MV + "/create", {"name": "id-a", "source": "other"}, token=t, headers=h),
        422, "RESOURCE_CONFLICT")
    # keys are per token: another token's same key is a new request
    r3 = registry.post(MV + "/create", body, token=tokens["admin"], headers=h)
    assert r3.json()["model_version"]["version"] == "2"
    # a refused write is not recorded: retrying it after the fix works
    h2 = {"Idempotency-Key": "key-err"}
    err(registry.post(MV + "/create", {"name": "id-b", "source": "s"}, token=t, headers=h2), 404)
    assert registry.post(RM + "/create", {"name": "id-b"}, token=t).status == 200
    assert registry.post(MV + "/create", {"name": "id-b", "source": "s"}, token=t,
                         headers=h2).status == 200
    err(registry.post(MV + "/create", body, token=t, headers={"Idempotency-Key": "x" * 201}), 400)
    # a key past idempotency_ttl_s (a day) is forgotten: the same request is new again
    db.sql("UPDATE idempotency_keys SET created_ms = created_ms - 2 * 86400 * 1000"
           " WHERE key = 'key-123'")
    r4 = registry.post(MV + "/create", body, token=t, headers=h)
    assert r4.status == 200 and r4.headers.get("Idempotent-Replayed") is None
    assert r4.json()["model_version"]["version"] == "3"
    r5 = registry.post(MV + "/create", body, token=t, headers=h)
    assert r5.headers.get("Idempotent-Replayed") == "true" and r5.json() == r4.json()


def test_limits_methods_and_malformed_requests(registry, tokens):
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = registry.request("POST", RM + "/create", raw=big, token=tokens["trainer"])
    err(r, 413, "RESOURCE_LIMIT_EXCEEDED")
    r = registry.request("PUT", RM + "/create", body={"name": "x"}, token=tokens["admin"])
    err(r, 405, "BAD_REQUEST")
    assert "POST" in r.headers["Allow"]
    err(registry.get("/api/2.0/mlflow/registered-models/nope"), 404, "ENDPOINT_NOT_FOUND")
    err(registry.get("/api/v1/models/a/b/c/d/e/f"), 404)
    err(registry.request("POST", RM + "/create", raw=b"{bad", token=tokens["trainer"]), 400,
        "MALFORMED_REQUEST")
    err(registry.request("POST", RM + "/create", raw=b"[1,2]", token=tokens["trainer"]), 400)
    err(registry.request("POST", RM + "/create", raw=b'{"name":"a","name":"b"}',
                         token=tokens["trainer"]), 400)
    # credentials never in the query string, even next to a valid header
    err(registry.get(RM + "/search?access_token=" + tokens["admin"]), 400, "BAD_REQUEST")
    err(registry.get(RM + "/search?token=abc"), 400)
    # an oversized header block is refused by evhttp before routing, still
    # with a JSON error body naming the limit
    r = registry.request("GET", RM + "/search", token=tokens["admin"],
                         headers={"X-Big": "y" * 20000})
    assert "max_header_bytes" in err(r, 400, "BAD_REQUEST")["message"]


def test_health_reports_db_and_durability(registry):
    r = registry.request("GET", "/health")
    assert r.status == 200
    h = r.json()
    assert h["db"] == "up" and h["durable"] is True and h["status"] == "ok"
    assert registry.request("GET", "/ready").status == 200
    m = registry.request("GET", "/metrics").body.decode()
    assert "mlops_registry_writes_total" in m


def test_deployment_record(registry, tokens):
    t = tokens["trainer"]
    v1, _ = register(registry, "dp-a", t)
    v2, _ = register(registry, "dp-a", t)
    D = "/api/v1/models/dp-a/deployment"
    d = registry.get(D, token=tokens["reader"]).json()["deployment"]
    assert d["mode"] == "canary" and d["canary_share"] == 0 and d["champion"] is None
    # a split needs a challenger
    err(registry.call("PUT", D, {"canary_share": 0.1}), 409, "INVALID_STATE")
    assert registry.post("/api/v1/models/dp-a/aliases/champion/promote", {"version": v1}).status == 200
    assert registry.post("/api/v1/models/dp-a/aliases/challenger/promote",
                         {"version": v2}).status == 200
    r = registry.call("PUT", D, {"canary_share": 0.1})
    assert r.status == 200, r
    d = r.json()["deployment"]
    assert (d["mode"], d["canary_share"], d["champion"], d["challenger"]) == ("canary", 0.1, v1, v2)
    r = registry.call("PUT", D, {"mode": "ab"})
    assert r.json()["deployment"]["mode"] == "ab" and r.json()["deployment"]["canary_share"] == 0.1
    err(registry.call("PUT", D, {"mode": "blue-green"}), 400)
    err(registry.call("PUT", D, {"canary_share": 1.5}), 400)
    err(registry.call("PUT", D, {"canary_share": "half"}), 400)
    err(registry.call("PUT", D, {"canary_share": 0.2}, token=t), 403)
    err(registry.get("/api/v1/models/nope/deployment"), 404)


def test_model_card(registry, tokens):
    t = tokens["trainer"]
    extra = {"metrics": {"auc": 0.87, "rows": 1000}, "lineage": {"topic": "features"}}
    v1, doc = register(registry, "card-a", t, extra=extra)
    registry.post("/api/2.0/mlflow/model-versions/create", {"name": "card-a", "source": "s3://x"},
                  token=t)
    assert registry.post("/api/v1/models/card-a/aliases/champion/promote", {"version": v1}).status == 200
    card = registry.get("/api/v1/models/card-a/card", token=tokens["reader"]).json()
    assert card["name"] == "card-a" and card["aliases"] == {"champion": v1}
    by_v = {v["version"]: v for v in card["versions"]}
    assert by_v[v1]["metrics"] == extra["metrics"] and by_v[v1]["lineage"] == extra["lineage"]
    assert by_v[v1]["algorithm"] == "logreg" and by_v[v1]["gates_passed"] is True
    assert by_v[v1]["artifact"] == {"sha256": sha256(doc), "size_bytes": len(doc)}
    assert by_v[v1 + 1]["artifact"] is None and by_v[v1 + 1]["gates_passed"] is None
    assert card["deployment"]["champion"] == v1 and card["alias_moves"] == 1
    err(registry.get("/api/v1/models/nope/card"), 404)
