"""One measurement in a fresh process: ``python -m salsdk.bench.worker SPEC_JSON``.

A worker loads ONE model (PyTorch eager, or one bundle in its runtime), times its load, runs it on a seeded
random input of the artifact's shape (first run, warm-up, then timed runs), and prints one line
``SALSDK_BENCH_RESULT {json}`` with every latency and the process's peak resident memory
(``VmHWM`` on Linux, ``resource.getrusage`` elsewhere). A process per measurement keeps runs from polluting each
other: no allocator caches, thread pools or JIT state carry over, and the peak memory is this measurement's alone.

A bundle worker does not import PyTorch (``salsdk`` imports it only to build PyTorch models), so the memory of an
ONNX Runtime or LiteRT measurement is that engine's and the model's, as in an app, not PyTorch's 250 MB on top.

Spec keys: ``kind`` (``pytorch`` | ``bundle``), ``input_shape``, ``threads``, ``warmup``, ``runs``, ``max_seconds``,
``min_runs``, ``seed``, ``profile`` (top operators by time: ONNX Runtime's and PyTorch's profilers, LiteRT's
operators timed one by one); for ``pytorch``: ``model``, ``weights`` (``"official"``, a path, or null for seeded
random init), ``device``; for ``bundle``: ``bundle`` (folder), ``runtime``, ``model_file``, ``options`` (passed to
the runtime adapter, e.g. ``xnnpack``).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

MARKER = "SALSDK_BENCH_RESULT "


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (10^6 bytes).

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's own address space.
    ``getrusage``'s ``ru_maxrss`` is the fallback (macOS and other systems without /proc); on Linux it would be
    wrong here, because it carries the parent's peak across fork and exec: every worker would start at the
    parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / 1e6 if sys.platform == "darwin" else value * 1024 / 1e6


def current_rss_mb() -> float | None:
    """Current resident set size, in MB, where ``/proc`` or psutil can tell."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return psutil.Process().memory_info().rss / 1e6
        except ImportError:
            return None


def _open_pytorch(spec: dict[str, Any]):
    from salsdk.runtimes.torch_runtime import TorchRuntime
    from salsdk.zoo import create_model

    net = create_model(spec["model"], spec.get("weights"), seed=int(spec.get("seed", 0)), offline=True)
    return TorchRuntime(net, device=spec.get("device") or "cpu", threads=spec.get("threads"))


def _open_bundle(spec: dict[str, Any]):
    from salsdk.runtimes import open_runtime

    options = dict(spec.get("options") or {})
    if spec.get("threads"):
        options["threads"] = spec["threads"]
    return open_runtime(spec["runtime"], Path(spec["bundle"]) / spec["model_file"], **options)


def _preload_engine(spec: dict[str, Any]) -> None:
    """Import the engine before the baseline, so the baseline is 'engine ready, no model'."""
    import numpy  # noqa: F401

    if spec["kind"] == "pytorch":
        import torch  # noqa: F401

        import salsdk  # noqa: F401
    elif spec.get("runtime") == "onnxruntime":
        import onnxruntime  # noqa: F401
    elif spec.get("runtime") == "litert":
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError:
            pass


