"""What this machine can do, measured: its float32, bfloat16 and int8 GEMM peaks and its memory bandwidth.

The fp32 GEMM peak is a float32 matrix multiply in the best library available (PyTorch, ONNX Runtime's MLAS and
NumPy's BLAS are all tried, the fastest wins); the bf16 peak is PyTorch's bf16 multiply (oneDNN, the library
OpenVINO's CPU plugin builds on; AMX where the CPU has it); the int8 peak is ONNX Runtime's ``MatMulInteger``
(MLAS's int8 kernels, the ones its QDQ convolutions use; VNNI/AMX where the CPU has them). The bandwidth is a large array copy
(bytes read plus bytes written per second). ``salsdk bench`` holds every row against them (a row's compute limit
is its MACs at the peak of its precision, its memory limit the bytes it must move at that bandwidth), and
``salsdk convert`` predicts an int8 artifact's speed-up from the int8/fp32 ratio.
"""
from __future__ import annotations

import os
import time
from typing import Any


def usable_cores() -> int:
    """CPUs this process may run on (affinity / cgroup aware where the OS says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def best_rate(fn, flops: float, min_seconds: float) -> float:
    """The best rate ``flops / seconds`` (in G per second) of repeated calls of ``fn`` over ``min_seconds``: on a
    shared machine interference only ever slows a call down, so the fastest one is the best estimate."""
    fn()  # warm-up (allocations, thread pool start)
    best = 0.0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = max(best, flops / dt / 1e9)
        if time.perf_counter() - started >= min_seconds:
            return best


def _onnxruntime_session(op: str, types: tuple[str, str, str], n: int, threads: int | None):
    """A one-node ONNX session computing ``c = op(a, b)`` on n x n matrices of ``types`` (ONNX element type names
    of a, b and c) and ONNX Runtime's version, or None without onnx/onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    a, b, c = (getattr(TensorProto, t) for t in types)
    inputs = [helper.make_tensor_value_info(name, kind, [n, n]) for name, kind in (("a", a), ("b", b))]
    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["c"])], op.lower(), inputs,
                              [helper.make_tensor_value_info("c", c, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, ort.__version__


def _onnxruntime_matmul(a, b, threads: int | None):
    """A one-node ONNX MatMul session (ONNX Runtime's MLAS GEMM), or None without onnx/onnxruntime."""
    made = _onnxruntime_session("MatMul", ("FLOAT", "FLOAT", "FLOAT"), a.shape[0], threads)
    if made is None:
        return None
    session, version = made
    return f"onnxruntime {version} MatMul (MLAS, {threads or 'default'} threads)", \
        lambda: session.run(None, {"a": a, "b": b})


def _onnxruntime_int8_matmul(n: int, threads: int | None):
    """A one-node ONNX ``MatMulInteger`` session (uint8 x int8 -> int32), or None without onnx/onnxruntime."""
    import numpy as np

    made = _onnxruntime_session("MatMulInteger", ("UINT8", "INT8", "INT32"), n, threads)
    if made is None:
        return None
    session, version = made
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    b = rng.integers(-128, 128, (n, n), dtype=np.int8)
    return (f"onnxruntime {version} MatMulInteger (MLAS int8, {threads or 'default'} threads)",
            lambda: session.run(None, {"a": a, "b": b}))


def _torch_mm_rate(a, b, threads: int | None, min_seconds: float, dtype: str = "float32") -> tuple[str, float] | None:
    """(label, best GFLOP/s) of ``torch.mm`` on ``a`` and ``b`` cast to ``dtype`` with ``threads`` threads, or None
    without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    ta, tb = (torch.from_numpy(m).to(getattr(torch, dtype)) for m in (a, b))
    try:
        rate = best_rate(lambda: torch.mm(ta, tb), 2.0 * a.shape[0] ** 3, min_seconds)
        return f"torch {torch.__version__} mm {dtype} ({torch.get_num_threads()} threads)", rate
    finally:
        torch.set_num_threads(previous)


def bf16_gemm_peak(threads: int | None = None, n: int = 2048, min_seconds: float = 0.6) -> dict[str, Any] | None:
    """Best measured bfloat16 GEMM rate (PyTorch ``torch.mm`` on bf16 matrices: oneDNN, on AMX or AVX512-BF16
    where the CPU has them): ``{"library", "gflops", "gmacs_per_s", ...}``, or None without PyTorch. n = 2048:
    AMX needs larger matrices than fp32 to reach its peak (2 cores here: 1318 GFLOP/s at n = 1024, 2288 at 2048,
    2319 at 3072; at 1024 an OpenVINO bf16 row of UniSal ran above that "peak"). Where the
    CPU has no bf16 arithmetic this is slower than the fp32 peak, and bf16 artifacts (OpenVINO then computes in
    fp32) are held against the faster of the two."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    rate = _torch_mm_rate(a, b, threads, min_seconds, "bfloat16")
    if rate is None:
        return None
    return {"library": rate[0], "gflops": round(rate[1], 2), "gmacs_per_s": round(rate[1] / 2, 2), "n": n,
            "dtype": "bfloat16", "threads": threads}


def int8_gemm_peak(threads: int | None = None, n: int = 1024, min_seconds: float = 0.6) -> dict[str, Any] | None:
    """Best measured int8 GEMM rate (ONNX Runtime ``MatMulInteger``, n x n): ``{"library", "gops",
    "gmacs_per_s", ...}``, or None without ONNX Runtime. One MAC is two integer operations."""
    gemm = _onnxruntime_int8_matmul(n, threads)
    if gemm is None:
        return None
    best = best_rate(gemm[1], 2.0 * n ** 3, min_seconds)
    return {"library": gemm[0], "gops": round(best, 2), "gmacs_per_s": round(best / 2, 2), "n": n, "dtype": "int8",
            "threads": threads}


def memory_bandwidth(megabytes: int = 256, min_seconds: float = 0.6) -> dict[str, Any]:
    """Measured memory bandwidth: the best of repeated copies of a ``megabytes`` array (far larger than any
    cache), counting the bytes read and the bytes written: ``{"gb_per_s", "method"}``."""
    import numpy as np

    src = np.ones(megabytes * 2 ** 20, dtype=np.uint8)
    dst = np.empty_like(src)
    moved = 2.0 * src.nbytes
    best = best_rate(lambda: np.copyto(dst, src), moved, min_seconds)  # "GFLOP/s" of bytes: GB/s
    return {"gb_per_s": round(best, 2), "method": f"numpy copy of {megabytes} MB (read + write bytes), 1 thread"}


def gemm_peak(threads: int | None = None, n: int = 1024, min_seconds: float = 0.6) -> dict[str, Any]:
    """Best measured float32 GEMM rate (n x n times n x n): ``{"library", "gflops", "gmacs_per_s", ...}``.

    Tries PyTorch (``torch.mm``, its thread count set to ``threads``), ONNX Runtime (MLAS, ``threads``) and NumPy
    (``@``, BLAS threads as the environment sets them), and keeps the fastest single multiply of each: on a shared
    machine interference only ever slows a multiply down, so the maximum is the best estimate of the peak.
    One MAC is two FLOPs.
    """
    import numpy as np

    flops = 2.0 * n ** 3
    candidates: dict[str, float] = {}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    torch_rate = _torch_mm_rate(a, b, threads, min_seconds)
    if torch_rate is not None:
        candidates[torch_rate[0]] = torch_rate[1]
    ort_gemm = _onnxruntime_matmul(a, b, threads)
    if ort_gemm is not None:
        candidates[ort_gemm[0]] = best_rate(ort_gemm[1], flops, min_seconds)
    candidates[f"numpy {np.__version__} matmul (BLAS)"] = best_rate(lambda: a @ b, flops, min_seconds)
    library = max(candidates, key=candidates.get)
    best = candidates[library]
    return {"library": library, "gflops": round(best, 2), "gmacs_per_s": round(best / 2, 2), "n": n,
            "dtype": "float32", "threads": threads, "all": {k: round(v, 2) for k, v in candidates.items()}}
