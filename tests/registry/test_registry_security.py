"""Auth on every route of the registry's route table (no token, bad token,
expired, revoked, wrong role), hostile text stored byte for byte, and the
schema left unchanged by it."""
import time
import urllib.parse

from conftest import model_doc

MF = "/api/2.0/mlflow"
RM = MF + "/registered-models"
MV = MF + "/model-versions"
V1 = "/api/v1"

# Our own copy of the route table: the test fails if the server has a route
# this list does not (so a new route cannot skip the auth checks), or the
# other way round.
ROUTES = {
    ("POST", RM + "/create", "trainer"), ("GET", RM + "/get", "reader"),
    ("POST", RM + "/rename", "admin"), ("PATCH", RM + "/update", "trainer"),
    ("DELETE", RM + "/delete", "admin"), ("GET", RM + "/search", "reader"),
    ("POST", RM + "/get-latest-versions", "reader"), ("GET", RM + "/get-latest-versions", "reader"),
    ("POST", RM + "/set-tag", "trainer"), ("DELETE", RM + "/delete-tag", "trainer"),
    ("POST", RM + "/alias", "admin"), ("DELETE", RM + "/alias", "admin"),
    ("GET", RM + "/alias", "reader"),
    ("POST", MV + "/create", "trainer"), ("GET", MV + "/get", "reader"),
    ("PATCH", MV + "/update", "trainer"), ("DELETE", MV + "/delete", "admin"),
    ("GET", MV + "/search", "reader"), ("POST", MV + "/transition-stage", "admin"),
    ("POST", MV + "/set-tag", "trainer"), ("DELETE", MV + "/delete-tag", "trainer"),
    ("GET", MV + "/get-download-uri", "reader"),
    ("GET", V1 + "/routes", "reader"), ("GET", V1 + "/whoami", "reader"),
    ("POST", V1 + "/models/{}/versions", "trainer"),
    ("PUT", V1 + "/models/{}/versions/{}/artifact", "trainer"),
    ("GET", V1 + "/models/{}/versions/{}/artifact", "reader"),
    ("PUT", V1 + "/models/{}/versions/{}/gates", "trainer"),
    ("POST", V1 + "/models/{}/aliases/{}/promote", "trainer"),
    ("POST", V1 + "/models/{}/aliases/{}/rollback", "admin"),
    ("GET", V1 + "/models/{}/history", "reader"), ("GET", V1 + "/audit", "admin"),
    ("GET", V1 + "/models/{}/deployment", "reader"), ("PUT", V1 + "/models/{}/deployment", "admin"),
    ("GET", V1 + "/models/{}/card", "reader"),
    ("POST", V1 + "/tokens", "admin"), ("GET", V1 + "/tokens", "admin"),
    ("DELETE", V1 + "/tokens/{}", "admin"),
}
RANK = {"reader": 1, "trainer": 2, "admin": 3}


def concrete(path):
    # aliases/{} becomes challenger: the one alias a trainer may promote, so a
    # trainer gets past the role checks on that route
    path = path.replace("aliases/{}", "aliases/challenger")
    return path.replace("{}", "sec-x", 1).replace("{}", "1")


def test_route_table_matches_the_server(registry):
    r = registry.get(V1 + "/routes")
    assert r.status == 200
    served = {(x["method"], x["path"], x["role"]) for x in r.json()["routes"]}
    assert served == ROUTES


def test_no_token_bad_token_and_wrong_role_on_every_route(registry, tokens):
    expired = registry.token("admin", expires_in_s=1)
    revoked_r = registry.post(V1 + "/tokens", {"role": "admin", "name": "to-revoke"})
    revoked = revoked_r.json()["token"]
    assert registry.call("DELETE", f"{V1}/tokens/{revoked_r.json()['id']}").status == 200
    time.sleep(1.1)
    for method, path, role in sorted(ROUTES):
        p = concrete(path)
        r = registry.request(method, p, body={})
        assert r.status == 401, (method, path, r)
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
        assert r.json()["error_code"] == "UNAUTHENTICATED"
        for bad in ("mlr_" + "0" * 64, "not a token", expired, revoked):
            r = registry.request(method, p, body={}, headers={"Authorization": f"Bearer {bad}"})
            assert r.status == 401, (method, path, bad[:8], r)
        r = registry.request(method, p, body={}, headers={"Authorization": "Basic YTpi"})
        assert r.status == 401, (method, path)
        for low, rank in RANK.items():
            if rank < RANK[role]:
                r = registry.request(method, p, body={}, token=tokens[low])
                assert r.status == 403, (method, path, low, r)
                assert r.json()["error_code"] == "PERMISSION_DENIED"
            else:
                # allowed: the request gets past auth (any answer but 401/403)
                r = registry.request(method, p, body={}, token=tokens[low])
                assert r.status not in (401, 403), (method, path, low, r)


def test_health_ready_metrics_need_no_token(registry):
    for p in ("/health", "/ready", "/metrics"):
        assert registry.request("GET", p).status == 200


def test_token_list_hashes_only(registry, db, tokens):
    lst = registry.get(V1 + "/tokens").json()["tokens"]
    assert {"reader", "trainer", "admin"} <= {t["role"] for t in lst}
    assert all("token" not in t for t in lst)
    hashes = db.sql("SELECT token_hash FROM api_tokens")
    for t in tokens.values():
        assert t not in "\n".join(hashes)
    r = registry.post(V1 + "/tokens", {"role": "root"})
    assert r.status == 400
    r = registry.post(V1 + "/tokens", {"role": "reader", "expires": "soon"})
    assert r.status == 400
    r = registry.post(V1 + "/tokens", {"role": "reader", "expires": "30d"})
    assert r.status == 201 and r.json()["expires_ms"] > time.time() * 1000 + 29 * 86400e3
    assert registry.call("DELETE", V1 + "/tokens/999999").status == 404


