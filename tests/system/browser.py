"""Debian's chromium driven by Playwright, for the real-browser tests (a test tool's own browser download does not
work on these machines)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking flags Chromium's connections are refused by the machine's closed network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def playwright_or_skip() -> Any:
    """Playwright's sync API; skips the calling test module when Playwright or Debian's chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
    return sync_api


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
