"""Open an HTML file in real headless Chromium (selenium + the system chromedriver).

Collects console messages (goog:loggingPrefs browser) and every URL the page requested
(performance log, DevTools Network.requestWillBeSent), so tests can assert "no console errors"
and "no request left file://".
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@dataclass
class PageLoad:
    """What happened when a page was opened."""

    console: list[dict] = field(default_factory=list)  # {"level", "message"}
    requests: list[str] = field(default_factory=list)  # every requested URL
    load_ms: float | None = None  # navigationStart -> loadEventEnd

    def errors(self) -> list[dict]:
        return [m for m in self.console if m["level"] in ("SEVERE", "ERROR")]

    def external_requests(self) -> list[str]:
        """Requests that left the file (anything but file: and inline data:)."""
        return [u for u in self.requests if not u.startswith(("file:", "data:"))]


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A headless Chromium driver with a fresh profile, removed afterwards."""
    profile = tempfile.mkdtemp(prefix="linprobe-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path: selenium-manager must not try to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: webdriver.Chrome, path: Path) -> PageLoad:
    """Navigate to ``path`` (file://), wait for load, return console messages and requests."""
    # Start from a blank page and drain the logs, so only this page's traffic is collected
    # (a fresh profile's new-tab page makes chrome:// requests of its own).
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(path.resolve().as_uri())
    deadline = time.time() + 60
    while driver.execute_script("return document.readyState") != "complete":
        if time.time() > deadline:
            raise TimeoutError(f"{path} did not finish loading in 60 s")
        time.sleep(0.05)
    timing = driver.execute_script(
        "var t = performance.getEntriesByType('navigation')[0];"
        "return t ? t.loadEventEnd - t.startTime : null;")
    result = PageLoad(load_ms=timing)
    for entry in driver.get_log("browser"):
        result.console.append({"level": entry["level"], "message": entry["message"]})
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            result.requests.append(msg["params"]["request"]["url"])
    return result
