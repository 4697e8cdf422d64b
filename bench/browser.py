"""Browser rows of ``salsdk bench``: bundles run by the web client (onnxruntime-web, LiteRT.js; WASM) in Chromium.

The page of a site written by ``salsdk export web`` benchmarks its bundles and writes JSON in the format
:data:`WEB_BENCH_SCHEMA` (its "save the benchmark JSON" link). :func:`parse_web_bench` turns that JSON into rows
of the one result schema (``salsdk bench import FILE.json`` reads it); :func:`measure_browser` does it all in one
go on this machine, for ``salsdk bench --bundles ... --browser``: export a temporary site, serve it, run the page's
benchmark in headless Chromium once per thread count (the WASM runtimes fix their threads per page), so that
browser rows stand next to the native rows of the same files, measured in the same run.

``WEB_BENCH_SCHEMA`` JSON: ``schema``, ``timestamp``, ``user_agent``, ``browser``, ``cross_origin_isolated``,
``hardware_concurrency`` and ``results``, one per bundle: ``bundle``, ``model``, ``format``, ``runtime`` (the
client's backend, e.g. ``onnxruntime-web (wasm)``), ``threads`` (used), ``thread_note`` (why fewer than asked),
``input_shape`` (the manifest's layout), ``load_ms``, ``verify_ms``, ``warmup_runs``, ``latencies_ms``,
``maps_per_run``, ``file_bytes``, ``status``.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from .schema import BenchResult, canonical_shape, latency_stats

WEB_BENCH_SCHEMA = "salsdk-web-bench/1"
RUNTIME_NAMES = {"onnxruntime-web": "onnxruntime-web", "LiteRT.js": "litert.js"}


def _runtime(backend: str) -> str:
    return next((short for prefix, short in RUNTIME_NAMES.items() if backend.startswith(prefix)), backend)


def _browser_name(data: dict[str, Any]) -> str:
    found = re.search(r"(Chrom(?:e|ium))/(\d+)", data.get("user_agent", ""))
    return f"{found.group(1)} {found.group(2)}" if found else "browser"


def parse_web_bench(data: dict[str, Any], machine: dict[str, Any] | None = None) -> list[BenchResult]:
    """Rows from the page's benchmark JSON. ``machine`` (this machine's description, when the browser ran here in
    the same run as the native rows) gives the rows the native rows' machine, so ratios against PyTorch apply."""
    if data.get("schema") != WEB_BENCH_SCHEMA:
        raise ValueError(f"schema {data.get('schema')!r} is not {WEB_BENCH_SCHEMA!r}")
    browser = _browser_name(data)
    rows = []
    for item in data.get("results", []):
        row = BenchResult(model=item["model"], format=item["format"], runtime=_runtime(item.get("runtime", "")),
                          delegate="wasm", precision=item["format"].split("-", 1)[-1], device="cpu",
                          input_shape=canonical_shape(item.get("input_shape") or []), threads=item.get("threads"),
                          maps_per_run=int(item.get("maps_per_run", 1)), source="browser",
                          timestamp=data.get("timestamp", ""), status=item.get("status", "ok"),
                          error=item.get("error", ""), file_bytes=item.get("file_bytes"),
                          warmup=int(item.get("warmup_runs", 0)), bundle=item.get("bundle"))
        if machine:
            row.machine, row.machine_id, row.machine_info = f"{browser} on {machine.get('summary', '')}", \
                machine.get("id", ""), machine
        else:
            row.machine, row.machine_id = browser, f"browser:{browser}"
        row.engine = {"backend": item.get("runtime", ""), "browser": data.get("browser") or browser,
                      "cross_origin_isolated": data.get("cross_origin_isolated")}
        if item.get("thread_note"):
            row.notes.append(item["thread_note"])
        if item.get("load_ms") is not None:
            row.load_s = item["load_ms"] / 1000
        if item.get("latencies_ms"):
            for key, value in latency_stats([float(v) for v in item["latencies_ms"]]).items():
                setattr(row, key, value)
        rows.append(row)
    return rows


def measure_browser(bundles: list[Path], threads: list[int], machines: dict[int | None, dict[str, Any]],
                    runs: int = 20, warmup: int = 3, log: Callable[[str], None] = print) -> list[BenchResult]:
    """Benchmark the ONNX/TFLite ``bundles`` in headless Chromium at each thread count; rows for this machine."""
    from salsdk.clients.browser import Browser
    from salsdk.clients.web import export_web, web_refusal
    from salsdk.manifest import read_manifest

    usable = [b for b in bundles if web_refusal(read_manifest(b)) is None]
    if not usable:
        return []
    rows: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="salsdk-bench-web-") as tmp:
        site = export_web(usable, Path(tmp) / "site", log=lambda _: None)
        names = [read_manifest(b).bundle_name for b in usable]
        with Browser(site) as browser:
            for t in threads or [1]:
                log(f"browser: {len(names)} bundle(s) at {t} WASM thread(s) in headless Chromium")
                page = browser.page(threads=t, timeout_s=600)
                data = page.evaluate("async (o) => await window.salsdkPage.benchmark(o)",
                                     {"bundles": names, "runs": runs, "warmup": warmup})
                page.close()
                rows += parse_web_bench(json.loads(json.dumps(data)), machines.get(t) or next(iter(machines.values()), None))
    by_name = {read_manifest(b).bundle_name: b for b in usable}
    for row in rows:
        row.bundle = str(by_name.get(row.bundle, row.bundle))
    return rows
