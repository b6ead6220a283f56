"""mlops-scorer's HTTP endpoint (services/scorer/serve.c): KServe V1 and the Open
Inference Protocol paths, on the real broker.

Oracles: `mlopsctl predict` on the same CSV rows (the offline path) for every score,
bit for bit, by both protocols; the prediction/1 JSON Schema (jsonschema) for the
predictions the endpoint writes to Kafka; the Open Inference Protocol's documented
error object ({"error": string}) and status codes for bad requests."""
import csv
import http.client
import json
import socket
import time

import pytest

from conftest import KAFKA_TEST_PROPS, predict_csv, predictions, validator


def args(stream, out, *extra):
    return ["--model", stream.models["lr"], "--no-enrich", "--input-topic", stream.copy_topic(),
            "--predictions-topic", out, "--group-id", f"g-{out}", "--no-exactly-once",
            "--redis-url", stream.redis.url, *KAFKA_TEST_PROPS, *extra]


def rows(stream):
    with open(stream.csv) as f:
        return list(csv.DictReader(f))


def tensor_value(datatype, text):
    """A CSV cell as the element a client would send for that tensor datatype."""
    if text.strip() == "":
        return None
    if datatype == "FP64":
        return float(text)
    if datatype == "INT64":
        return int(float(text))
    if datatype == "BOOL":
        return text.strip().lower() in ("true", "yes", "1", "t", "y")
    return text


@pytest.mark.parametrize("algo", ["lr", "gbdt"])
def test_http_scores_equal_mlopsctl_predict_bit_for_bit(example_stream, scorers, algo):
    """Every row of a real dataset (categoricals, missing cells), sent as raw fields,
    scores over V1 and over V2 the same double as `mlopsctl predict` on the CSV; the
    predictions written to Kafka carry source http and the request id."""
    s = example_stream
    out = s.new_topic()
    a = args(s, out)
    a[1] = s.models[algo]
    sc = scorers(a)
    name = json.loads(s.models[algo].read_text())["name"]
    data = rows(s)
    want = predict_csv(s.models[algo], s.csv)
    got_v1 = []
    for k in range(0, len(data), 100):
        st, hdr, body = sc.http("POST", f"/v1/models/{name}:predict",
                                {"instances": data[k:k + 100]},
                                headers={"X-Request-Id": f"v1-{k}"})
        assert st == 200, body
        assert hdr["X-Request-Id"] == f"v1-{k}" and body["request_id"] == f"v1-{k}"
        got_v1 += [p["score"] for p in body["predictions"]]
        assert all(p["role"] == "champion" and p["model"] == name for p in body["predictions"])
    assert got_v1 == want
    # V2: one tensor per spec field, datatypes from the model metadata
    st, _, meta = sc.http("GET", f"/v2/models/{name}")
    assert st == 200 and meta["name"] == name, meta
    types = {t["name"]: t["datatype"] for t in meta["inputs"]}
    got_v2 = []
    for k in range(0, len(data), 250):
        chunk = data[k:k + 250]
        inputs = [{"name": f, "datatype": dt, "shape": [len(chunk)],
                   "data": [tensor_value(dt, r[f]) for r in chunk]}
                  for f, dt in types.items() if f in chunk[0]]
        st, _, body = sc.http("POST", f"/v2/models/{name}/infer",
                              {"id": f"v2-{k}", "inputs": inputs})
        assert st == 200, body
        assert body["id"] == f"v2-{k}" and body["model_name"] == name
        outs = {o["name"]: o for o in body["outputs"]}
        assert outs["score"]["datatype"] == "FP64" and outs["score"]["shape"] == [len(chunk)]
        got_v2 += outs["score"]["data"]
    assert got_v2 == want
    # the prediction log: one record per instance and protocol, schema-valid
    preds = predictions(out, expect=2 * len(data))
    assert sc.metric("mlops_scorer_events_total", 'transport="http"') == 2 * len(data)
    sc.stop()
    assert len(preds) == 2 * len(data)
    v = validator()
    for p in preds:
        v.validate(p)
        assert p["source"]["transport"] == "http"
    assert sorted(p["score"] for p in preds) == sorted(want + want)
    assert {p["source"]["request_id"] for p in preds} == \
        {f"v1-{k}" for k in range(0, len(data), 100)} | {f"v2-{k}" for k in range(0, len(data), 250)}


