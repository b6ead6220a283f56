"""mlopsctl models ... against the real registry: what the CLI prints is what
the registry holds (checked through the API, not against copied output)."""
import json
import os
import subprocess

from conftest import BUILD, model_doc, sha256

CTL = str(BUILD / "cli/mlopsctl")


def ctl(registry, *args, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    cmd = [CTL, "models", *args, "--registry-url", registry.base, "--state-dir",
           str(registry.state)]
    if token:
        cmd += ["--token", token]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_models_cli_register_promote_rollback_history(registry, tmp_path, tokens):
    name = "cli-m'x"  # a quote in the name: the versions filter must double it
    f = tmp_path / "m.json"
    docs = []
    for i in range(2):
        doc = model_doc(name, extra={"metrics": {"auc": 0.8 + i / 100}})
        docs.append(doc)
        f.write_bytes(doc)
        p = ctl(registry, "register", name, "--file", str(f), token=tokens["trainer"])
        assert p.returncode == 0, p.stderr
        assert f"version {i + 1} " in p.stdout and sha256(doc) in p.stdout
    p = ctl(registry, "promote", name, "1", "--alias", "champion",
            "--expected-version", "none")
    assert p.returncode == 0, p.stderr
    p = ctl(registry, "promote", name, "2", "--alias", "champion",
            "--expected-version", "2")
    assert p.returncode == 1 and "409" in p.stderr and "RESOURCE_CONFLICT" in p.stderr
    p = ctl(registry, "promote", name, "2", "--alias", "champion",
            "--expected-version", "1")
    assert p.returncode == 0 and "version 2 (was 1)" in p.stdout, p.stdout + p.stderr
    p = ctl(registry, "rollback", name, "--alias", "champion")
    assert p.returncode == 0 and "version 1 (was 2)" in p.stdout, p.stdout + p.stderr
    got = registry.get("/api/2.0/mlflow/registered-models/alias?name=cli-m%27x&alias=champion")
    assert got.json()["model_version"]["version"] == "1"
    p = ctl(registry, "versions", name)
    assert p.returncode == 0, p.stderr
    rows = [ln.split() for ln in p.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["2", "1"] and rows[1][2] == "champion"
    p = ctl(registry, "history", name, "--alias", "champion")
    moves = [ln.split()[2:4] for ln in p.stdout.split("\n\n")[0].splitlines()[1:]]
    assert moves == [["-", "1"], ["1", "2"], ["2", "1"]]
    p = ctl(registry, "list", "--filter", "name LIKE 'cli-m%'", "--json")
    assert [m["name"] for m in json.loads(p.stdout)["registered_models"]] == [name]
    p = ctl(registry, "show", name)
    assert p.returncode == 0 and name in p.stdout and "champion=1" in p.stdout
    p = ctl(registry, "card", name)
    assert p.returncode == 0 and '"auc":0.81' in p.stdout.replace(" ", ""), p.stdout
    p = ctl(registry, "audit", "--object", f"{name}@champion", "--json")
    acts = [e["action"] for e in json.loads(p.stdout)["entries"]]
    assert acts == ["alias.promote", "alias.promote", "alias.rollback"]
    # the deployment record: a share needs a challenger
    p = ctl(registry, "deploy", name, "--canary-share", "0.2")
    assert p.returncode == 1 and "INVALID_STATE" in p.stderr
    assert ctl(registry, "promote", name, "2", "--alias", "challenger").returncode == 0
    p = ctl(registry, "deploy", name, "--canary-share", "0.2")
    assert p.returncode == 0 and "challenger 2" in p.stdout and "canary share 0.2" in p.stdout, \
        p.stdout + p.stderr
    d = registry.get("/api/v1/models/cli-m%27x/deployment").json()["deployment"]
    assert d["canary_share"] == 0.2 and d["challenger"] == 2 and d["champion"] == 1
    p = ctl(registry, "deploy", name, "--json")
    assert json.loads(p.stdout)["deployment"]["canary_share"] == 0.2
    assert ctl(registry, "deploy", name, "--canary-share", "1.5").returncode == 2
    # errors: unknown model, missing arguments, unknown action
    p = ctl(registry, "show", "no-such-model")
    assert p.returncode == 1 and "RESOURCE_DOES_NOT_EXIST" in p.stderr
    assert ctl(registry, "promote", name, "--alias", "champion").returncode == 2
    assert ctl(registry, "promote", name, "two", "--alias", "champion").returncode == 2
    assert ctl(registry, "register", name).returncode == 2
    assert ctl(registry, "bogus").returncode == 2
    p = ctl(registry, "register", name, "--file", str(tmp_path / "missing.json"))
    assert p.returncode == 1 and "missing.json" in p.stderr
