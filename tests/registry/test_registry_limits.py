"""HTTP limits of the registry against the real binary: a cap on open
connections (one more is answered 503 JSON and closed, counted, the others
keep being served, and slots come back when connections close), and JSON
bodies for every limit error, the ones evhttp answers before any handler
runs included (a body over its limit, an oversized or malformed header
block). Limits and sizes come from the flags each test passes."""
import json
import re
import socket
import time
import urllib.request

import pytest

from conftest import Database, Registry, model_doc

RM = "/api/2.0/mlflow/registered-models"


@pytest.fixture
def fresh_db():
    d = Database()
    yield d
    d.drop()


def read_response(s, timeout=5.0):
    """One HTTP/1.1 response off socket @p s: (status, headers, body bytes)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full head: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:n]


def closed_by_peer(s, timeout):
    """True when the server closes @p s within @p timeout seconds."""
    s.settimeout(timeout)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def metric(reg_sock, name):
    reg_sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    st, _, body = read_response(reg_sock)
    assert st == 200
    m = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    assert m, (name, body[:2000])
    return float(m.group(1))


def json_error(st, headers, body, status, code):
    assert st == status, (st, body)
    assert headers["content-type"].startswith("application/json"), headers
    doc = json.loads(body)
    assert set(doc) == {"error_code", "message"} and doc["error_code"] == code, doc
    return doc["message"]


def test_connection_cap(tmp_path, fresh_db):
    cap = 4
    r = Registry(tmp_path, fresh_db, extra=["--max-connections", str(cap)])
    try:
        held = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(cap)]
        # the held ones are open (an answer on each proves evhttp has them)
        for s in held:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200
        # one more: answered 503 JSON at once, then closed
        extra = socket.create_connection(("127.0.0.1", r.port))
        t0 = time.time()
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, body = read_response(extra)
        msg = json_error(st, h, body, 503, "TEMPORARILY_UNAVAILABLE")
        assert time.time() - t0 < 1.0
        assert f"at most {cap}" in msg and "max_connections" in msg, msg
        assert h["retry-after"] == "1" and h["connection"] == "close"
        assert closed_by_peer(extra, 2)
        extra.close()
        # one that sends nothing is closed too, within its 2 s
        idle = socket.create_connection(("127.0.0.1", r.port))
        t0 = time.time()
        assert closed_by_peer(idle, 5)
        assert time.time() - t0 < 4
        idle.close()
        # the held connections are still served; the refusals were counted
        assert metric(held[0], "mlops_registry_http_connections_refused_total") == 2
        assert metric(held[1], "mlops_registry_http_connections") == cap
        for s in held[2:]:
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200
        # closed connections give their slot back: many one-shot requests work
        for s in held:
            s.close()
        time.sleep(0.3)
        for _ in range(3 * cap):
            assert r.request("GET", "/health").status == 200
        # and the count is exact: cap connections again, the next one refused
        held = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(cap)]
        for s in held:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200
        extra = socket.create_connection(("127.0.0.1", r.port))
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(extra)[0] == 503
        extra.close()
        assert metric(held[0], "mlops_registry_http_connections_refused_total") == 3
        for s in held:
            s.close()
    finally:
        r.stop()


def test_every_limit_error_is_json(tmp_path, fresh_db):
    body_max, art_max, head_max = 4096, 300_000, 4096
    r = Registry(tmp_path, fresh_db,
                 extra=["--max-body-bytes", str(body_max), "--max-artifact-bytes", str(art_max),
                        "--max-header-bytes", str(head_max)])
    try:
        t = r.token("trainer")
        doc = model_doc("lim-a")
        assert len(doc) < art_max
        r.post(RM + "/create", {"name": "lim-a"}, token=t)
        up = "/api/v1/models/lim-a/versions"
        assert r.request("POST", up, raw=doc, token=t).status == 201
        # a JSON body over max_body_bytes (under evhttp's limit): the handler's 413
        big_json = json.dumps({"name": "x" * (body_max + 10)}).encode()
        res = r.request("POST", RM + "/create", raw=big_json, token=t)
        assert res.status == 413
        d = res.json()
        assert d["error_code"] == "RESOURCE_LIMIT_EXCEEDED" and "max_body_bytes" in d["message"]
        assert str(body_max) in d["message"]
        # an artifact over max_artifact_bytes, the limit evhttp itself enforces:
        # a JSON 413 all the same, naming the limit, read by a client that sends
        # the whole body first (urllib does)
        pad = b" " * (art_max + 1 - len(doc))
        huge = doc[:-1] + pad + doc[-1:]
        assert len(huge) == art_max + 1
        res = r.request("POST", up, raw=huge, token=t)
        assert res.status == 413, res
        assert res.headers["Content-Type"].startswith("application/json")
        d = res.json()
        assert set(d) == {"error_code", "message"}
        assert d["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
        assert "max_artifact_bytes" in d["message"] and str(art_max) in d["message"], d
        # far over it, on a raw socket after a good request on the same
        # connection (the answer to the first is left alone)
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, b = read_response(s)
        assert st == 200 and json.loads(b)["status"] == "ok"
        n = 4 * art_max
        s.sendall(f"PUT /api/v1/models/lim-a/versions/1/artifact HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {t}\r\nContent-Length: {n}\r\n\r\n".encode())
        s.sendall(b"{" * n)
        st, h, b = read_response(s)
        msg = json_error(st, h, b, 413, "RESOURCE_LIMIT_EXCEEDED")
        assert str(art_max) in msg
        assert h["connection"] == "close" and closed_by_peer(s, 3)
        s.close()
        # a header block over max_header_bytes: evhttp's 400, as JSON
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * (2 * head_max) +
                  b"\r\n\r\n")
        st, h, b = read_response(s)
        msg = json_error(st, h, b, 400, "BAD_REQUEST")
        assert "max_header_bytes" in msg and str(head_max) in msg, msg
        s.close()
        # a malformed request line: JSON too
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(b"NOT A REQUEST\r\n\r\n")
        st, h, b = read_response(s)
        json_error(st, h, b, 400, "BAD_REQUEST")
        s.close()
        # a method evhttp does not serve at all
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(b"TRACE /health HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, b = read_response(s)
        assert 400 <= st < 600
        assert h["content-type"].startswith("application/json") and json.loads(b)["message"]
        s.close()
        # none of it stopped the registry; the early errors were counted
        assert r.request("GET", "/health").status == 200
        m = r.request("GET", "/metrics").body.decode()
        early = float(re.search(r"^mlops_registry_http_early_errors_total (\S+)$", m, re.M)[1])
        assert early == 5, early
        # the artifact uploaded first is intact
        got = r.request("GET", "/api/v1/models/lim-a/versions/1/artifact", token=t)
        assert got.status == 200 and got.body == doc
    finally:
        r.stop()


def test_default_artifact_limit_is_json_413(registry, tokens):
    """The default max_artifact_bytes (64 MiB): one byte over gets the JSON 413."""
    limit = 64 << 20
    res = registry.request("POST", "/api/v1/models/lim-d/versions", raw=b" " * (limit + 1),
                           token=tokens["trainer"], timeout=60)
    assert res.status == 413, res
    d = res.json()
    assert d["error_code"] == "RESOURCE_LIMIT_EXCEEDED" and str(limit) in d["message"], d


def test_connection_cap_over_tls(tmp_path, fresh_db):
    import ssl
    import subprocess
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    r = Registry(tmp_path, fresh_db, extra=["--tls-cert-file", str(cert), "--tls-key-file",
                                            str(key), "--max-connections", "2"])
    try:
        ctx = ssl.create_default_context(cafile=str(cert))

        def tls_conn():
            return ctx.wrap_socket(socket.create_connection(("127.0.0.1", r.port)),
                                   server_hostname="127.0.0.1")
        held = [tls_conn() for _ in range(2)]
        for s in held:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200
        extra = tls_conn()
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, b = read_response(extra)
        json_error(st, h, b, 503, "TEMPORARILY_UNAVAILABLE")
        extra.close()
        assert metric(held[0], "mlops_registry_http_connections_refused_total") == 1
        for s in held:
            s.close()
        time.sleep(0.3)
        assert r.request("GET", "/health").status == 200
    finally:
        r.stop()
