"""Contract: every binary we ship is built hardened (issue 9, "Security"): a position-
independent executable, full RELRO (a GNU_RELRO segment and BIND_NOW), a non-executable
stack, the stack protector (it imports __stack_chk_fail) and FORTIFY_SOURCE (it imports
glibc's checked __*_chk functions). Read with readelf from binutils, the way Debian's
hardening-check does it. A control program built without the flags must fail every check,
so the checks themselves are shown to be able to fail.

    .state/venv/bin/python -m pytest tests/contract/test_hardening.py -q
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MLOPS_BUILD_DIR") or REPO / "build")
SHIPPED = [
    "services/ingest/mlops-ingest", "services/trainer/mlops-trainer",
    "services/registry/mlops-registry", "services/scorer/mlops-scorer",
    "services/monitor/mlops-monitor", "services/monitor/mlops-notify", "cli/mlopsctl",
    "bench/mlops-bench", "bench/mlops-bench-passthrough",
]

CONTROL_C = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    char buf[32];
    strcpy(buf, argc > 1 ? argv[1] : "x");
    snprintf(buf + 1, sizeof(buf) - 1, "%s", argv[0]);
    return puts(buf) < 0;
}
"""


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True,
                          text=True).stdout


def hardening_faults(path):
    """The hardening properties the ELF file at path lacks (an empty list if none)."""
    faults = []
    header = readelf("-h", str(path))
    dynamic = readelf("-d", str(path))
    segments = readelf("-l", str(path))
    symbols = readelf("--dyn-syms", str(path))
    if not re.search(r"Type:\s+DYN\b", header) or not re.search(r"FLAGS_1\).*\bPIE\b", dynamic):
        faults.append("PIE")
    if not re.search(r"^\s*GNU_RELRO\b", segments, re.M):
        faults.append("RELRO")
    if not (re.search(r"\(FLAGS\).*\bBIND_NOW\b", dynamic)
            or re.search(r"\(FLAGS_1\).*\bNOW\b", dynamic)):
        faults.append("BIND_NOW")
    stack = re.search(r"^\s*GNU_STACK\s.*\s(R?W?E?)\s+0x[0-9a-f]+$", segments, re.M)
    if not stack or "E" in stack.group(1):
        faults.append("NX stack")
    if not re.search(r"\b__stack_chk_fail\b", symbols):
        faults.append("stack protector")
    if not re.search(r"\b__\w+_chk\b", symbols.replace("__stack_chk_fail", "")):
        faults.append("FORTIFY")
    return faults


@pytest.fixture(scope="module", autouse=True)
def tools():
    if not shutil.which("readelf"):
        pytest.fail("readelf (binutils) is missing: deploy/setup.sh apt installs it")


@pytest.mark.parametrize("rel", SHIPPED)
def test_shipped_binary_is_hardened(rel):
    path = BUILD / rel
    assert path.is_file(), f"{path} is not built (ninja -C {BUILD})"
    assert hardening_faults(path) == [], f"{rel} is built without hardening"


def test_the_checks_fail_an_unhardened_binary(tmp_path):
    src = tmp_path / "control.c"
    src.write_text(CONTROL_C)
    out = tmp_path / "control"
    subprocess.run(["cc", "-O2", "-fno-stack-protector", "-U_FORTIFY_SOURCE", "-no-pie",
                    "-fno-pie", "-Wl,-z,norelro", "-Wl,-z,lazy", "-Wl,-z,execstack",
                    "-o", str(out), str(src)], check=True)
    assert sorted(hardening_faults(out)) == sorted(
        ["PIE", "RELRO", "BIND_NOW", "NX stack", "stack protector", "FORTIFY"])
    hardened = tmp_path / "hardened"
    subprocess.run(["cc", "-O2", "-fstack-protector-all", "-D_FORTIFY_SOURCE=2", "-fPIE",
                    "-pie", "-Wl,-z,relro,-z,now", "-o", str(hardened), str(src)], check=True)
    assert hardening_faults(hardened) == []
