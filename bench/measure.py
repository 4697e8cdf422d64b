"""Plan and run benchmarks: which (model, format, runtime, delegate, input, threads) to measure, each in a worker.

:func:`plan` turns a :class:`BenchConfig` into :class:`Job` s: for a zoo model it converts bundles on the fly
(cached under ``$SALSDK_HOME/bench/bundles``), for ``--bundles`` it reads the manifests; every input shape and
thread count gets a PyTorch eager fp32 reference job, so every row can carry its speed-up over it.
:func:`run_jobs` runs each job in a fresh worker process (:mod:`salsdk.bench.worker`) with a progress bar,
optionally in several interleaved rounds (the best round is kept: on a shared machine interference only ever
slows a run down), and :func:`attach_ratios` sets each row's ratio to the reference.
"""
from __future__ import annotations

import hashlib

import json
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .schema import BenchResult, latency_stats
from .worker import MARKER

DEFAULT_FORMATS = ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8", "openvino-bf16")
REFERENCE_FORMAT = "pytorch-fp32"
Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class BenchConfig:
    """Everything ``salsdk bench`` can set for a measuring run."""

    model: str | None = None
    weights: Any = "official"  # "official", a checkpoint path, or None (seeded random init)
    seed: int = 0
    bundles: list[Path] = field(default_factory=list)
    sizes: list[tuple[int, int]] | None = None  # None: the model's native size (+ 480x640 for KDSalBox)
    threads: list[int] = field(default_factory=list)  # empty: all usable cores
    formats: tuple[str, ...] = DEFAULT_FORMATS
    runtimes: tuple[str, ...] | None = None  # filter: pytorch, onnxruntime, litert, coreml, executorch, openvino
    warmup: int = 3
    runs: int = 20
    max_seconds: float = 20.0  # per measurement; at least ``min_runs`` runs are always timed
    min_runs: int = 3
    rounds: int = 1
    profile: bool = True  # operator profiles of the reference, ONNX Runtime and LiteRT XNNPACK rows (why)
    profile_runs: int = 2
    cache_dir: Path | None = None  # converted bundles (default $SALSDK_HOME/bench/bundles)
    min_cc: float = 0.99
    gpu: bool | None = None  # None: when one is present
    timeout_s: float | None = None


@dataclass
class Job:
    """One measurement to run in a worker, with what the result row needs besides the worker's numbers."""

    row: BenchResult  # pre-filled: model, format, runtime, delegate, shape, threads, size, fidelity, ...
    spec: dict[str, Any] | None  # worker spec; None for rows that are known outcomes (rejected/failed/skipped)

    @property
    def label(self) -> str:
        r = self.row
        return f"{r.model} {r.size_label} {r.label} t{r.threads or '-'}"


# ------------------------------------------------------------------------------------------------- helpers
def default_sizes(card) -> list[tuple[int, int]]:
    """The model's native input size, plus 480x640 for KDSalBox students (the paper's timing size)."""
    pre = card.preprocessing
    native = tuple(pre.size or card.extra.get("export_size", (480, 640)))
    sizes = [native]
    if card.family == "kdsalbox" and (480, 640) not in sizes:
        sizes.append((480, 640))
    return sizes


def canonical_shape(card, size: tuple[int, int], batch: int = 1) -> list[int]:
    """(B, 3, H, W) for image models, (B, 3, T, H, W) for clip models."""
    from salsdk.contract import Contract

    return list(Contract.from_card(card).input_shape(size, batch))


def maps_per_run(card_temporal, shape: list[int]) -> int:
    """Output maps of one run: frames x batch for MIMO models (TinyHD-M), else the batch."""
    mimo = card_temporal is not None and card_temporal.mode == "mimo"
    return shape[0] * (shape[2] if mimo and len(shape) == 5 else 1)


def code_tag() -> str:
    """Cache key of the code that makes bundles: ``sdk-<sha12>`` of every salsdk source file, so that bundles
    converted by an older salsdk (another exporter, graph rewrite or quantizer) are never benchmarked as current."""
    import importlib

    digest = hashlib.sha256()
    for package in ("salsdk", "salsdk.convert", "salsdk.quantize"):  # separate folders in a source checkout
        root = Path(importlib.import_module(package).__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}:{path.relative_to(root).as_posix()}".encode() + b"\0" + path.read_bytes())
    return "sdk-" + digest.hexdigest()[:12]


