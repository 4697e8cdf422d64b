"""Phones: the on-device plan (LiteRT ``benchmark_model`` command lines) and importing what phones measured.

:func:`device_plan` writes, for each TFLite bundle, the ``adb`` commands that push it and run LiteRT's
``benchmark_model`` on the CPU (built-in kernels and XNNPACK, at each thread count), the GPU delegate and NNAPI.
:func:`parse_benchmark_model` reads that tool's output back into :class:`~salsdk.bench.schema.BenchResult` rows,
and :func:`parse_android_demo` does the same for the Android demo's JSON
(:data:`~salsdk.bench.schema.ANDROID_DEMO_SCHEMA`); ``salsdk bench import`` stores both in the database.
"""
from __future__ import annotations

import json
import re
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .browser import WEB_BENCH_SCHEMA, parse_web_bench
from .schema import ANDROID_DEMO_SCHEMA, BenchResult, canonical_shape, latency_stats

DEVICE_DIR = "/data/local/tmp/salsdk"
BENCHMARK_BINARY = "/data/local/tmp/benchmark_model"
BENCHMARK_URL = ("https://ai.google.dev/edge/litert/models/measurement (prebuilt android_aarch64 benchmark_model; "
                 "or bazel build -c opt --config=android_arm64 //tflite/tools/benchmark:benchmark_model)")


# ------------------------------------------------------------------------------------------------ the plan
def delegate_flags(delegate: str, threads: int) -> list[str]:
    """``benchmark_model`` flags for one delegate: ``cpu`` (built-in kernels), ``xnnpack``, ``gpu``, ``nnapi``."""
    if delegate == "cpu":
        return [f"--num_threads={threads}", "--use_xnnpack=false"]
    if delegate == "xnnpack":
        return [f"--num_threads={threads}", "--use_xnnpack=true"]
    if delegate == "gpu":
        return ["--use_gpu=true", "--gpu_precision_loss_allowed=true", "--num_threads=1"]
    if delegate == "nnapi":
        return ["--use_nnapi=true", "--num_threads=1"]
    raise ValueError(f"unknown delegate {delegate!r}: cpu, xnnpack, gpu or nnapi")


def benchmark_command(device_model: str, delegate: str, threads: int = 4, runs: int = 50, warmup: int = 5,
                      binary: str = BENCHMARK_BINARY) -> list[str]:
    """The ``adb shell benchmark_model ...`` command (as an argument list) for one configuration."""
    return ["adb", "shell", binary, f"--graph={device_model}", *delegate_flags(delegate, threads),
            f"--num_runs={runs}", f"--warmup_runs={warmup}", "--report_peak_memory_footprint=true"]


def device_plan(bundles: list[Path], threads: tuple[int, ...] = (1, 4),
                delegates: tuple[str, ...] = ("cpu", "xnnpack", "gpu", "nnapi"), runs: int = 50,
                device_dir: str = DEVICE_DIR) -> list[dict[str, Any]]:
    """One entry per (TFLite bundle, delegate, threads): label, push command, run command, log file name.

    Bundles of other formats are left out (``benchmark_model`` runs ``.tflite`` files only).
    """
    from salsdk.manifest import read_manifest

    plan = []
    for bundle in bundles:
        manifest = read_manifest(bundle)
        if manifest.format.runtime != "litert":
            continue
        remote_dir = f"{device_dir}/{bundle.name}"
        remote = f"{remote_dir}/{manifest.model_file}"
        push = ["adb", "push", str(bundle / manifest.model_file), remote]
        for delegate in delegates:
            for t in (threads if delegate in ("cpu", "xnnpack") else (1,)):
                label = f"{bundle.name}__{delegate}" + (f"_t{t}" if delegate in ("cpu", "xnnpack") else "")
                plan.append({"bundle": bundle.name, "model": manifest.model_name,
                             "format": manifest.format.key, "delegate": delegate, "threads": t,
                             "mkdir": ["adb", "shell", "mkdir", "-p", remote_dir], "push": push,
                             "command": benchmark_command(remote, delegate, t, runs), "log": f"{label}.txt"})
    return plan


