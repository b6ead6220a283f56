"""The local stack's PostgreSQL for tests: SQL as the superuser over the stack's private
socket, and DSNs for other databases of the same server."""
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("MLOPS_STATE_DIR", ROOT / ".state"))
PG_PORT = os.environ.get("MLOPS_PG_PORT", "5433")
# Debian's client binaries (not always on PATH); the stack uses the same
PSQL = next((p for p in ("/usr/lib/postgresql/15/bin/psql", "/usr/bin/psql")
             if Path(p).exists()), "psql")


def stack_dsn():
    return (STATE / "secrets/pg_dsn").read_text().strip()


def admin_psql(sql):
    """Run SQL as the postgres superuser over the stack's private socket."""
    sock = STATE / "run/pg-socket"
    base = STATE / "pg-base"
    if base.exists() and base.read_text().strip() != str(STATE):
        sock = Path(base.read_text().strip()) / "socket"
    cmd = [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(sock), "-p", PG_PORT,
           "-U", "postgres", "-d", "postgres", "-c", sql]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    r = subprocess.run(cmd, cwd="/", capture_output=True, text=True)
    if r.returncode:
        raise subprocess.CalledProcessError(r.returncode, cmd, r.stdout, r.stderr)


def user_psql(dsn, sql):
    """Run SQL as a database's own role; returns the rows as text lines."""
    out = subprocess.run([PSQL, "-X", "-At", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.splitlines()


def dsn_for(db):
    return re.sub(r"/[^/?]*(\?|$)", f"/{db}\\1", stack_dsn(), count=1)