def weights_tag(weights: Any, seed: int, model: str) -> str:
    """Cache key of the weights: ``random-seed0``, ``official-<sha12>`` or ``w-<sha12>`` of a checkpoint (the
    official one is downloaded and verified on first use)."""
    from salsdk.errors import WeightsError
    from salsdk.registry import get_card
    from salsdk.hashing import file_sha256
    from salsdk.weights import resolve_official

    if weights is None:
        return f"random-seed{seed}"
    path = resolve_official(get_card(model)) if weights == "official" else Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} for {model} does not exist")
    return ("official-" if weights == "official" else "w-") + file_sha256(path)[:12]


def bench_home() -> Path:
    from salsdk.weights import salsdk_home

    return salsdk_home() / "bench"


def discover_bundles(paths: list[Path]) -> list[Path]:
    """Bundle folders in ``paths``: each path is a bundle (has manifest.json) or a folder of bundles."""
    from salsdk.manifest import is_bundle

    found: list[Path] = []
    for path in map(Path, paths):
        if is_bundle(path):
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if is_bundle(p))
    return found


# ------------------------------------------------------------------------------------------ conversion cache
def ensure_bundles(model: str, weights: Any, seed: int, size: tuple[int, int] | None, formats: tuple[str, ...],
                   cache_root: Path, min_cc: float, log: Log = _stderr) -> tuple[list[Path], list[BenchResult]]:
    """Bundles of ``formats`` for ``model`` at ``size`` in the cache, converting the missing ones.

    Returns the bundle folders and rows for formats without a bundle (rejected by the fidelity gate, or failed),
    so the report can say what happened to every format asked for.
    """
    from salsdk.convert.formats import FORMATS_BY_KEY
    from salsdk.convert.pipeline import ConvertOptions, convert, static_size
    from salsdk.errors import InputError
    from salsdk.manifest import bundle_name, is_bundle, read_rejection_report, rejection_report_name
    from salsdk.registry import get_card

    card = get_card(model)
    unknown = [f for f in formats if f not in FORMATS_BY_KEY]
    if unknown:
        raise InputError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS_BY_KEY)}")
    hw = static_size(card, size)
    folder = cache_root / f"{card.name}-{weights_tag(weights, seed, card.name)}-{hw[0]}x{hw[1]}-{code_tag()}"
    folder.mkdir(parents=True, exist_ok=True)

    def state(key: str) -> str:
        if is_bundle(folder / bundle_name(card.name, key)):
            return "bundle"
        if (folder / rejection_report_name(card.name, key)).is_file():
            return "rejected"
        return "missing"

    missing = [k for k in formats if state(k) == "missing"]
    failures: dict[str, str] = {}
    if missing:
        if formats_need_fp32(missing) and "onnx-fp32" not in missing:
            missing.insert(0, "onnx-fp32")  # derived formats start from the ONNX fp32 export
        log(f"converting {card.name} at {hw[0]}x{hw[1]} to {', '.join(missing)} (cached in {folder})")
        options = ConvertOptions(model=card.name, weights=weights, formats=[FORMATS_BY_KEY[k] for k in missing],
                                 out=folder, size=size, min_cc=min_cc)
        outcomes = convert(options,
                           log=lambda m: log(f"  convert: {m.strip()}"))
        failures = {o.format.key: o.message for o in outcomes if o.status == "failed"}
    bundles, others = [], []
    shape = canonical_shape(card, hw)
    for key in formats:
        fmt = FORMATS_BY_KEY[key]
        base = BenchResult(model=card.name, format=key, runtime=fmt.runtime, precision=fmt.precision,
                           input_shape=shape, maps_per_run=maps_per_run(card.temporal, shape))
        status = state(key)
        if status == "bundle":
            bundles.append(folder / bundle_name(card.name, key))
        elif status == "rejected":
            fid = read_rejection_report(folder / rejection_report_name(card.name, key))
            base.status, base.fidelity_cc_min, base.fidelity_cc_mean = "rejected", fid.cc_min, fid.cc_mean
            base.fidelity_source, base.gate = "manifest", fid.min_cc
            base.error = f"CC min {fid.cc_min:.4f} < {fid.min_cc} at conversion, float fallback included"
            others.append(base)
        else:
            base.status = "failed"
            base.error = f"conversion failed: {failures.get(key, 'no bundle was produced')}"
            others.append(base)
    return bundles, others