# Hostile text: SQL injection classics, quoting, comments, unicode, JSON-ish
# and path-ish strings, each also wrapped in quotes and comment markers, so
# 200 payloads. All are stored and read back byte for byte.
BASE = [
    "'", "''", "\"", "\\", "\\'", "';--", "' OR '1'='1", "' OR 1=1 --", "\" OR \"\"=\"",
    "1; DROP TABLE registered_models; --", "x'); DROP TABLE audit_log; --",
    "'; TRUNCATE outbox; --", "$1", "$$ language plpgsql $$", "E'\\x00'", "%", "_", "%%' --",
    "\\x41\\x42", "/* comment */", "-- comment", "; SELECT pg_sleep(10); --",
    "' UNION SELECT token_hash FROM api_tokens --", "admin'--", "\u2019 OR \u20191\u2019=\u20191",
    "ümlaut ñ 漢字 🚀", "\t tab and\nnewline", "{\"json\": [1, 2]}", "../../etc/passwd",
    "%2F%2e%2e", "<script>alert(1)</script>", "a" * 200, "null", "true", "0x7fffffff",
    "SELECT * FROM pg_shadow", "'||(SELECT version())||'", "\\\\server\\share", "\u00a0nbsp",
    "\u200bzero-width",
]
WRAPS = ["{}", "'{}'", "{}'; --", "\"{}\" OR 1=1"]
PAYLOADS = [w.format(b) if "{}" in w else b for b in BASE for w in WRAPS][:160] + [
    f"'; UPDATE api_tokens SET role = 'admin' WHERE id = {i}; --" for i in range(20)] + [
    f"x' AND (SELECT count(*) FROM pg_class) > {i} --" for i in range(20)]
assert len(PAYLOADS) == 200


def tables(db):
    return db.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")


def test_sql_injection_payloads_are_data(registry, db, tokens):
    before = tables(db)
    roles = db.sql("SELECT role, count(*) FROM api_tokens GROUP BY role ORDER BY role")
    t = tokens["trainer"]
    for i, p in enumerate(PAYLOADS):
        name = f"inj-{i}-{p}" if "\n" not in p and "\t" not in p else f"inj-{i}"
        r = registry.post(RM + "/create", {"name": name, "description": p,
                                           "tags": [{"key": f"k{i}{p}"[:250], "value": p}]},
                          token=t)
        assert r.status == 200, (p, r)
        r = registry.post(MV + "/create", {"name": name, "source": p, "run_id": p,
                                           "description": p,
                                           "tags": [{"key": "v", "value": p}]}, token=t)
        assert r.status == 200, (p, r)
        g = registry.get(RM + "/get?" + urllib.parse.urlencode({"name": name})).json()
        m = g["registered_model"]
        assert m["name"] == name and m["description"] == p
        assert m["tags"] == [{"key": f"k{i}{p}"[:250], "value": p}]
        v = registry.get(MV + "/get?" + urllib.parse.urlencode({"name": name, "version": "1"}))
        mv = v.json()["model_version"]
        assert (mv["source"], mv["run_id"], mv["description"]) == (p, p, p)
        assert mv["tags"] == [{"key": "v", "value": p}]
        # the same string in a filter finds exactly this model (quotes doubled per MLflow)
        lit = "'" + name.replace("'", "''") + "'"
        s = registry.get(RM + "/search?" + urllib.parse.urlencode({"filter": f"name = {lit}"}))
        assert s.status == 200, (p, s)
        assert [x["name"] for x in s.json()["registered_models"]] == [name]
        # and through our path-addressed API
        doc = model_doc(name)
        r = registry.request("POST", f"/api/v1/models/{urllib.parse.quote(name, safe='')}/versions",
                             raw=doc, token=t)
        assert r.status == 201, (p, r)
        assert r.json()["model_version"]["name"] == name
    assert tables(db) == before
    n = int(db.sql("SELECT count(*) FROM registered_models WHERE name LIKE 'inj-%'")[0])
    assert n == len(PAYLOADS)
    assert db.sql("SELECT role, count(*) FROM api_tokens GROUP BY role ORDER BY role") == roles


def test_injection_in_filters_and_aliases_is_refused_or_literal(registry, tokens):
    for f in ["name = 'x' OR 1=1 --'", "name = 'x'; DROP TABLE outbox; --",
              "name = 'x' UNION SELECT 1", "name = '' OR ''=''", "tags.`a` = 'b' OR 1=1"]:
        r = registry.get(RM + "/search?" + urllib.parse.urlencode({"filter": f}))
        assert r.status in (200, 400), (f, r)
        if r.status == 200:
            assert r.json()["registered_models"] == [], f
    for o in ["name; DROP TABLE x", "name ASC, (SELECT 1)", "1"]:
        r = registry.get(RM + "/search?" + urllib.parse.urlencode({"order_by": o}))
        assert r.status == 400, (o, r)
    assert registry.post(RM + "/create", {"name": "inj-alias"}, token=tokens["trainer"]).status == 200
    for a in ["x'; DROP TABLE model_aliases; --", "a b", "' OR 1=1"]:
        r = registry.post(RM + "/alias", {"name": "inj-alias", "alias": a, "version": "1"})
        assert r.status == 400, (a, r)
