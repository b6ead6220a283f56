"""The local stack's PostgreSQL for tests: SQL as the superuser over the stack's private
socket, and DSNs for other databases of the same server."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("MLOPS_STATE_DIR", ROOT / ".state"))
PG_PORT = os.environ.get("MLOPS_PG_PORT", "5433")
# Debian's client binaries (not always on PATH); the stack uses the same
PG_BIN = Path("/usr/lib/postgresql/15/bin")
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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_pg(cmd, **kw):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


class PrivatePostgres:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="reg-pg-"))
        self.data = self.dir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o700)
        subprocess.run(as_pg([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                              "-U", "postgres", "--no-sync"]), check=True, capture_output=True,
                       cwd="/")
        self.port = _free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            as_pg([str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                   "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
                   "-c", "max_connections=40", "-c", "shared_buffers=16MB"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        deadline = time.time() + 30
        while time.time() < deadline:
            r = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                                str(self.port)])
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("private postgres did not start")

    def postmaster_pid(self):
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill9_all(self):
        """SIGKILL the postmaster and every backend it started (by pid)."""
        pm = self.postmaster_pid()
        kids = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pm:
                        kids.append(int(p.name))
                except (OSError, ValueError, IndexError):
                    pass
        for pid in [pm] + kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        deadline = time.time() + 10  # the backends die with the postmaster gone
        while time.time() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
            time.sleep(0.05)

    def dsn(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def sql(self, q):
        out = subprocess.run([str(PG_BIN / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
                              self.dsn(), "-c", q], check=True, capture_output=True, text=True)
        return out.stdout.splitlines()

    def shutdown(self):
        """Fast shutdown (SIGINT) of the postmaster itself, by its pid: runuser
        does not pass SIGINT on."""
        if self.proc and self.proc.poll() is None:
            try:
                os.kill(self.postmaster_pid(), signal.SIGINT)
            except (OSError, ValueError):
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9_all()

    def stop(self):
        self.shutdown()
        shutil.rmtree(self.dir, ignore_errors=True)