def formats_need_fp32(keys: list[str]) -> bool:
    return any(k != "onnx-fp32" for k in keys)


# --------------------------------------------------------------------------------------------------- plan
def runtime_variants(runtime: str, gpu: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(delegate, device, adapter options) to measure a bundle of ``runtime`` with, on this machine."""
    if runtime == "onnxruntime":
        variants = [("cpu", "cpu", {"device": "cpu"})]
        if gpu:
            try:
                import onnxruntime as ort

                if "CUDAExecutionProvider" in ort.get_available_providers():
                    variants.append(("cuda", "cuda", {"device": "cuda"}))
            except ImportError:
                pass
        return variants
    if runtime == "litert":
        return [("xnnpack", "cpu", {"xnnpack": True}), ("builtin", "cpu", {"xnnpack": False})]
    if runtime == "coreml":
        return [("all", "cpu+ane", {})]
    return [("cpu", "cpu", {})]


def _gpu_present(config: BenchConfig) -> bool:
    if config.gpu is False:
        return False
    try:
        import torch

        present = torch.cuda.is_available()
    except ImportError:
        present = False
    return present


def _complexity(model: str, shape: list[int], precision: str = "fp32") -> dict[str, int | None]:
    """``params``, ``macs`` (per run), fp32 ``state_dict_bytes`` and ``bytes_moved`` (per run at ``precision``) of
    ``model`` at ``shape``; all None for a model the registry does not know (a foreign bundle)."""
    try:
        from .analysis import bytes_moved, mac_breakdown

        b = mac_breakdown(model, tuple(shape))
        return {"params": b.params, "macs": b.macs, "state_dict_bytes": b.state_dict_bytes,
                "bytes_moved": bytes_moved(b, precision)}
    except Exception:  # noqa: BLE001 - a model the registry does not know (foreign bundle): no counts
        return dict.fromkeys(("params", "macs", "state_dict_bytes", "bytes_moved"))


def pinned_weights(manifest, given: Any) -> tuple[Any, int]:
    """``(weights, seed)`` for the PyTorch reference of a bundle: its seed if untrained; else the checkpoint it
    pins: ``given`` (a path whose SHA-256 must match the pin) or the official one from the cache.

    Raises :class:`~salsdk.errors.WeightsError` when the pinned checkpoint is not at hand.
    """
    from salsdk.errors import WeightsError
    from salsdk.registry import get_card
    from salsdk.hashing import file_sha256
    from salsdk.weights import cached_path

    pinned = manifest.weights
    if not pinned.trained:
        return None, int(pinned.seed or 0)
    candidates = [Path(given).expanduser()] if given not in (None, "official") else []
    candidates.append(cached_path(get_card(manifest.model_name)))
    for path in candidates:
        if path.is_file() and file_sha256(path) == pinned.sha256:
            return str(path), 0
    raise WeightsError(f"the checkpoint the bundles pin ({pinned.file_name}, SHA-256 {str(pinned.sha256)[:12]}) is not "
                       f"in the weights cache: pass it with --weights")


def reference_job(model: str, weights: Any, seed: int, shape: list[int], threads: int | None, device: str,
                  config: BenchConfig, trained: bool | None = None) -> Job:
    """The PyTorch eager fp32 job at ``shape``."""
    from salsdk.registry import get_card

    card = get_card(model)
    cost = _complexity(card.name, shape)
    row = BenchResult(model=card.name, format=REFERENCE_FORMAT, runtime="pytorch",
                      delegate="cuda" if device == "cuda" else "cpu", device=device, input_shape=shape,
                      threads=threads, maps_per_run=maps_per_run(card.temporal, shape), params=cost["params"],
                      macs=cost["macs"], bytes_moved=cost["bytes_moved"], file_bytes=cost["state_dict_bytes"], fidelity_cc_min=1.0, fidelity_cc_mean=1.0,
                      fidelity_source="reference", trained=weights is not None)
    row.notes.append("file size: fp32 state dict (weights and BatchNorm statistics)")
    spec = {"kind": "pytorch", "model": card.name, "weights": None if weights is None else str(weights),
            "seed": seed, "device": device}
    return Job(row, _with_timing(spec, shape, threads, config, profile=config.profile and device == "cpu"))


def _with_timing(spec: dict[str, Any], shape: list[int], threads: int | None, config: BenchConfig,
                 profile: bool) -> dict[str, Any]:
    return {**spec, "input_shape": shape, "threads": threads, "warmup": config.warmup, "runs": config.runs,
            "max_seconds": config.max_seconds, "min_runs": config.min_runs, "profile": profile,
            "profile_runs": config.profile_runs}


def bundle_jobs(bundle: Path, threads: int | None, config: BenchConfig, gpu: bool) -> list[Job]:
    """Jobs measuring one bundle on every runtime variant available here."""
    from salsdk.manifest import read_manifest

    manifest = read_manifest(bundle)
    fmt, fidelity = manifest.format, manifest.fidelity
    shape = list(manifest.canonical_input_shape())
    cost = _complexity(manifest.model_name, shape, fmt.precision)
    jobs = []
    for delegate, device, options in runtime_variants(fmt.runtime, gpu):
        rewrite = manifest.graph_rewrite
        label = f"{fmt.key} [{rewrite.split('-')[1]}]" if rewrite else fmt.key  # e.g. "[framewise]"
        row = BenchResult(model=manifest.model_name, format=label, runtime=fmt.runtime, delegate=delegate,
                          precision=fmt.precision, device=device, input_shape=shape, threads=threads,
                          maps_per_run=manifest.maps_per_run, file_bytes=manifest.model_bytes,
                          params=cost["params"], macs=cost["macs"], bytes_moved=cost["bytes_moved"],
                          fidelity_cc_min=fidelity.cc_min, fidelity_cc_mean=fidelity.cc_mean,
                          fidelity_source="manifest", gate=manifest.gate, trained=manifest.weights.trained,
                          bundle=str(bundle))
        if fidelity.method == "simulated":
            row.notes.append("fidelity simulated (CoreML numerics reproduced off macOS)")
        if fmt.runtime == "coreml" and platform.system() != "Darwin":
            row.status, row.error = "skipped", "CoreML runs only on macOS"
            jobs.append(Job(row, None))
            continue
        spec = {"kind": "bundle", "bundle": str(bundle), "runtime": fmt.runtime,
                "model_file": manifest.model_file, "options": options}
        profile = config.profile and device == "cpu" and (
            fmt.runtime == "onnxruntime" or (fmt.runtime == "litert" and options.get("xnnpack", True)))
        jobs.append(Job(row, _with_timing(spec, shape, threads, config, profile)))
    return jobs


def _wanted(runtime: str, config: BenchConfig) -> bool:
    return config.runtimes is None or runtime in config.runtimes


def plan(config: BenchConfig, log: Log = _stderr) -> list[Job]:
    """Every job of a run (conversions happen here, before any timing)."""
    from salsdk.errors import InputError
    from salsdk.manifest import read_manifest
    from salsdk.registry import get_card

    from .machine import usable_cores

    threads_list = config.threads or [usable_cores()]
    gpu = _gpu_present(config)
    jobs: list[Job] = []
    groups: dict[tuple[str, tuple[int, ...]], list[Path]] = {}
    known: list[Job] = []
    manifests = {}
    if config.bundles:
        bundles = discover_bundles(config.bundles)
        if not bundles:
            raise InputError(f"no bundles (folders with manifest.json) in {', '.join(map(str, config.bundles))}")
        for bundle in bundles:
            manifest = read_manifest(bundle)
            if config.model and manifest.model_name.lower() != config.model.lower():
                continue
            manifests[bundle] = manifest
            groups.setdefault((manifest.model_name, manifest.canonical_input_shape()), []).append(bundle)
    elif config.model:
        card = get_card(config.model)
        cache_root = Path(config.cache_dir) if config.cache_dir else bench_home() / "bundles"
        for size in (config.sizes or default_sizes(card)):
            bundles, others = ensure_bundles(card.name, config.weights, config.seed, size, config.formats,
                                             cache_root, config.min_cc, log)
            groups[(card.name, tuple(canonical_shape(card, size)))] = bundles
            known += [Job(r, None) for r in others]
    else:
        raise InputError("give --model NAME and/or --bundles DIR")

    for (model, shape), bundles in groups.items():
        weights, seed = config.weights, config.seed
        reference = _wanted("pytorch", config)
        if bundles and bundles[0] in manifests:  # the reference uses the weights the bundles pin
            try:
                weights, seed = pinned_weights(manifests[bundles[0]], config.weights)
            except Exception as exc:  # noqa: BLE001 - reported, the bundle rows still run
                log(f"note: no PyTorch reference for {model}: {exc}")
                reference = False
        for threads in threads_list:
            if reference:
                jobs.append(reference_job(model, weights, seed, list(shape), threads, "cpu", config))
                if gpu:
                    jobs.append(reference_job(model, weights, seed, list(shape), threads, "cuda", config))
            for bundle in bundles:
                runtime = manifests[bundle].format.runtime if bundle in manifests else read_manifest(bundle).format.runtime
                if _wanted(runtime, config):
                    jobs += bundle_jobs(bundle, threads, config, gpu)
            for job in known:
                if list(job.row.input_shape) == list(shape) and _wanted(job.row.runtime, config):
                    row = BenchResult.from_dict(job.row.to_dict())
                    row.threads = threads
                    jobs.append(Job(row, None))
    return jobs


# ---------------------------------------------------------------------------------------------------- run
def run_worker(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Start one worker process and return its result dictionary (``ok`` False with ``error`` on failure)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "salsdk.bench.worker", json.dumps(spec)], capture_output=True,
                              text=True,
                              timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout_s:.0f}s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = [l for l in (done.stderr or done.stdout).strip().splitlines() if l.strip()]
    return {"ok": False, "error": f"worker exited with status {done.returncode}: {tail[-1] if tail else 'no output'}"}


def fill_row(row: BenchResult, result: dict[str, Any]) -> BenchResult:
    """Copy a worker's numbers into a pre-filled row."""
    if not result.get("ok"):
        row.status = "failed"
        row.error = result.get("error", "unknown error")
        engines = r"salsdk\.runtimes\.\w+|ai_edge_litert|tflite_runtime|coremltools|executorch|openvino"
        missing = re.search(rf"No module named '({engines})'", row.error)
        if missing:
            row.status, row.error = "skipped", f"{row.runtime} is not available here ({missing.group(1)} missing)"
        row.extra["traceback"] = result.get("traceback", "")
        return row
    row.status, row.error = "ok", ""
    row.load_s, row.first_run_ms, row.warmup = result["load_s"], result["first_run_ms"], result["warmup"]
    for key, value in latency_stats(result["latencies_ms"]).items():
        setattr(row, key, value)
    row.peak_rss_mb, row.baseline_rss_mb = result.get("peak_rss_mb"), result.get("baseline_rss_mb")
    row.engine = result.get("engine", {})
    if row.threads is None:
        row.threads = row.engine.get("threads") if isinstance(row.engine.get("threads"), int) else None
    row.extra["latencies_ms"] = [round(v, 3) for v in result["latencies_ms"]]
    row.extra["output_shapes"] = result.get("output_shapes")
    if result.get("stopped_by_time_budget"):
        row.notes.append(f"{row.runs} of {result.get('requested_runs')} runs (time budget per measurement)")
    if not result.get("output_finite", True):
        row.notes.append("output has NaN/Inf values")
    if result.get("torch_imported") and row.runtime != "pytorch":
        row.notes.append("PyTorch was loaded in the worker: peak memory includes it")
    if "profile" in result:
        row.extra["profile"] = result["profile"]
    return row


def run_jobs(jobs: list[Job], config: BenchConfig, machines: dict[int | None, dict[str, Any]],
             progress: bool = True, run_id: str | None = None) -> list[BenchResult]:
    """Run every job (``config.rounds`` interleaved rounds, best kept) and return the rows with ratios.

    ``machines`` maps a thread count to the machine description with the GEMM peak at that thread count.
    """
    from tqdm import tqdm

    run_id = run_id or new_run_id()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    timeout = config.timeout_s or max(180.0, 4 * config.max_seconds + 120.0)
    measured = [j for j in jobs if j.spec is not None]
    results: dict[int, list[dict[str, Any]]] = {id(j): [] for j in measured}
    total = len(measured) * max(1, config.rounds)
    with tqdm(total=total, desc="bench", unit="run", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for round_index in range(max(1, config.rounds)):
            for job in measured:
                bar.set_postfix_str(job.label + (f" (round {round_index + 1})" if config.rounds > 1 else ""))
                spec = dict(job.spec)
                if round_index > 0:
                    spec["profile"] = False  # profiles once, in the first round
                results[id(job)].append(run_worker(spec, timeout))
                bar.update(1)
    rows = []
    for job in jobs:
        row = job.row
        if job.spec is not None:
            attempts = results[id(job)]
            ok = [r for r in attempts if r.get("ok")]
            best = min(ok, key=lambda r: latency_stats(r["latencies_ms"])["latency_ms_p50"]) if ok else attempts[-1]
            if ok and "profile" not in best:
                best = {**best, **{k: v for r in ok for k, v in r.items() if k == "profile"}}
            row = fill_row(row, best)
            if len(attempts) > 1 and ok:
                row.notes.append(f"best of {len(attempts)} interleaved rounds (p50 per round: "
                                 + ", ".join(f"{latency_stats(r['latencies_ms'])['latency_ms_p50']:.1f}" for r in ok)
                                 + " ms)")
        machine = machines.get(row.threads) or next(iter(machines.values()))
        row.run_id, row.timestamp = run_id, stamp
        row.machine, row.machine_id, row.machine_info = machine.get("summary", ""), machine.get("id", ""), machine
        rows.append(row)
    return attach_ratios(rows)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def attach_ratios(rows: list[BenchResult]) -> list[BenchResult]:
    """Set ``reference_p50_ms`` and ``ratio`` (reference / row) from the PyTorch eager row of the same
    model, input shape, thread count and machine (a CUDA row's reference is PyTorch on CUDA where measured)."""
    refs: dict[tuple, BenchResult] = {}
    for r in rows:
        if r.is_reference and r.status == "ok" and r.central_ms:
            refs[(r.machine_id, r.model, tuple(r.input_shape), r.threads, r.device)] = r
    for r in rows:
        if r.status != "ok" or not r.central_ms:
            continue
        key = (r.machine_id, r.model, tuple(r.input_shape), r.threads)
        ref = refs.get(key + (r.device,)) or refs.get(key + ("cpu",))
        if ref is None:  # an import (phone) row, or another thread count: no same-machine reference
            continue
        r.reference_p50_ms = ref.central_ms
        r.ratio = ref.central_ms / r.central_ms
    return rows


def benchmark(config: BenchConfig, progress: bool = True, log: Log = _stderr) -> list[BenchResult]:
    """Plan and run a whole benchmark (see ``salsdk bench``); returns the rows."""
    from .machine import machine_info

    jobs = plan(config, log)
    machines = {}
    for threads in sorted({j.row.threads for j in jobs}, key=lambda t: t or 0):
        started = time.perf_counter()
        machines[threads] = machine_info(threads)
        log(f"machine: {machines[threads]['summary']} at {threads or 'default'} threads "
            f"(GEMM measured in {time.perf_counter() - started:.1f}s)")
    log(f"{sum(j.spec is not None for j in jobs)} measurements, each in its own process "
        f"(warm-up {config.warmup}, up to {config.runs} runs or {config.max_seconds:.0f}s each)")
    rows = run_jobs(jobs, config, machines, progress)
    remeasure_peak(machines, rows)
    return rows


def remeasure_peak(machines: dict[int | None, dict[str, Any]], rows: list[BenchResult]) -> None:
    """Measure the GEMM peaks and the memory bandwidth again after the run and keep the higher of each (a busy
    moment only lowers them)."""
    from .machine import bf16_gemm_peak, gemm_peak, int8_gemm_peak, machine_summary, memory_bandwidth

    for threads, machine in machines.items():
        for key, measure, unit in (("gemm", lambda: gemm_peak(threads), "gflops"),
                                   ("gemm_int8", lambda: int8_gemm_peak(threads), "gops"),
                                   ("gemm_bf16", lambda: bf16_gemm_peak(threads), "gflops"),
                                   ("memory", memory_bandwidth, "gb_per_s")):
            before = machine.get(key)
            if not before:
                continue
            again = measure()
            samples = [before[unit], again[unit]]
            if again[unit] > before[unit]:
                machine[key] = again
            machine[key][f"samples_{unit}"] = samples
        machine["summary"] = machine_summary(machine)
    for row in rows:
        if row.source == "measured" and row.machine_info:
            row.machine = row.machine_info.get("summary", row.machine)
