"""mlopsctl token create|list|revoke against the real registry."""
import os
import subprocess

from conftest import BUILD

CTL = str(BUILD / "cli/mlopsctl")


def ctl(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(env_extra or {})
    return subprocess.run([CTL, "token", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_token_create_list_revoke(registry):
    common = ["--registry-url", registry.base, "--state-dir", str(registry.state)]
    p = ctl("create", "--role", "trainer", "--name", "ci-bot", "--expires", "1h", *common)
    assert p.returncode == 0, p.stderr
    tok = p.stdout.strip().splitlines()[-1]
    assert tok.startswith("mlr_") and len(tok) == 68
    who = registry.request("GET", "/api/v1/whoami", token=tok).json()
    assert who["role"] == "trainer" and who["actor"].endswith(":ci-bot")
    # the admin token can also come from MLOPS_TOKEN
    p = ctl("list", "--registry-url", registry.base, "--state-dir", "/nonexistent",
            env_extra={"MLOPS_TOKEN": registry.admin})
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stdout.splitlines() if " ci-bot " in ln]
    assert len(line) == 1 and " trainer " in line[0]
    tid = line[0].split()[0]
    p = ctl("revoke", tid, *common)
    assert p.returncode == 0, p.stderr
    assert registry.request("GET", "/api/v1/whoami", token=tok).status == 401
    # errors: a role the registry does not know, a non-admin token, no token at all
    p = ctl("create", "--role", "root", *common)
    assert p.returncode == 1 and "INVALID_PARAMETER_VALUE" in p.stderr
    reader = registry.token("reader")
    p = ctl("list", "--registry-url", registry.base, "--token", reader)
    assert p.returncode == 1 and "403" in p.stderr
    assert reader not in p.stderr
    p = ctl("list", "--registry-url", registry.base, "--state-dir", "/nonexistent")
    assert p.returncode == 1 and "no token" in p.stderr
    p = ctl("create", *common)
    assert p.returncode == 2 and "--role" in p.stderr
    p = ctl("revoke", "abc", *common)
    assert p.returncode == 2
