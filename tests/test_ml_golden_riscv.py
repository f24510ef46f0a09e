"""Cross-architecture bit-exactness of the ML core: the golden scenario's hashes on the host,
under qemu-riscv64 (Debian trixie, python3-numpy 2.2) and in the committed expected file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.riscv import REPO_ROOT, run_riscv_python

SCRIPT = "tests/golden/ml_golden.py"
EXPECTED = Path(__file__).parent / "golden" / "ml_golden.expected"


def host_lines() -> list[str]:
    out = subprocess.run([sys.executable, SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.splitlines()


def test_golden_host_matches_expected() -> None:
    got = host_lines()
    want = EXPECTED.read_text().splitlines()
    for i, (a, b) in enumerate(zip(got, want)):
        assert a == b, f"line {i}: host {a!r} != expected {b!r} (regenerate with --write only if intended)"
    assert len(got) == len(want) and got[-1].startswith("ALL ")


@pytest.mark.riscv
def test_golden_riscv_matches_host() -> None:
    proc = run_riscv_python([SCRIPT], cwd=str(REPO_ROOT), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = proc.stdout.splitlines()
    want = host_lines()
    for i, (a, b) in enumerate(zip(got, want)):
        assert a == b, f"line {i}: riscv64 {a!r} != host {b!r}"
    assert len(got) == len(want)