def test_protocol_paths_and_errors(stream, scorers):
    out = stream.new_topic()
    sc = scorers(args(stream, out, "--http-max-batch", 5, "--http-max-body-bytes", 16384))
    name = json.loads(stream.models["lr"].read_text())["name"]
    row = {k: v for k, v in rows(stream)[0].items()}
    # good paths
    assert sc.http("GET", "/v2/health/live")[::2] == (200, {"live": True})
    assert sc.http("GET", "/v2/health/ready")[::2] == (200, {"ready": True})
    assert sc.http("GET", f"/v2/models/{name}/ready")[0] == 200
    assert sc.http("GET", f"/v1/models/{name}")[::2] == (200, {"name": name, "ready": True})
    st, _, srv = sc.http("GET", "/v2")
    assert st == 200 and srv["name"] == "mlops-scorer"
    st, _, one = sc.http("POST", f"/v1/models/{name}:predict", row)  # a bare instance
    assert st == 200 and len(one["predictions"]) == 1
    st, _, two = sc.http("POST", f"/v2/models/{name}/infer", {
        "inputs": [{"name": k, "datatype": "BYTES", "shape": [1, 1], "data": [[v]]}
                   for k, v in row.items() if k != "left"],
        "outputs": [{"name": "score"}]})
    assert st == 200, two
    assert [o["name"] for o in two["outputs"]] == ["score"]
    assert two["outputs"][0]["data"] == [one["predictions"][0]["score"]]
    # bad requests: status and the Open Inference Protocol's error object naming the fault
    v1 = f"/v1/models/{name}:predict"
    v2 = f"/v2/models/{name}/infer"
    ok_input = {"name": "age", "datatype": "FP64", "shape": [1], "data": [40]}
    bad = [
        ("POST", v1, "not json", 400, "not a JSON object"),
        ("POST", v1, '{"instances": [], "instances": []}', 400, "duplicate"),
        ("POST", v1, '{"instances": 3}', 400, "'instances'"),
        ("POST", v1, '{"instances": []}', 400, "'instances'"),
        ("POST", v1, '{"instances": [7]}', 400, "instances[0]"),
        ("POST", v1, json.dumps({"instances": [{**row, "age": "old"}]}), 400,
         "'age'"),
        ("POST", v1, json.dumps({"instances": [{**row, "department": None}]}),
         400, "'department' is missing"),
        ("POST", v1, json.dumps({"instances": [row] * 6}), 413, "http_max_batch"),
        # evhttp refuses this one before any handler (its page is HTML; httpconn
        # makes it the same JSON error object)
        ("POST", v1, json.dumps({"instances": [row] * 5, "pad": "x" * 20000}),
         413, "http_max_body_bytes = 16384"),
        ("POST", "/v1/models/nope:predict", "{}", 404, "'nope'"),
        ("POST", f"/v1/models/{name}:explain", "{}", 404, ":explain"),
        ("GET", v1, None, 405, "POST"),
        ("POST", f"/v2/models/{name}", "{}", 405, "GET"),
        ("POST", f"/v2/models/{name}/versions/1/infer", "{}", 404, "unknown path"),
        ("POST", v2, '{"inputs": []}', 400, "'inputs'"),
        ("POST", v2, json.dumps({"inputs": [{**ok_input, "name": "zodiac"}]}),
         400, "unknown input 'zodiac'"),
        ("POST", v2, json.dumps({"inputs": [{**ok_input, "datatype": "FP128"}]}),
         400, "unknown datatype"),
        ("POST", v2, json.dumps({"inputs": [{**ok_input, "data": ["forty"]}]}),
         400, "not FP64"),
        ("POST", v2, json.dumps({"inputs": [{**ok_input, "shape": [2]}]}), 400,
         "data elements"),
        ("POST", v2, json.dumps({"inputs": [{**ok_input, "shape": [1, 3]}]}),
         400, "shape"),
        ("POST", v2, json.dumps({"inputs": [ok_input, {**ok_input, "name": "job_level", "shape": [2], "data": [1, 2]}]}),
         400, "rows"),
        ("POST", v2, json.dumps({"inputs": [ok_input], "outputs": [{"name": "x"}]}),
         400, "unknown output 'x'"),
        ("POST", v2, json.dumps({"inputs": [ok_input]}), 400, "is missing"),
    ]
    for method, path, raw, code, needle in bad:
        st, _, body = sc.http(method, path, raw=raw)
        assert st == code, (path, raw and raw[:80], st, body)
        if needle is None:
            continue
        assert isinstance(body, dict) and isinstance(body.get("error"), str), (path, body)
        assert needle in body["error"], (path, raw and raw[:80], body)
    # a header block over http_max_header_bytes: 400, JSON too
    st, _, body = sc.http("GET", "/v2", headers={"X-Pad": "y" * 20000})
    assert st == 400 and "http_max_header_bytes" in body["error"], (st, body)
    assert sc.metric("mlops_scorer_http_early_errors_total") == 2
    # the service survived all of it and counted what it scored
    assert sc.http("GET", "/v2/health/live")[0] == 200
    assert sc.metric("mlops_scorer_events_total", 'transport="http"') == 2
    assert sc.stop() == 0


