"""Whether an int8 artifact pays: its latency against its fp32 sibling's, measured side by side at conversion.

An int8 artifact is only worth shipping for speed if it runs faster than the fp32 artifact of the same format
(``tflite-int8`` against ``tflite-fp32``, ``onnx-int8`` against ``onnx-fp32`` ...). After the gate accepts one,
:func:`measure_speed` runs both on the same held-out input in one process, alternating single runs so that a busy
moment slows both alike, and records the medians in the manifest's ``speed`` entry with the speed-up
:func:`predicted_speedup` expected from how much of the model's arithmetic stayed float. A slower int8 artifact
is flagged there and in ``salsdk convert``'s table.
"""
from __future__ import annotations

import statistics
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from salsdk.quantize.ranking import cost_of
from salsdk.runtimes import open_runtime

from .formats import FORMATS_BY_KEY, Format

SPEED_BUDGET_S = 4.0  # timed runs of both artifacts together stop after about this long ...
MIN_PAIRS, MAX_PAIRS = 3, 25  # ... with at least / at most this many runs of each
SPEED_PRECISIONS = ("int8", "int8-io", "int8-dynamic")  # precisions whose point is speed


def fp32_sibling(fmt: Format) -> Format | None:
    """The fp32 format an int8 format is measured against (same family and converter), if any."""
    if fmt.precision not in SPEED_PRECISIONS:
        return None
    key = f"{fmt.family}-fp32" + ("-onnx2tf" if fmt.group == "onnx2tf" else "")
    return FORMATS_BY_KEY.get(key)


@lru_cache(maxsize=1)
def gemm_ratio() -> float | None:
    """This machine's int8 over fp32 GEMM peak (both measured; None without ONNX Runtime's int8 kernels)."""
    from salsdk.hardware_limits import gemm_peak, int8_gemm_peak

    int8 = int8_gemm_peak(min_seconds=0.3)
    return None if int8 is None else int8["gmacs_per_s"] / gemm_peak(min_seconds=0.3)["gmacs_per_s"]


def predicted_speedup(kept_float: Sequence[str], mac_share: Mapping[str, float] | None) -> dict[str, Any] | None:
    """The speed-up over fp32 expected if every MAC ran at this machine's int8/fp32 GEMM ratio except the share
    kept float: ``1 / (float_share + (1 - float_share) / ratio)``. An upper bound where memory traffic or
    re-quantization, not arithmetic, sets the pace (TinyHD), which the measured figure then shows."""
    ratio = gemm_ratio()
    if not ratio or mac_share is None:
        return None
    share = min(1.0, sum(cost_of(mac_share, g) for g in kept_float))
    return {"speedup": round(1.0 / (share + (1.0 - share) / ratio), 2), "float_mac_share": round(share, 4),
            "gemm_int8_over_fp32": round(ratio, 2)}


def measure_speed(runtime: str, artifact: Path, sibling: Path, x: np.ndarray,
                  budget_s: float = SPEED_BUDGET_S) -> dict[str, Any]:
    """Median latency (ms) of ``artifact`` and of its fp32 ``sibling`` on input ``x``, runs interleaved, both on
    every core this process may use (runtimes' own defaults differ: LiteRT's is one thread)."""
    from salsdk.hardware_limits import usable_cores

    threads = usable_cores()
    engines = [open_runtime(runtime, artifact, threads=threads), open_runtime(runtime, sibling, threads=threads)]
    for engine in engines:  # warm-up: first-run allocations, thread pools, XNNPACK packing
        engine.run(x)
    times: list[list[float]] = [[], []]
    started = time.perf_counter()
    while len(times[0]) < MAX_PAIRS and (len(times[0]) < MIN_PAIRS or time.perf_counter() - started < budget_s):
        for engine, samples in zip(engines, times):
            t0 = time.perf_counter()
            engine.run(x)
            samples.append((time.perf_counter() - t0) * 1000.0)
    ms, fp32_ms = (statistics.median(t) for t in times)
    return {"ms": round(ms, 3), "fp32_ms": round(fp32_ms, 3), "runs": len(times[0]), "threads": threads,
            "speedup": round(fp32_ms / ms, 3), "slower_than_fp32": ms > fp32_ms}


def speed_summary(speed: Mapping[str, Any]) -> str:
    """``'2.31x tflite-fp32'`` or ``'0.93x tflite-fp32: SLOWER than fp32'`` (the convert table's speed cell)."""
    if not speed:
        return ""
    if "speedup" not in speed:
        return f"speed not measured: {speed.get('note', '?')}"
    text = f"{speed['speedup']:.2f}x {speed['vs']}"
    if speed.get("predicted", {}).get("speedup"):
        text += f" (predicted {speed['predicted']['speedup']:.1f}x)"
    return text + (": SLOWER than fp32" if speed["slower_than_fp32"] else "")
