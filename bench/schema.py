"""The one result schema of ``salsdk bench``: measurements here, imports from phones, and the database all use it.

A :class:`BenchResult` is one row: one model, one artifact format, one runtime/delegate, one input shape, one
thread count, on one machine. Speed is never stored without the artifact's fidelity (CC against PyTorch fp32),
so no table or chart can show a fast artifact without saying how faithful it is.

The Android demo app writes its benchmark results as JSON in the format :data:`ANDROID_DEMO_SCHEMA` documents
(see :data:`ANDROID_DEMO_EXAMPLE`); ``salsdk bench import`` turns that JSON, and the text output of LiteRT's
``benchmark_model`` tool, into rows of this same schema.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA = "salsdk-bench/1"
DEFAULT_GATE = 0.99

#: where a row's numbers come from
SOURCES = ("measured", "benchmark_model", "android-demo", "browser")


@dataclass
class BenchResult:
    """One benchmark measurement (or a failed/skipped attempt at one, with the reason in ``error``)."""

    model: str
    format: str  # "pytorch-fp32" for the eager reference, else the bundle's format key, e.g. "onnx-int8"
    runtime: str  # pytorch | onnxruntime | litert | coreml | executorch | openvino
    delegate: str = "cpu"  # cpu | xnnpack | builtin (LiteRT without XNNPACK) | cuda | gpu | nnapi | ane ...
    precision: str = "fp32"
    device: str = "cpu"  # cpu | cuda | android | ios
    input_shape: list[int] = field(default_factory=list)  # canonical layout: NCHW or NCTHW
    threads: int | None = None
    maps_per_run: int = 1  # saliency maps one run produces (16 for TinyHD-M, MIMO)
    status: str = "ok"  # ok | failed | skipped | rejected
    error: str = ""
    # --- speed -----------------------------------------------------------------------------------
    load_s: float | None = None  # creating the model/session (engine load, graph preparation)
    first_run_ms: float | None = None
    warmup: int = 0
    runs: int = 0
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_mean: float | None = None
    latency_ms_min: float | None = None
    latency_ms_std: float | None = None
    # --- memory (peak resident set of the process that ran only this measurement) ---------------------
    peak_rss_mb: float | None = None
    baseline_rss_mb: float | None = None  # after imports, before the model was loaded
    # --- cost and size ---------------------------------------------------------------------------
    file_bytes: int | None = None
    params: int | None = None
    macs: int | None = None  # per run
    bytes_moved: int | None = None  # per run, a lower bound at the row's precision (bench.analysis.bytes_moved)
    # --- fidelity (CC of this artifact's maps against PyTorch fp32 on held-out real inputs) -----------
    fidelity_cc_min: float | None = None
    fidelity_cc_mean: float | None = None
    fidelity_source: str = "unknown"  # reference | manifest | measured | unknown
    gate: float | None = None  # the fidelity gate (min CC) the artifact was accepted at, from its manifest
    trained: bool | None = None
    # --- side by side ----------------------------------------------------------------------------
    reference_p50_ms: float | None = None  # PyTorch eager fp32, same model, input, threads, machine
    ratio: float | None = None  # reference p50 / this row's p50 (speed-up over PyTorch eager)
    # --- provenance ------------------------------------------------------------------------------
    source: str = "measured"
    machine: str = ""  # short description, e.g. "AMD EPYC, 2 cores (x86_64, Linux)"
    machine_id: str = ""
    machine_info: dict[str, Any] = field(default_factory=dict)  # CPU, cores, OS, GEMM peak, GPU ...
    bundle: str | None = None
    run_id: str = ""
    timestamp: str = ""
    engine: dict[str, Any] = field(default_factory=dict)  # runtime.describe(): version, providers, delegate
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. profile: top operators by time

    # ------------------------------------------------------------------------------------- derived
    @property
    def central_ms(self) -> float | None:
        """Typical latency per run: the median, or the mean where a tool reports no percentiles."""
        return self.latency_ms_p50 if self.latency_ms_p50 is not None else self.latency_ms_mean

    @property
    def ms_per_map(self) -> float | None:
        """Latency per output saliency map (TinyHD-M produces 16 maps per run)."""
        c = self.central_ms
        return None if c is None else c / max(1, self.maps_per_run)

    @property
    def maps_per_s(self) -> float | None:
        """Throughput in saliency maps per second (sequential runs, batch as the artifact expects)."""
        m = self.ms_per_map
        return None if not m else 1000.0 / m

    @property
    def gmacs_per_s(self) -> float | None:
        """Effective compute rate: counted MACs per run over the typical latency."""
        c = self.central_ms
        return None if not (c and self.macs) else self.macs / (c / 1000.0) / 1e9

    @property
    def peak_share(self) -> float | None:
        """Effective MAC rate as a share of this machine's measured fp32 GEMM peak (MAC/s)."""
        peak = (self.machine_info.get("gemm") or {}).get("gmacs_per_s") if self.machine_info else None
        rate = self.gmacs_per_s
        return None if not (peak and rate) else rate / peak

    @property
    def compute_peak(self) -> dict[str, Any]:
        """The measured GEMM peak of this row's arithmetic (empty if unknown): int8 for int8 artifacts, the faster
        of bf16 and fp32 for bf16 ones (OpenVINO computes in fp32 where the CPU has no bf16 arithmetic), else fp32."""
        info = self.machine_info or {}
        if self.precision.startswith("int8") and info.get("gemm_int8"):
            return info["gemm_int8"]
        if self.precision == "bf16" and info.get("gemm_bf16"):
            return max((info["gemm_bf16"], info.get("gemm") or {}), key=lambda p: p.get("gmacs_per_s") or 0)
        return info.get("gemm") or {}

    @property
    def compute_limit_ms(self) -> float | None:
        """The fastest one run's MACs could be done here: at the measured GEMM peak of the row's precision."""
        peak = self.compute_peak.get("gmacs_per_s")
        return None if not (peak and self.macs) else self.macs / (peak * 1e9) * 1000.0

    @property
    def memory_limit_ms(self) -> float | None:
        """The fastest one run's bytes could move here: :attr:`bytes_moved` at the measured memory bandwidth."""
        bandwidth = (self.machine_info or {}).get("memory", {}).get("gb_per_s")
        return None if not (bandwidth and self.bytes_moved) else self.bytes_moved / (bandwidth * 1e9) * 1000.0

    @property
    def bound(self) -> str | None:
        """``"compute"`` or ``"memory"``: which limit is the higher, i.e. which one holds this row back."""
        limits = {"compute": self.compute_limit_ms, "memory": self.memory_limit_ms}
        known = {k: v for k, v in limits.items() if v}
        return max(known, key=known.get) if known else None

    @property
    def limit_share(self) -> float | None:
        """How close the row runs to this machine's limit for it: (the higher of the compute and memory limits)
        / its typical latency; 1.0 would be running at the limit."""
        bound, c = self.bound, self.central_ms
        if not (bound and c):
            return None
        return (self.compute_limit_ms if bound == "compute" else self.memory_limit_ms) / c

    @property
    def size_label(self) -> str:
        """``'480x640'`` or ``'16x192x256'`` (frames x height x width)."""
        return "x".join(str(d) for d in self.input_shape[2:]) if len(self.input_shape) > 2 else "?"

    @property
    def label(self) -> str:
        """``'onnx-int8 / onnxruntime'``, ``'tflite-fp32 / litert+xnnpack'``."""
        engine = self.runtime if self.delegate in ("cpu", "") else f"{self.runtime}+{self.delegate}"
        return f"{self.format} / {engine}"

    @property
    def is_reference(self) -> bool:
        return self.format == "pytorch-fp32" and self.runtime == "pytorch"

    @property
    def accepted(self) -> bool:
        """Measured successfully and faithful: CC min at least the gate the manifest records (0.99 when it records
        none, e.g. phone imports); the reference itself counts."""
        gate = DEFAULT_GATE if self.gate is None else self.gate
        return self.status == "ok" and self.fidelity_cc_min is not None and self.fidelity_cc_min >= gate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary, with the derived values added (ignored by :meth:`from_dict`)."""
        data = asdict(self)
        data.update(schema=SCHEMA, central_ms=self.central_ms, ms_per_map=self.ms_per_map,
                    maps_per_s=self.maps_per_s, gmacs_per_s=self.gmacs_per_s, peak_share=self.peak_share,
                    compute_limit_ms=self.compute_limit_ms, memory_limit_ms=self.memory_limit_ms, bound=self.bound,
                    limit_share=self.limit_share)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchResult":
        """Inverse of :meth:`to_dict`; unknown keys (derived values, newer fields) are kept in ``extra``."""
        known = {f.name for f in fields(cls)}
        derived = {"schema", "central_ms", "ms_per_map", "maps_per_s", "gmacs_per_s", "peak_share",
                   "compute_limit_ms", "memory_limit_ms", "bound", "limit_share"}
        row = cls(**{k: v for k, v in data.items() if k in known})
        unknown = {k: v for k, v in data.items() if k not in known and k not in derived}
        if unknown:
            row.extra = {**row.extra, **unknown}
        if row.input_shape:
            row.input_shape = [int(d) for d in row.input_shape]
        return row


def canonical_shape(shape: list[int]) -> list[int]:
    """An input shape as a client fed it (NHWC / NTHWC, channels last) in the schema's canonical NCHW / NCTHW."""
    shape = [int(d) for d in shape]
    if len(shape) == 4 and shape[-1] == 3:
        return [shape[0], 3, shape[1], shape[2]]
    if len(shape) == 5 and shape[-1] == 3:
        return [shape[0], 3, shape[1], shape[2], shape[3]]
    return shape


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_stats(latencies_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/std of a list of per-run latencies (ms), as :class:`BenchResult` field values."""
    return {
        "latency_ms_p50": percentile(latencies_ms, 50), "latency_ms_p90": percentile(latencies_ms, 90),
        "latency_ms_p99": percentile(latencies_ms, 99), "latency_ms_mean": statistics.fmean(latencies_ms),
        "latency_ms_min": min(latencies_ms),
        "latency_ms_std": statistics.pstdev(latencies_ms) if len(latencies_ms) > 1 else 0.0,
        "runs": len(latencies_ms),
    }


# ---------------------------------------------------------------------------------------------- Android demo
ANDROID_DEMO_SCHEMA = "salsdk-android-bench/1"
"""The JSON the Android demo app writes after benchmarking bundles on a phone (one file per session).

Top level: ``schema`` (this string), ``timestamp`` (ISO 8601), ``app_version``, ``device`` (``manufacturer``,
``model``, ``soc``, ``android_sdk``, ``abi``, optional ``cpu_cores``), and ``results``: a list with one object
per (bundle, delegate, threads) measured:

* ``bundle``: the bundle folder name (``<Model>-<format>``); ``model`` and ``format`` may also be given
  explicitly (otherwise they are read from the bundle name);
* ``delegate``: ``cpu`` (LiteRT built-in kernels), ``xnnpack``, ``gpu`` or ``nnapi``; ``threads``;
* ``input_shape``: the model input as the app fed it (NHWC or NTHWC, as in the bundle's manifest);
* ``load_ms``: interpreter creation with the delegate applied; ``first_run_ms``; ``warmup_runs``;
* ``latencies_ms``: every timed run (preferred), or ``latency_ms`` with any of ``p50``, ``p90``, ``p99``,
  ``mean``, ``min``, ``std`` and ``runs``;
* ``peak_memory_mb``: the app's peak PSS/RSS during the measurement (``Debug.getPss`` or ``/proc/self/status``);
* optional ``file_bytes``, ``maps_per_run``, ``fidelity`` (``cc_min``, ``cc_mean``: CC of the phone's maps
  against the bundle's reference maps), ``status`` (``ok``/``failed``) and ``error``.
"""

ANDROID_DEMO_EXAMPLE: dict[str, Any] = {
    "schema": ANDROID_DEMO_SCHEMA,
    "timestamp": "2025-01-31T10:00:00Z",
    "app_version": "0.1.0",
    "device": {"manufacturer": "Google", "model": "Pixel 7", "soc": "Google Tensor G2", "android_sdk": 34,
               "abi": "arm64-v8a", "cpu_cores": 8},
    "results": [
        {"bundle": "UniSal-tflite-int8", "delegate": "xnnpack", "threads": 4, "input_shape": [1, 480, 640, 3],
         "load_ms": 85.2, "first_run_ms": 61.0, "warmup_runs": 3, "latencies_ms": [41.2, 40.8, 42.0, 40.9],
         "peak_memory_mb": 96.5, "file_bytes": 11610000, "fidelity": {"cc_min": 0.993, "cc_mean": 0.995}},
        {"bundle": "UniSal-tflite-fp32", "delegate": "gpu", "threads": 1, "input_shape": [1, 480, 640, 3],
         "load_ms": 950.0, "latency_ms": {"p50": 22.1, "p90": 23.4, "mean": 22.3, "runs": 50},
         "peak_memory_mb": 180.0},
    ],
}
