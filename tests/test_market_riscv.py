"""The market on RISC-V: a full scenario (two jobs, one over GIO and one over inputs; commits,
reveals, an attacker, Shapley rewards, withdrawals) gives the same output bytes under
qemu-riscv64 (Debian trixie's python3-numpy) as on the host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.riscv import run_riscv_python

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "tests/golden/market_round.py"


@pytest.mark.riscv
@pytest.mark.slow
def test_market_outputs_are_identical_on_riscv64():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    host = subprocess.run([sys.executable, SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True).stdout.splitlines()
    riscv = run_riscv_python([SCRIPT], cwd=str(ROOT))
    assert riscv.returncode == 0, riscv.stderr[-3000:]
    assert riscv.stdout.splitlines() == host
    assert sum(" notice " in line for line in host) >= 10