def plan_script(plan: list[dict[str, Any]]) -> str:
    """A POSIX shell script running the whole plan, one log file per configuration (import them afterwards)."""
    lines = ["#!/bin/sh", "# salsdk on-device benchmark plan: LiteRT benchmark_model on an Android phone over adb.",
             f"# Needs {BENCHMARK_BINARY} on the phone: {BENCHMARK_URL}",
             "# adb push benchmark_model /data/local/tmp/ && adb shell chmod +x /data/local/tmp/benchmark_model",
             "# Afterwards: salsdk bench import logs/*.txt --bundles <bundle folder> --device-name '<phone>'",
             "set -u", "mkdir -p logs"]
    pushed = set()
    for item in plan:
        if item["bundle"] not in pushed:
            pushed.add(item["bundle"])
            lines += [shlex.join(item["mkdir"]), shlex.join(item["push"])]
        lines.append(f"{shlex.join(item['command'])} > logs/{shlex.quote(item['log'])} 2>&1 "
                     f"|| echo 'failed: {item['log']}'")
    return "\n".join(lines) + "\n"


def plan_markdown(plan: list[dict[str, Any]]) -> str:
    """The plan as a Markdown table of command lines."""
    lines = ["| bundle | delegate | threads | command |", "|---|---|---|---|"]
    for item in plan:
        lines.append(f"| {item['bundle']} | {item['delegate']} | {item['threads']} | "
                     f"`{shlex.join(item['command'])}` |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- benchmark_model
_TIMINGS = re.compile(r"Inference timings in us:\s*Init:\s*([\d.]+),\s*First inference:\s*([\d.]+),\s*"
                      r"Warmup \(avg\):\s*([\d.eE+-]+),\s*Inference \(avg\):\s*([\d.eE+-]+)")
_MEMORY = re.compile(r"Peak memory footprint \(MB\):\s*init=([\d.]+),?\s*overall=([\d.]+)")
_STATS = re.compile(r"count=(\d+)\s+first=([\d.]+)\s+curr=([\d.]+)\s+min=([\d.]+)\s+max=([\d.]+)\s+"
                    r"avg=([\d.eE+-]+)\s+std=([\d.]+)(.*)")
_FLAGS = {
    "graph": re.compile(r"Graph:\s*\[([^\]]+)\]"),
    "threads": re.compile(r"#?[Nn]um(?:ber of)? threads.*?:\s*\[(\d+)\]|#threads used for CPU inference:\s*\[(\d+)\]"),
    "xnnpack": re.compile(r"Use xnnpack:\s*\[(\d|true|false)\]", re.I),
    "gpu": re.compile(r"Use gpu:\s*\[(\d|true|false)\]", re.I),
    "nnapi": re.compile(r"Use NNAPI:\s*\[(\d|true|false)\]", re.I),
    "size_mb": re.compile(r"The input model file size \(MB\):\s*([\d.]+)"),
    "init_ms": re.compile(r"Initialized session in ([\d.]+)\s*ms"),
}


def _flag(text: str, name: str) -> str | None:
    found = _FLAGS[name].search(text)
    if not found:
        return None
    return next((g for g in found.groups() if g is not None), None)


def _on(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")


def split_bundle_name(name: str) -> tuple[str, str]:
    """``'UniSal-tflite-int8'`` -> (``'UniSal'``, ``'tflite-int8'``) using the known format keys."""
    from salsdk.convert.formats import FORMATS_BY_KEY

    for key in sorted(FORMATS_BY_KEY, key=len, reverse=True):
        if name.endswith("-" + key):
            return name[: -len(key) - 1], key
    return name, "tflite"


def parse_benchmark_model(text: str, model: str | None = None, format: str | None = None,
                          device_name: str = "android", delegate: str | None = None,
                          threads: int | None = None) -> BenchResult:
    """One :class:`BenchResult` from ``benchmark_model`` output (Android, Linux or macOS build).

    Reads the flags it echoes (graph, threads, XNNPACK/GPU/NNAPI), the last ``count=... avg=... std=...`` line
    (the timed runs), the ``Inference timings in us`` summary and the ``Peak memory footprint`` line. The tool
    prints no percentiles: ``latency_ms_p50`` stays empty and tables use the mean (noted on the row).
    """
    timings = _TIMINGS.search(text)
    if not timings:
        raise ValueError("no 'Inference timings in us:' line: not benchmark_model output, or the run failed")
    init_us, first_us, warm_us, avg_us = (float(v) for v in timings.groups())
    graph = _flag(text, "graph")
    if graph and (model is None or format is None):
        guess_model, guess_format = split_bundle_name(Path(graph).parent.name or Path(graph).stem)
        model, format = model or guess_model, format or guess_format
    if delegate is None:
        delegate = ("gpu" if _on(_flag(text, "gpu")) else "nnapi" if _on(_flag(text, "nnapi"))
                    else "xnnpack" if _on(_flag(text, "xnnpack")) else "cpu")
        if _flag(text, "xnnpack") is None and delegate == "cpu" and "XNNPACK" in text:
            delegate = "xnnpack"  # recent LiteRT applies XNNPACK by default and says so in its log
    if threads is None:
        value = _flag(text, "threads")
        threads = int(value) if value else None
    row = BenchResult(model=model or "?", format=format or "tflite", runtime="litert", delegate=delegate,
                      precision=(format or "tflite").split("-", 1)[-1], device=device_name,
                      source="benchmark_model", machine=device_name, machine_id=f"device:{device_name}",
                      threads=threads, load_s=init_us / 1e6, first_run_ms=first_us / 1000,
                      latency_ms_mean=avg_us / 1000, timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    stats = [m for m in _STATS.finditer(text)]
    if stats:
        count, _, _, vmin, _, avg, std, rest = stats[-1].groups()
        row.runs, row.latency_ms_min, row.latency_ms_std = int(count), float(vmin) / 1000, float(std) / 1000
        row.latency_ms_mean = float(avg) / 1000
        percentiles = dict(re.findall(r"(p\d+|median)=([\d.]+)", rest))
        if "median" in percentiles or "p50" in percentiles:
            row.latency_ms_p50 = float(percentiles.get("median", percentiles.get("p50"))) / 1000
        for p in ("p90", "p99"):
            if p in percentiles:
                setattr(row, f"latency_ms_{p}", float(percentiles[p]) / 1000)
        if len(stats) > 1:
            row.warmup = int(stats[-2].group(1))
    memory = _MEMORY.search(text)
    if memory:
        row.baseline_rss_mb, row.peak_rss_mb = float(memory.group(1)), float(memory.group(2))
        if row.peak_rss_mb == 0:
            row.peak_rss_mb = row.baseline_rss_mb = None
            row.notes.append("benchmark_model could not read memory on this device")
    size = _flag(text, "size_mb")
    if size:
        row.file_bytes = int(float(size) * 1e6)
    if row.latency_ms_p50 is None:
        row.notes.append("benchmark_model reports mean latency, no percentiles")
    row.extra["warmup_avg_ms"] = warm_us / 1000
    if graph:
        row.extra["graph"] = graph
    return row


# -------------------------------------------------------------------------------------------- Android demo
def parse_android_demo(data: dict[str, Any]) -> list[BenchResult]:
    """Rows from the Android demo's JSON (format: :data:`salsdk.bench.schema.ANDROID_DEMO_SCHEMA`)."""
    if data.get("schema") != ANDROID_DEMO_SCHEMA:
        raise ValueError(f"schema {data.get('schema')!r} is not {ANDROID_DEMO_SCHEMA!r}")
    device = data.get("device", {})
    name = " ".join(str(device.get(k)) for k in ("manufacturer", "model") if device.get(k)) or "android"
    summary = name + (f" ({device['soc']})" if device.get("soc") else "") + (
        f", Android API {device['android_sdk']}" if device.get("android_sdk") else "")
    rows = []
    for item in data.get("results", []):
        model, fmt = item.get("model"), item.get("format")
        if not (model and fmt):
            guess_model, guess_format = split_bundle_name(item.get("bundle", "?"))
            model, fmt = model or guess_model, fmt or guess_format
        shape = canonical_shape(item.get("input_shape") or [])
        row = BenchResult(model=model, format=fmt, runtime="litert", delegate=item.get("delegate", "cpu"),
                          precision=fmt.split("-", 1)[-1], device="android", input_shape=shape,
                          threads=item.get("threads"), maps_per_run=int(item.get("maps_per_run", 1)),
                          source="android-demo", machine=summary, machine_id=f"device:{name}",
                          machine_info={"device": device, "app_version": data.get("app_version")},
                          timestamp=data.get("timestamp", ""), status=item.get("status", "ok"),
                          error=item.get("error", ""), bundle=item.get("bundle"),
                          file_bytes=item.get("file_bytes"), peak_rss_mb=item.get("peak_memory_mb"),
                          warmup=int(item.get("warmup_runs", 0)))
        if item.get("load_ms") is not None:
            row.load_s = item["load_ms"] / 1000
        row.first_run_ms = item.get("first_run_ms")
        if item.get("latencies_ms"):
            for key, value in latency_stats([float(v) for v in item["latencies_ms"]]).items():
                setattr(row, key, value)
        elif item.get("latency_ms"):
            lat = item["latency_ms"]
            for key in ("p50", "p90", "p99", "mean", "min", "std"):
                if lat.get(key) is not None:
                    setattr(row, f"latency_ms_{key}", float(lat[key]))
            row.runs = int(lat.get("runs", 0))
        fid = item.get("fidelity") or {}
        if fid:
            row.fidelity_cc_min, row.fidelity_cc_mean = fid.get("cc_min"), fid.get("cc_mean")
            row.fidelity_source = "measured"
        rows.append(row)
    return rows


def enrich_from_bundles(rows: list[BenchResult], bundles: list[Path]) -> list[BenchResult]:
    """Fill what a phone does not know from the bundles' manifests: input shape, fidelity, params, MACs, size."""
    from salsdk.manifest import read_manifest

    from .measure import _complexity

    by_name = {}
    for bundle in bundles:
        manifest = read_manifest(bundle)
        by_name[(manifest.model_name.lower(), manifest.format.key)] = (bundle, manifest)
    for row in rows:
        found = by_name.get((row.model.lower(), row.format))
        if not found:
            continue
        bundle, manifest = found
        shape = list(manifest.canonical_input_shape())
        row.input_shape = row.input_shape or shape
        row.maps_per_run = max(row.maps_per_run, manifest.maps_per_run)
        row.precision = manifest.format.precision
        row.bundle = row.bundle or str(bundle)
        if row.fidelity_cc_min is None:
            row.fidelity_cc_min, row.fidelity_cc_mean = manifest.fidelity.cc_min, manifest.fidelity.cc_mean
            row.fidelity_source = "manifest"
        row.gate = manifest.gate
        row.trained = manifest.weights.trained
        row.file_bytes = row.file_bytes or manifest.model_bytes
        cost = _complexity(manifest.model_name, shape, row.precision)
        row.params, row.macs = row.params or cost["params"], row.macs or cost["macs"]
        row.bytes_moved = row.bytes_moved or cost["bytes_moved"]
    return rows


def import_file(path: Path, device_name: str | None = None, model: str | None = None,
                format: str | None = None) -> list[BenchResult]:
    """Rows from one file: Android demo JSON, the web page's benchmark JSON, or ``benchmark_model`` text output."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        data = json.loads(text)
        if data.get("schema") == WEB_BENCH_SCHEMA:
            return parse_web_bench(data)
        rows = parse_android_demo(data)
        if device_name:
            for r in rows:
                r.machine, r.machine_id = device_name, f"device:{device_name}"
        return rows
    row = parse_benchmark_model(text, model=model, format=format, device_name=device_name or "android")
    row.extra["log_file"] = Path(path).name
    return [row]
