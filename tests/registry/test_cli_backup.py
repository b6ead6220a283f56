"""mlopsctl registry backup|restore: a model deleted after the backup is back
after the restore, with its artifact bytes and audit history; the password
never appears on the tools' command lines or in the output."""
import os
import subprocess
import urllib.parse

from conftest import BUILD, model_doc

CTL = str(BUILD / "cli/mlopsctl")
RM = "/api/2.0/mlflow/registered-models"


def ctl(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    return subprocess.run([CTL, "registry", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_backup_then_restore(registry, db, tmp_path, tokens):
    doc = model_doc("bk-a")
    r = registry.request("POST", "/api/v1/models/bk-a/versions", raw=doc, token=tokens["trainer"])
    assert r.status == 201
    audit_before = db.sql("SELECT count(*) FROM audit_log")
    f = tmp_path / "registry.dump"
    p = ctl("backup", str(f), "--pg-dsn", db.dsn)
    assert p.returncode == 0, p.stderr
    assert f.stat().st_size > 0 and not (tmp_path / "registry.dump.tmp").exists()
    password = urllib.parse.urlparse(db.dsn).password
    assert password and password not in p.stdout + p.stderr
    assert registry.call("DELETE", RM + "/delete", {"name": "bk-a"}).status == 200
    assert registry.get(RM + "/get?name=bk-a").status == 404
    p = ctl("restore", str(f), "--pg-dsn", db.dsn)
    assert p.returncode == 0, p.stderr
    assert registry.get(RM + "/get?name=bk-a").status == 200
    assert registry.get("/api/v1/models/bk-a/versions/1/artifact").body == doc
    assert db.sql("SELECT count(*) FROM audit_log") == audit_before
    # the append-only trigger came back with the table
    assert "append-only" in subprocess.run(
        ["psql", "-X", "-At", db.dsn, "-c", "DELETE FROM audit_log"],
        capture_output=True, text=True).stderr
    # errors: a missing file, a bad DSN, no FILE
    p = ctl("restore", str(tmp_path / "nope.dump"), "--pg-dsn", db.dsn)
    assert p.returncode == 1 and "nope.dump" in p.stderr
    p = ctl("backup", str(tmp_path / "x.dump"), "--pg-dsn", "postgresql://%zz")
    assert p.returncode == 1
    assert ctl("backup").returncode == 2
    assert ctl("bogus", "f").returncode == 2
