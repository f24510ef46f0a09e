"""Headless Chromium for the dashboard's tests and bench: Debian's /usr/bin/chromium driven by
Playwright's Python API.

Why the system browser: `playwright install` downloads its own build from a CDN, which this
project's machines cannot reach; Debian's chromium package installs with apt
(scripts/setup-browser.sh). The flags keep the browser off the network (no component updates,
no sync, no background fetches, no QUIC) so that a page can only talk to the dashboard.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("TRIBUTARY_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
INSTALL_HINT = ("install it with `bash scripts/setup-browser.sh` (apt-get install -y chromium "
                "chromium-driver, as root; and the pinned `playwright` from constraints.txt)")


def missing() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM}: {INSTALL_HINT}"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return f"the `playwright` Python package is not installed: {INSTALL_HINT}"
    return None


def launch(pw: Any) -> Any:
    """A headless Chromium browser from a started `sync_playwright()`."""
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
