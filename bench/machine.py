"""The machine a benchmark runs on: what it is (CPU, cores, OS, GPU) and what it can do, measured
(:mod:`salsdk.hardware_limits`: the float32 and int8 GEMM peaks and the memory bandwidth), for every report."""
from __future__ import annotations

import hashlib
import os
import platform
import socket
from functools import lru_cache
from typing import Any

from salsdk.hardware_limits import (best_rate, bf16_gemm_peak, gemm_peak, int8_gemm_peak, memory_bandwidth,
                                    usable_cores)

__all__ = ["bf16_gemm_peak", "cpu_model", "gemm_peak", "gpu_gemm_peak", "int8_gemm_peak", "isa_flags", "machine_info",
           "machine_id", "machine_summary", "memory_bandwidth", "usable_cores"]


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


def gpu_name() -> str | None:
    """Name of the first CUDA GPU, if PyTorch sees one."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop a CPU benchmark
        return None
    return None


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

        result[str(dtype).replace("torch.", "")] = round(best_rate(step, 2.0 * n ** 3, 0.5), 1)
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
        info["gemm_bf16"] = bf16_gemm_peak(threads)
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
    if info.get("gemm_bf16"):
        text += f", bf16 GEMM {info['gemm_bf16']['gflops']:.0f} GFLOP/s"
    if info.get("memory"):
        text += f", memory {info['memory']['gb_per_s']:.0f} GB/s"
    if info.get("gpu"):
        text += f"; GPU {info['gpu']}"
    return text