def profile_onnxruntime(spec: dict[str, Any], x, runs: int) -> dict[str, Any]:
    """Time per operator type and the slowest nodes from ONNX Runtime's own profiler (CPU provider)."""
    import tempfile

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort_profile")
        if spec.get("threads"):
            options.intra_op_num_threads = spec["threads"]
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(Path(spec["bundle"]) / spec["model_file"]), options,
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        session.run(None, {name: x})
        for _ in range(runs):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    by_op: dict[str, float] = {}
    by_node: dict[str, tuple[str, float]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        op = event.get("args", {}).get("op_name", "?")
        node = event["name"][: -len("_kernel_time")]
        by_op[op] = by_op.get(op, 0.0) + event.get("dur", 0)
        by_node[node] = (op, by_node.get(node, (op, 0.0))[1] + event.get("dur", 0))
    total = sum(by_op.values()) or 1.0
    top_ops = sorted(by_op.items(), key=lambda kv: -kv[1])
    top_nodes = sorted(by_node.items(), key=lambda kv: -kv[1][1])[:8]
    return {"tool": f"onnxruntime {ort.__version__} profiler", "runs": runs + 1,
            "ops": [{"op": op, "share": us / total, "ms_per_run": us / 1000 / (runs + 1)} for op, us in top_ops],
            "nodes": [{"node": n, "op": op, "share": us / total, "ms_per_run": us / 1000 / (runs + 1)}
                      for n, (op, us) in top_nodes]}


def profile_pytorch(runtime, x, runs: int) -> dict[str, Any]:
    """Time per ATen operator from ``torch.profiler`` (self CPU time)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            runtime.run(x)
    averages = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in averages) or 1.0
    top = sorted(averages, key=lambda e: -e.self_cpu_time_total)
    return {"tool": f"torch {torch.__version__} profiler", "runs": runs,
            "ops": [{"op": e.key, "share": e.self_cpu_time_total / total,
                     "ms_per_run": e.self_cpu_time_total / 1000 / runs} for e in top[:12]]}


def profile_litert(spec: dict[str, Any], runs: int) -> dict[str, Any]:
    """Time per operator type and the slowest operators of a ``.tflite`` file, each operator run alone.

    LiteRT's Python interpreter has no operator profiler, so every operator becomes a one-op model
    (:func:`salsdk.tflite_model.single_op_models`) run with the row's delegate and threads on random inputs of
    its dtype. What a delegate fuses across operators (XNNPACK folds a PAD into the next convolution) is timed
    here as separate work, and caches start warm with each op's own data: the shares say which operator types
    cost what, the sum is near the whole model's time but not equal to it.
    """
    import numpy as np

    from salsdk.runtimes.litert_runtime import load_interpreter
    from salsdk.tflite_model import single_op_models

    interpreter, resolver, engine, version = load_interpreter()
    options: dict[str, Any] = {"num_threads": spec.get("threads") or None}
    xnnpack = (spec.get("options") or {}).get("xnnpack", True)
    if resolver is not None:
        options["experimental_op_resolver_type"] = (resolver.AUTO if xnnpack
                                                    else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    rng = np.random.default_rng(0)
    by_op: dict[str, float] = {}
    by_node: list[tuple[str, str, float]] = []
    content = (Path(spec["bundle"]) / spec["model_file"]).read_bytes()
    for op, output, model in single_op_models(content):
        loaded = interpreter(model_content=model, **options)
        loaded.allocate_tensors()
        for detail in loaded.get_input_details():
            dtype = np.dtype(detail["dtype"])
            value = (rng.integers(-128, 128, detail["shape"]) if np.issubdtype(dtype, np.integer)
                     else rng.standard_normal(detail["shape"]))
            loaded.set_tensor(detail["index"], value.astype(dtype))
        loaded.invoke()
        started = time.perf_counter()
        for _ in range(runs):
            loaded.invoke()
        ms = (time.perf_counter() - started) * 1000 / runs
        by_op[op] = by_op.get(op, 0.0) + ms
        by_node.append((output, op, ms))
    total = sum(by_op.values()) or 1.0
    top_nodes = sorted(by_node, key=lambda n: -n[2])[:8]
    return {"tool": f"{engine} {version}, {'XNNPACK' if xnnpack else 'builtin kernels'}, each operator timed alone "
                    f"(sum {total:.1f} ms; delegate fusions not applied)", "runs": runs,
            "ops": [{"op": op, "share": ms / total, "ms_per_run": ms}
                    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])],
            "nodes": [{"node": _short(name), "op": op, "share": ms / total, "ms_per_run": ms}
                      for name, op, ms in top_nodes]}


def _short(tensor_name: str) -> str:
    """The module path in a litert-torch tensor name (``...Wrapper/..._wrapped/...Encoder_encoder/...Block_14/
    ...Conv2d_2;3`` -> ``encoder.14.2``), or the name itself when it holds none."""
    segments = tensor_name.split(";")[0].split("/")
    attrs = [segment.rsplit("_", 1)[-1] for segment in segments if "_" in segment]
    if "wrapped" in attrs:
        attrs = attrs[attrs.index("wrapped") + 1:]
    return ".".join(attrs) or tensor_name


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement ``spec`` describes and return the result dictionary (see module docstring)."""
    import numpy as np

    _preload_engine(spec)
    baseline = max_rss_mb()
    started = time.perf_counter()
    runtime = _open_pytorch(spec) if spec["kind"] == "pytorch" else _open_bundle(spec)
    load_s = time.perf_counter() - started
    x = np.random.default_rng(int(spec.get("seed", 0))).random(spec["input_shape"], dtype=np.float32)

    t0 = time.perf_counter()
    outputs = runtime.run(x)
    first_ms = (time.perf_counter() - t0) * 1000
    warmup = max(1, int(spec.get("warmup", 3)))
    for _ in range(warmup - 1):
        runtime.run(x)
    runs, min_runs = int(spec.get("runs", 20)), int(spec.get("min_runs", 3))
    budget = float(spec.get("max_seconds", 60.0))
    latencies: list[float] = []
    loop_start = time.perf_counter()
    while len(latencies) < runs:
        t0 = time.perf_counter()
        runtime.run(x)
        latencies.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() - loop_start > budget and len(latencies) >= min_runs:
            break
    result: dict[str, Any] = {
        "load_s": load_s, "first_run_ms": first_ms, "warmup": warmup, "latencies_ms": latencies,
        "requested_runs": runs, "stopped_by_time_budget": len(latencies) < runs,
        "peak_rss_mb": max_rss_mb(), "baseline_rss_mb": baseline, "rss_after_mb": current_rss_mb(),
        "engine": runtime.describe(), "output_shapes": [list(o.shape) for o in outputs],
        "output_finite": bool(all(np.isfinite(o).all() for o in outputs)),
        "torch_imported": "torch" in sys.modules,
    }
    if spec.get("profile"):  # after the peak was read: profiling must not inflate the memory figure
        profile_runs = int(spec.get("profile_runs", 3))
        try:
            if spec["kind"] == "pytorch":
                result["profile"] = profile_pytorch(runtime, x, profile_runs)
            elif spec.get("runtime") == "onnxruntime":
                result["profile"] = profile_onnxruntime(spec, x, profile_runs)
            elif spec.get("runtime") == "litert":
                result["profile"] = profile_litert(spec, profile_runs)
        except Exception as exc:  # noqa: BLE001 - a profiler problem must not lose the measurement
            result["profile_error"] = f"{type(exc).__name__}: {exc}"
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse the spec (JSON text, or ``@file``), measure, print the marker line; exit 1 on failure."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m salsdk.bench.worker SPEC_JSON|@spec.json", file=sys.stderr)
        return 2
    text = Path(argv[0][1:]).read_text(encoding="utf-8") if argv[0].startswith("@") else argv[0]
    spec = json.loads(text)
    try:
        result = {"ok": True, **measure(spec)}
    except BaseException as exc:  # noqa: BLE001 - everything is reported back as data
        lines = [l for l in str(exc).strip().splitlines() if l.strip()]
        result = {"ok": False, "error": f"{type(exc).__name__}: {lines[0] if lines else ''}".strip(),
                  "traceback": traceback.format_exc(limit=6), "peak_rss_mb": max_rss_mb()}
    sys.stdout.flush()
    print(MARKER + json.dumps(result, default=str), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
