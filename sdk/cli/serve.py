"""``salsdk serve SITE [--port N]``: serve a site written by ``salsdk export web`` on localhost."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "serve a site written by salsdk export web on localhost (with the headers WASM threads need)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``salsdk serve``."""
    parser.add_argument("site", type=Path, help="the site folder (salsdk export web --out)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (exit status 130, as every interrupted command)."""
    from salsdk.clients.web_server import make_server

    server = make_server(args.site, args.host, args.port, args.verbose)
    print(f"serving {args.site} at http://{args.host}:{server.server_address[1]}/ (cross-origin isolated; Ctrl-C stops)",
          flush=True)
    with server:
        server.serve_forever()
    return 0
