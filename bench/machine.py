"""The machine a benchmark runs on: what it is (CPU, cores, OS, GPU) and what it can do, measured: its float32
and int8 GEMM peaks and its memory bandwidth.

The fp32 GEMM peak is a float32 matrix multiply in the best library available (PyTorch, ONNX Runtime's MLAS and
NumPy's BLAS are all tried, the fastest wins); the int8 peak is ONNX Runtime's ``MatMulInteger`` (MLAS's int8
kernels, the ones its QDQ convolutions use; VNNI where the CPU has it). The bandwidth is a large array copy
(bytes read plus bytes written per second). A row's compute limit is its MACs at the peak of its precision, its
memory limit the bytes it must move at that bandwidth: the larger of the two is the fastest it could run here,
and the report says what share of it each row reaches.
"""
from __future__ import annotations

import hashlib
import os
import platform
import socket
import time
from functools import lru_cache
from typing import Any


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``, ``sysctl`` on macOS, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: ar")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.machine()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "i8mm", "sve")


def isa_flags() -> list[str]:
    """SIMD extensions that decide fp32 and int8 throughput (AVX2/FMA, AVX-512, VNNI, AMX; NEON dot product)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in ISA_FLAGS if flag in present]
    except OSError:
        pass
    return ["neon"] if platform.machine() in ("arm64", "aarch64") else []


def usable_cores() -> int:
    """CPUs this process may run on (affinity / cgroup aware where the OS says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_name() -> str | None:
    """Name of the first CUDA GPU, if PyTorch sees one."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop a CPU benchmark
        return None
    return None


def _time_matmul(fn, flops: float, min_seconds: float) -> float:
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


def _onnxruntime_matmul(a, b, threads: int | None):
    """A one-node ONNX MatMul session (ONNX Runtime's MLAS GEMM), or None without onnx/onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    n = a.shape[0]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return f"onnxruntime {ort.__version__} MatMul (MLAS, {threads or 'default'} threads)", \
        lambda: session.run(None, {"a": a, "b": b})


def _onnxruntime_int8_matmul(n: int, threads: int | None):
    """A one-node ONNX ``MatMulInteger`` session (uint8 x int8 -> int32), or None without onnx/onnxruntime."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "gemm_int8",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (n, n), dtype=np.uint8)
    b = rng.integers(-128, 128, (n, n), dtype=np.int8)
    return (f"onnxruntime {ort.__version__} MatMulInteger (MLAS int8, {threads or 'default'} threads)",
            lambda: session.run(None, {"a": a, "b": b}))


def int8_gemm_peak(threads: int | None = None, n: int = 1024, min_seconds: float = 0.6) -> dict[str, Any] | None:
    """Best measured int8 GEMM rate (ONNX Runtime ``MatMulInteger``, n x n): ``{"library", "gops",
    "gmacs_per_s", ...}``, or None without ONNX Runtime. One MAC is two integer operations."""
    gemm = _onnxruntime_int8_matmul(n, threads)
    if gemm is None:
        return None
    best = _time_matmul(gemm[1], 2.0 * n ** 3, min_seconds)
    return {"library": gemm[0], "gops": round(best, 2), "gmacs_per_s": round(best / 2, 2), "n": n, "dtype": "int8",
            "threads": threads}


def memory_bandwidth(megabytes: int = 256, min_seconds: float = 0.6) -> dict[str, Any]:
    """Measured memory bandwidth: the best of repeated copies of a ``megabytes`` array (far larger than any
    cache), counting the bytes read and the bytes written: ``{"gb_per_s", "method"}``."""
    import numpy as np

    src = np.ones(megabytes * 2 ** 20, dtype=np.uint8)
    dst = np.empty_like(src)
    moved = 2.0 * src.nbytes
    best = _time_matmul(lambda: np.copyto(dst, src), moved, min_seconds)  # "GFLOP/s" of bytes: GB/s
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
    try:
        import torch

        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        try:
            candidates[f"torch {torch.__version__} mm ({torch.get_num_threads()} threads)"] = _time_matmul(
                lambda: torch.mm(ta, tb), flops, min_seconds)
        finally:
            torch.set_num_threads(previous)
    except ImportError:
        pass
    ort_gemm = _onnxruntime_matmul(a, b, threads)
    if ort_gemm is not None:
        candidates[ort_gemm[0]] = _time_matmul(ort_gemm[1], flops, min_seconds)
    candidates[f"numpy {np.__version__} matmul (BLAS)"] = _time_matmul(lambda: a @ b, flops, min_seconds)
    library = max(candidates, key=candidates.get)
    best = candidates[library]
    return {"library": library, "gflops": round(best, 2), "gmacs_per_s": round(best / 2, 2), "n": n,
            "dtype": "float32", "threads": threads, "all": {k: round(v, 2) for k, v in candidates.items()}}


def gpu_gemm_peak(n: int = 4096) -> dict[str, Any] | None:
    """Float32 and float16 GEMM rates on the first CUDA GPU (None without one)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "n": n}
    for dtype in (torch.float32, torch.float16):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)

        def step():
            torch.mm(a, b)
            torch.cuda.synchronize()

        result[str(dtype).replace("torch.", "")] = round(_time_matmul(step, 2.0 * n ** 3, 0.5), 1)
    result["gmacs_per_s"] = result["float32"] / 2
    return result


@lru_cache(maxsize=None)
def machine_info(threads: int | None = None, measure_peak: bool = True) -> dict[str, Any]:
    """What this machine is, plus its measured GEMM peak at ``threads`` (cached per process)."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "isa": isa_flags(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except ImportError:
        pass
    info["gpu"] = gpu_name()
    if measure_peak:
        info["gemm"] = gemm_peak(threads)
        info["gemm_int8"] = int8_gemm_peak(threads)
        info["memory"] = memory_bandwidth()
        if info["gpu"]:
            info["gpu_gemm"] = gpu_gemm_peak()
    info["id"] = machine_id(info)
    info["summary"] = machine_summary(info)
    return info


def machine_id(info: dict[str, Any]) -> str:
    """A short stable id of the host and its CPU (so runs of several machines can be told apart)."""
    key = f"{info.get('hostname')}|{info.get('cpu')}|{info.get('logical_cores')}|{info.get('os')}"
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def machine_summary(info: dict[str, Any]) -> str:
    """One line: ``'AMD EPYC, 2 cores (x86_64, Linux 6.1), fp32 GEMM 140 GFLOP/s, int8 GEMM 420 GOP/s, memory
    12 GB/s'``."""
    cores = info.get("usable_cores") or info.get("logical_cores")
    text = f"{info.get('cpu')}, {cores} cores ({info.get('arch')}, {info.get('os')})"
    if info.get("gemm"):
        text += f", fp32 GEMM {info['gemm']['gflops']:.0f} GFLOP/s"
    if info.get("gemm_int8"):
        text += f", int8 GEMM {info['gemm_int8']['gops']:.0f} GOP/s"
    if info.get("memory"):
        text += f", memory {info['memory']['gb_per_s']:.0f} GB/s"
    if info.get("gpu"):
        text += f"; GPU {info['gpu']}"
    return text