def raw_request(port, head, timeout=10):
    """Send a request head on a new connection; (status, headers, JSON body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head.encode())
        r = http.client.HTTPResponse(s)
        r.begin()
        return r.status, dict(r.getheaders()), json.loads(r.read())
    finally:
        s.close()


def test_connections_over_the_cap_get_503_and_the_cap_frees(stream, scorers):
    """http_max_connections open at once: one more gets a 503 JSON error with
    Retry-After and is closed; the service goes on and a closed connection frees
    its place."""
    out = stream.new_topic()
    sc = scorers(args(stream, out, "--http-max-connections", 2))
    held = []
    for _ in range(2):  # two idle keep-alive connections, each with a request half sent
        h = socket.create_connection(("127.0.0.1", sc.http_port), timeout=10)
        h.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")
        held.append(h)
    deadline = time.monotonic() + 10
    while sc.metric("mlops_scorer_http_connections") != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sc.metric("mlops_scorer_http_connections") == 2
    st, hdr, body = raw_request(sc.http_port, "GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 503 and hdr.get("Retry-After") == "1", (st, hdr)
    assert "http_max_connections" in body["error"] and "at most 2" in body["error"], body
    assert sc.metric("mlops_scorer_http_connections_refused_total") == 1
    # the held ones are served when they finish their request
    held[0].sendall(b"\r\n")
    r = http.client.HTTPResponse(held[0])
    r.begin()
    assert r.status == 200 and json.loads(r.read())["name"] == "mlops-scorer"
    for h in held:
        h.close()
    deadline = time.monotonic() + 10
    while sc.metric("mlops_scorer_http_connections") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sc.http("GET", "/v2")[0] == 200
    assert sc.stop() == 0


def test_http_fills_from_the_online_row_and_routes_by_entity(stream, scorers):
    """An instance naming only its entity is completed from the entity's online row
    (written by the real ingest): the prediction is not degraded and its feature vector
    holds the row's values; the canary split is the stream's (by entity hash) and the
    shadow scores every instance without being the answer."""
    from test_scorer import bucket
    out = stream.new_topic()
    sc = scorers(["--model", stream.models["lr"], "--challenger-model", stream.models["lr2"],
                  "--shadow-model", stream.models["gbdt"], "--canary-share", 0.5,
                  "--input-topic", stream.copy_topic(), "--predictions-topic", out,
                  "--group-id", f"g-{out}", "--no-exactly-once", "--redis-url",
                  stream.redis.url, *KAFKA_TEST_PROPS])
    model = json.loads(stream.models["lr"].read_text())
    spec = json.loads(stream.spec.read_text())
    entities = sorted({json.loads(m.value())["entity"] for m in stream.records})[:60]
    st, _, body = sc.http("POST", f"/v1/models/{model['name']}:predict",
                          {"instances": [{spec["entity"]: e} for e in entities]})
    assert st == 200, body
    preds = body["predictions"]
    assert [p["entity"] for p in preds] == entities
    for p in preds:
        want = "challenger" if bucket(model["name"], p["entity"]) < 0.5 else "champion"
        assert p["role"] == want, p
    roles = {p["role"] for p in preds}
    assert roles == {"champion", "challenger"}, roles
    logged = predictions(out, expect=2 * len(entities))
    assert len(logged) == 2 * len(entities)
    assert sum(1 for x in logged if not x["served"]) == len(entities)  # the shadow's
    served = {x["event_id"]: x for x in logged if x["served"]}
    assert {p["event_id"]: p["degraded"] for p in preds} == \
        {e: x["degraded"] for e, x in served.items()}
    assert sum(p["degraded"] for p in preds) <= len(preds) // 4
    # the values used are the online row's (fields and rolling aggregates; time parts are
    # of the request's own event time)
    compared = [f["name"] for f in spec["fields"]] + [
        d["name"] for d in spec["derived"] if d["op"].startswith("rolling")]
    checked = 0
    for x in logged:
        if not x["served"]:
            continue
        row = stream.redis.cli("HGETALL", f"mlops:online:{spec['online']['view']}:{x['entity']}")
        flat = row.splitlines()
        row = dict(zip(flat[0::2], flat[1::2]))
        assert row, x["entity"]
        # imputed only what the online row lacks too (e.g. a ratio with a zero denominator)
        assert not [c for c in x["imputed"] if c in row], (x["entity"], x["imputed"])
        for c in compared:
            if c not in x["features"] or c not in row:
                continue
            v = x["features"][c]
            assert (v == float(row[c])) if isinstance(v, (int, float)) else v == row[c], \
                (x["entity"], c, v, row[c])
            checked += 1
    assert checked >= len(entities) * 5, checked
    assert sc.stop() == 0
