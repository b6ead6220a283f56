"""Start-up: migrations applied once even when two registries start at once,
the first admin token file (0600, only at first start), and a database that
is not durable: /health degraded and writes refused."""
import json
import stat
import threading

import pytest

from conftest import ROOT, Database, Registry

RM = "/api/2.0/mlflow/registered-models"
# what the source tree holds, as "version|name"
MIGRATIONS = [f"{int(p.name[:4])}|{p.stem}" for p in
              sorted((ROOT / "services/registry/migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))]


@pytest.fixture
def fresh_db():
    d = Database()
    yield d
    d.drop()


def test_two_instances_migrate_once(tmp_path, fresh_db):
    regs = [None, None]
    errors = []

    def start(i):
        try:
            regs[i] = Registry(tmp_path / f"r{i}", fresh_db)
        except Exception as e:  # reported below
            errors.append(e)

    ths = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    try:
        assert not errors, errors
        rows = fresh_db.sql("SELECT version, name FROM registry_migrations ORDER BY version")
        assert rows == MIGRATIONS
        # exactly one admin token was bootstrapped, into one of the two files
        assert fresh_db.sql("SELECT count(*) FROM api_tokens WHERE role = 'admin'") == ["1"]
        files = [p for p in (tmp_path / "r0/state/registry/admin_token",
                             tmp_path / "r1/state/registry/admin_token") if p.exists()]
        assert len(files) == 1
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        tok = files[0].read_text().strip()
        for r in regs:
            assert r.request("GET", "/api/v1/whoami", token=tok).json()["role"] == "admin"
    finally:
        for r in regs:
            if r:
                r.stop()
    # a restart applies nothing and creates no token
    r = Registry(tmp_path / "r2", fresh_db, extra=["--admin-token-file", str(tmp_path / "t3")])
    try:
        assert any('"applied":0' in line for line in r.logs) or \
            any(json.loads(line).get("applied") == 0 for line in r.logs if line.startswith("{"))
        assert not (tmp_path / "t3").exists()
    finally:
        r.stop()
    assert fresh_db.sql("SELECT count(*) FROM registry_migrations") == [str(len(MIGRATIONS))]


def test_not_durable_database_is_degraded_and_refuses_writes(tmp_path):
    d = Database(settings="synchronous_commit = off")
    try:
        r = Registry.__new__(Registry)
        r.__init__(tmp_path, d)
        try:
            h = r.request("GET", "/health").json()
            assert h["status"] == "degraded" and h["durable"] is False
            assert "synchronous_commit=off" in h["degraded_reason"]
            w = r.post(RM + "/create", {"name": "x"})
            assert w.status == 503 and w.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            assert "Retry-After" in w.headers
            g = r.get(RM + "/search")
            assert g.status == 200
        finally:
            r.stop()
    finally:
        d.drop()


def test_bad_config_exits_with_a_message(tmp_path):
    import subprocess
    from conftest import BINARY
    p = subprocess.run([str(BINARY), "--max-body-bytes", "5"], capture_output=True, text=True)
    assert p.returncode == 2 and "max_body_bytes" in p.stderr
    p = subprocess.run([str(BINARY), "--pg-dsn", "host=127.0.0.1 port=1 dbname=x user=x",
                        "--metrics-port", "0", "--state-dir", str(tmp_path),
                        "--pg-connect-timeout-s", "2"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "cannot connect to Postgres" in p.stderr


def test_lost_connection_reconnects_without_restart(tmp_path, fresh_db):
    from conftest import admin_psql
    r = Registry(tmp_path, fresh_db)
    try:
        assert r.post(RM + "/create", {"name": "before"}).status == 200
        admin_psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                   f" WHERE datname = '{fresh_db.name}' AND pid <> pg_backend_pid()")
        # a read after the loss is retried once on the new connection
        g = r.get(RM + "/get?name=before")
        assert g.status == 200, g
        admin_psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                   f" WHERE datname = '{fresh_db.name}' AND pid <> pg_backend_pid()")
        # a write that finds the connection lost at BEGIN ran nothing: it goes on
        w = r.post(RM + "/create", {"name": "after"})
        assert w.status == 200, w
        assert fresh_db.sql("SELECT name FROM registered_models ORDER BY id") == ["before", "after"]
        assert r.request("GET", "/health").json()["db"] == "up"
    finally:
        r.stop()


def test_rate_limit_per_token(tmp_path, fresh_db):
    r = Registry(tmp_path, fresh_db, extra=["--rate-limit-rps", "2", "--rate-limit-burst", "3"])
    try:
        # 2/s refills half a token per 0.25 s: twelve quick requests must run dry
        codes = [r.get("/api/v1/whoami").status for _ in range(12)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
        lim = r.get("/api/v1/whoami")
        if lim.status == 429:
            assert int(lim.headers["Retry-After"]) >= 1
            assert lim.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        import time as _t
        _t.sleep(1.1)
        assert r.get("/api/v1/whoami").status == 200
    finally:
        r.stop()


def test_slow_client_is_cut_off(tmp_path, fresh_db):
    import socket
    import time as _t
    r = Registry(tmp_path, fresh_db, extra=["--request-timeout-s", "1"])
    try:
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\n")  # never finishes
        t0 = _t.time()
        s.settimeout(10)
        data = s.recv(4096)
        assert _t.time() - t0 < 5
        assert data == b"" or b" 408 " in data or b" 400 " in data, data
        s.close()
        assert r.request("GET", "/health").status == 200  # still serving
    finally:
        r.stop()


def test_https_listener(tmp_path, fresh_db):
    import ssl
    import subprocess
    import urllib.error
    import urllib.request
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    r = Registry(tmp_path, fresh_db, extra=["--tls-cert-file", str(cert), "--tls-key-file", str(key)])
    try:
        # verified against the certificate, hostname included
        assert r.request("GET", "/health").json()["status"] == "ok"
        assert r.post(RM + "/create", {"name": "tls-a"}).status == 200
        assert r.request("GET", "/api/v1/whoami").status == 401
        # plain HTTP on the TLS port gets no answer
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{r.port}/health", timeout=3).read()
    finally:
        r.stop()
    # a key that does not match, or one of the pair missing: exit 1 with the reason
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(other)], check=True,
                   capture_output=True)
    from conftest import BINARY
    for extra in (["--tls-cert-file", str(cert), "--tls-key-file", str(other)],
                  ["--tls-cert-file", str(cert)]):
        p = subprocess.run([str(BINARY), "--pg-dsn", fresh_db.dsn, "--metrics-port", "0",
                            "--state-dir", str(tmp_path / "s2"), "--no-outbox-relay", *extra],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "tls" in p.stderr.lower(), p.stderr


def test_password_from_a_file_as_compose_mounts_it(tmp_path, fresh_db):
    import urllib.parse
    u = urllib.parse.urlparse(fresh_db.dsn)
    pw_file = tmp_path / "pg_password"
    pw_file.write_text(u.password + "\n")
    bare = u._replace(netloc=f"{u.username}@{u.hostname}:{u.port}").geturl()

    class NoPw:
        dsn = bare
    r = Registry(tmp_path, NoPw(), extra=["--pg-password-file", str(pw_file)])
    try:
        assert r.request("GET", "/health").json()["db"] == "up"
        assert not any(u.password in line for line in r.logs)
    finally:
        r.stop()
    # without the file the same DSN cannot log in: the file is what carried the password
    import subprocess
    from conftest import BINARY
    p = subprocess.run([str(BINARY), "--pg-dsn", bare, "--metrics-port", "0", "--state-dir",
                        str(tmp_path / "s3"), "--no-outbox-relay"], capture_output=True, text=True,
                       timeout=30, env={"PATH": "/usr/bin:/bin", "PGPASSFILE": "/dev/null"})
    assert p.returncode == 1 and "password" in p.stderr, p.stderr


def test_housekeeping_drops_old_idempotency_keys_and_published_outbox_rows(tmp_path, fresh_db):
    import time as _t
    r = Registry(tmp_path, fresh_db)
    try:
        # rows as if written long ago; the first housekeeping runs with the first ping (2 s)
        old = "(extract(epoch from now()) * 1000)::bigint - 30::bigint * 86400 * 1000"
        fresh_db.sql("INSERT INTO idempotency_keys VALUES (1, 'old', 'POST', '/x', 'h', 200, '{}',"
                     f" {old}), (1, 'new', 'POST', '/x', 'h', 200, '{{}}',"
                     " (extract(epoch from now()) * 1000)::bigint)")
        fresh_db.sql(f"INSERT INTO outbox (model_name, payload, created_ms, sent_ms) VALUES"
                     f" ('m', '{{}}', {old}, {old}), ('m', '{{}}', {old}, NULL)")
        deadline = _t.time() + 8
        while _t.time() < deadline:
            if fresh_db.sql("SELECT key FROM idempotency_keys ORDER BY key") == ["new"]:
                break
            _t.sleep(0.2)
        assert fresh_db.sql("SELECT key FROM idempotency_keys ORDER BY key") == ["new"]
        # an unsent row is never dropped, however old
        assert fresh_db.sql("SELECT count(*), count(sent_ms) FROM outbox") == ["1|0"]
    finally:
        r.stop()
