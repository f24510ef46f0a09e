"""Run Python under qemu-riscv64 in the Debian trixie riscv64 userland (scripts/riscv-rootfs.sh).

This is the cross-architecture half of the determinism tests: the same script runs on the host
and here, with Debian's python3-numpy and the same pure wheels the Cartesi image ships, and the
outputs are compared byte for byte.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
WHEELS_DIR = "opt/tributary-wheels"


def rootfs() -> Path:
    """The riscv64 tree: $TRIBUTARY_RISCV_ROOT, else .cache/riscv64 in the repo.

    Missing tree: a failure that says how to build it (or a skip with TRIBUTARY_SKIP_RISCV=1).
    """
    root = Path(os.environ.get("TRIBUTARY_RISCV_ROOT") or REPO_ROOT / ".cache" / "riscv64")
    problem = None
    if not (root / "usr" / "bin" / "python3").exists():
        problem = f"no riscv64 userland at {root}: run `make riscv` (bash scripts/riscv-rootfs.sh {root})"
    elif not shutil.which("qemu-riscv64-static"):
        problem = "qemu-riscv64-static is not installed: run `make riscv`"
    if problem:
        if os.environ.get("TRIBUTARY_SKIP_RISCV") == "1":
            pytest.skip(problem)
        pytest.fail(problem, pytrace=False)
    return root


def run_riscv_python(args: list[str], cwd: str, timeout: float = 600,
                     env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python3 ARGS` under qemu-riscv64-static; text output captured, never raises on exit code.

    PYTHONPATH is the repo root plus the tree's wheel dir; `env` adds to (and overrides) the
    environment, PYTHONPATH included.
    """
    root = rootfs()
    full_env = dict(os.environ)
    full_env.pop("PYTHONHOME", None)
    full_env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(root / WHEELS_DIR)]),
        "PYTHONDONTWRITEBYTECODE": "1",  # keep riscv64 .pyc files out of the work tree
    })
    if env:
        full_env.update(env)
    cmd = [shutil.which("qemu-riscv64-static") or "qemu-riscv64-static", "-L", str(root),
           str(root / "usr" / "bin" / "python3"), *args]
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
