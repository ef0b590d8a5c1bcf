"""Open a report in headless Chromium and check it as a reader would: it renders, every local link
resolves, and the page makes no request that leaves the machine (no CDN script, font or image).

Chromium is driven through the DevTools protocol (``--remote-debugging-port``) with ``websocket-client``;
network requests are the page's own ``Network.requestWillBeSent`` events, so the browser's background
traffic (update checks) is not mistaken for the report's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-port=0"]
LOCAL_SCHEMES = ("file", "data", "about", "blob")


@dataclass
class PageCheck:
    """What one page did in the browser."""

    url: str
    title: str = ""
    text_chars: int = 0
    tables: int = 0
    images: int = 0
    broken_images: int = 0
    requests: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    measured: dict = field(default_factory=dict)  # the result of check_pages' ``expression``

    @property
    def outside_requests(self) -> list[str]:
        return [u for u in self.requests if urlparse(u).scheme not in LOCAL_SCHEMES]

    def broken_links(self) -> list[str]:
        """Local links whose target file does not exist (anchors within a page count as resolving)."""
        broken = []
        for link in self.links:
            parsed = urlparse(link)
            if parsed.scheme == "file" and not Path(unquote(parsed.path)).exists():
                broken.append(link)
        return broken

    @property
    def external_links(self) -> list[str]:
        return [u for u in self.links if urlparse(u).scheme in ("http", "https")]


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class _Browser:
    def __init__(self, binary: str):
        import websocket  # websocket-client

        self._profile = tempfile.mkdtemp(prefix="musicrecall-chromium-")
        # Own process group, so that close() also stops the renderer, zygote and crashpad children,
        # which otherwise keep writing into the profile while it is being removed.
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        port = None
        deadline = time.time() + 30
        while port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = int(match.group(1)) if match else None
            if not line and self.proc.poll() is not None:
                raise RuntimeError("chromium exited before opening its DevTools port")
        if port is None:
            raise RuntimeError("chromium did not open its DevTools port within 30 s")
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(p for p in pages if p.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self._id = 0

    def send(self, method: str, **params) -> int:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        return self._id

    def call(self, method: str, **params) -> dict:
        wanted = self.send(method, **params)
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == wanted:
                return msg.get("result", {})

    def close(self) -> None:
        """Ask the browser to quit, then stop its whole process group and remove the profile."""
        try:
            self.send("Browser.close")
            self.ws.close()
        except Exception:  # noqa: BLE001 - the browser may already be gone; we stop it below either way
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc.stderr.close()
        # A straggling child may still flush a file for a moment; retry instead of failing the check.
        for _ in range(20):
            shutil.rmtree(self._profile, ignore_errors=True)
            if not os.path.exists(self._profile):
                return
            time.sleep(0.25)
        warnings.warn(f"could not remove the chromium profile {self._profile}; it is only a temporary directory",
                      stacklevel=2)


_PAGE_FACTS = """JSON.stringify({title: document.title, text: document.body ? document.body.innerText.length : 0,
  tables: document.querySelectorAll('table').length, images: document.images.length,
  broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length,
  links: [...document.querySelectorAll('a[href]')].map(a => a.href)})"""


def _load(browser: _Browser, check: PageCheck, timeout_s: float) -> None:
    """Navigate to ``check.url`` and wait for its load event, collecting the page's requests."""
    browser.send("Page.navigate", url=check.url)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        msg = json.loads(browser.ws.recv())
        if msg.get("method") == "Network.requestWillBeSent":
            check.requests.append(msg["params"]["request"]["url"])
        elif msg.get("method") == "Page.loadEventFired":
            break
    else:
        raise TimeoutError(f"{check.url} did not finish loading in {timeout_s} s")
    time.sleep(0.3)  # let late requests (fonts, lazy images) show up


def check_pages(paths: list[Path], binary: str | None = None, timeout_s: float = 60.0,
                viewport: tuple[int, int] | None = None, expression: str | None = None) -> list[PageCheck]:
    """Load each HTML file in one headless browser and report what it rendered and requested.

    ``viewport`` (width, height in CSS pixels) emulates a screen, e.g. ``(1366, 768)`` for a laptop;
    ``expression`` is JavaScript returning a JSON string, evaluated on each page into ``PageCheck.measured``.
    """
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary found (Debian package: chromium)")
    browser = _Browser(binary)
    try:
        browser.call("Network.enable")
        browser.call("Page.enable")
        if viewport is not None:
            browser.call("Emulation.setDeviceMetricsOverride", width=viewport[0], height=viewport[1],
                         deviceScaleFactor=1, mobile=False)
        checks = []
        for path in paths:
            check = PageCheck(path.resolve().as_uri())
            _load(browser, check, timeout_s)
            facts = json.loads(browser.call("Runtime.evaluate", expression=_PAGE_FACTS)["result"]["value"])
            check.title, check.text_chars, check.tables = facts["title"], facts["text"], facts["tables"]
            check.images, check.broken_images, check.links = facts["images"], facts["broken"], facts["links"]
            if expression is not None:
                check.measured = json.loads(browser.call("Runtime.evaluate", expression=expression)["result"]["value"])
            checks.append(check)
        return checks
    finally:
        browser.close()


# What a laptop reader sees of the claims ledger: does the page scroll sideways, how wide is the claim
# column, and does the ledger table fit inside the page.
LEDGER_LAYOUT = """JSON.stringify((() => {
  const doc = document.scrollingElement, table = document.querySelector('table.ledger');
  const claim = table ? table.querySelector('tr:nth-child(2) td') : null;
  return {page_scroll_width: doc.scrollWidth, page_client_width: doc.clientWidth,
          table_right: table ? table.getBoundingClientRect().right : null,
          claim_width: claim ? claim.getBoundingClientRect().width : null,
          columns: table ? table.querySelectorAll('tr:first-child th').length : 0};
})())"""
