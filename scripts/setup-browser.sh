#!/usr/bin/env bash
# Installs what the dashboard's browser tests (tests/test_dashboard*.py) and bench/dashboard.py
# drive: Debian's Chromium (headless, no download of a browser build: `playwright install` cannot
# reach its CDN here) and the pinned PyPI `playwright` package, which drives it through
# executable_path=/usr/bin/chromium. Idempotent; apt-get needs root (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup-browser: /usr/bin/chromium is missing and installing it needs root:" >&2
        echo "  sudo apt-get install -y chromium chromium-driver" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi

if ! "$PY" -c "import playwright" 2>/dev/null; then
    "$PY" -m pip install -qq -c constraints.txt playwright
fi
echo "setup-browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) and playwright ready"
