"""Drive a site written by ``salsdk export web`` in headless Chromium (Playwright), for tests and benchmarks.

Chromium is the system's (Debian's ``chromium`` package, ``/usr/bin/chromium``; ``$SALSDK_CHROMIUM`` overrides):
Playwright only drives it, so no browser is downloaded. It starts with the flags a closed network needs (no
background networking, component updates or sync) and an empty profile, and the site is served on localhost with
the cross-origin isolation headers (:mod:`salsdk.clients.web_server`), or, for pages asked with
``isolated=False``, without them (as a plain static host serves it).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError
from .web_server import serve_in_thread

CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps")
READY = "window.salsdkPage && window.salsdkPage.ready"


def chromium_path() -> str:
    """The Chromium executable: ``$SALSDK_CHROMIUM``, else ``chromium`` on PATH; a clear error otherwise."""
    found = os.environ.get("SALSDK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise InputError("Chromium is not installed: `apt-get update && apt-get install -y chromium` (Debian), or set "
                         "SALSDK_CHROMIUM to a Chromium/Chrome executable")
    return found


class Browser:
    """Headless Chromium on one served site: ``with Browser(site) as b: page = b.page(threads=2)``.

    ``url`` is the isolated server's base URL; ``console`` collects the pages' console messages and errors;
    ``requests`` every URL the pages asked for.
    """

    def __init__(self, site: Path) -> None:
        self.site = Path(site)
        self.console: list[str] = []
        self.requests: list[str] = []
        self._servers: dict[bool, tuple] = {}

    def base_url(self, isolated: bool = True) -> str:
        """Base URL of the site served with (or without) the cross-origin isolation headers."""
        if isolated not in self._servers:
            self._servers[isolated] = serve_in_thread(self.site, isolated=isolated)
        return self._servers[isolated][1]

    def __enter__(self) -> "Browser":
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise InputError("the browser driver needs Playwright: pip install playwright (it drives the system's "
                             "Chromium; no browser download)") from None
        executable = chromium_path()
        self.url = self.base_url(True)
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_FLAGS))
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if getattr(self, "_browser", None) is not None:
            self._browser.close()
        self._playwright.stop()
        for server, _ in self._servers.values():
            server.shutdown()
            server.server_close()

    def page(self, threads: int = 1, isolated: bool = True, path: str = "index.html", timeout_s: float = 60.0):
        """A new page on the site at ``path?threads=N``, once the page script says it is ready."""
        page = self._browser.new_page()
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))
        page.set_default_timeout(timeout_s * 1000)
        page.goto(f"{self.base_url(isolated)}{path}?threads={threads}")
        page.wait_for_function(READY)
        return page
