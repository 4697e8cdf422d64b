"""Runtimes: one small adapter per inference engine, all behind :class:`~salsdk.runtimes.base.Runtime`.

:data:`RUNTIMES` maps a runtime name (as written in manifests) to its adapter class; adapters import their
engine lazily, so a missing optional engine only matters when it is used.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .base import Runtime

RUNTIMES = {
    "onnxruntime": "salsdk.runtimes.onnx_runtime:OnnxRuntime",
    "litert": "salsdk.runtimes.litert_runtime:LiteRTRuntime",
    "coreml": "salsdk.runtimes.coreml_runtime:CoreMLRuntime",
}


def open_runtime(name: str, path: str | Path, **options: Any) -> Runtime:
    """Open the artifact at ``path`` with runtime ``name`` (``onnxruntime``, ``litert``, ``coreml``)."""
    module, cls = RUNTIMES[name].split(":")
    return getattr(importlib.import_module(module), cls)(path, **options)


__all__ = ["RUNTIMES", "Runtime", "open_runtime"]
