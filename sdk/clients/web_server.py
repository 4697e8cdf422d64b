"""Serve a site written by ``salsdk export web`` on localhost (``salsdk serve SITE``).

Every response carries the cross-origin isolation headers (COOP ``same-origin``, COEP ``require-corp``, CORP
``same-origin``) that WASM threads need (SharedArrayBuffer), the right MIME types for ``.mjs`` and ``.wasm``,
and ``no-cache``, so a re-exported site is picked up at once. Only files inside the site are served.
"""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

from ..errors import InputError
from .web import MARKER

HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of one site, with the isolation headers; quiet unless ``verbose``."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
                      ".onnx": "application/octet-stream", ".tflite": "application/octet-stream"}
    verbose = False
    isolated = True

    def end_headers(self) -> None:
        for key, value in HEADERS.items() if self.isolated else ():
            self.send_header(key, value)
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        if self.verbose:
            super().log_message(format, *args)


def make_server(site: Path, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False,
                isolated: bool = True) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``site`` (port 0 picks a free one; ``server.server_address`` tells which); without
    ``isolated``, no cross-origin isolation headers (as a plain static host serves it)."""
    site = Path(site)
    if not (site / MARKER).is_file():
        raise InputError(f"{site} is not a site written by salsdk export web (no {MARKER}): run "
                         "`salsdk export web --bundle DIR... --out SITE` first")
    handler = functools.partial(type("Handler", (SiteHandler,), {"verbose": verbose, "isolated": isolated}), directory=str(site.resolve()))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from None


def serve_in_thread(site: Path, host: str = "127.0.0.1", port: int = 0,
                    isolated: bool = True) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start serving ``site`` in a daemon thread; returns (server, base URL). Stop with ``server.shutdown()``."""
    server = make_server(site, host, port, isolated=isolated)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/"
