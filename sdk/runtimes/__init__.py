"""Runtimes: one small adapter per inference engine, all behind :class:`~salsdk.runtimes.base.Runtime`.

:data:`RUNTIMES` maps a runtime name (as written in manifests) to its adapter class; adapters import their
engine lazily, so a missing optional engine only matters when it is used.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from salsdk.errors import BundleError, InputError

from .base import Runtime

RUNTIMES = {
    "onnxruntime": "salsdk.runtimes.onnx_runtime:OnnxRuntime",
    "litert": "salsdk.runtimes.litert_runtime:LiteRTRuntime",
    "coreml": "salsdk.runtimes.coreml_runtime:CoreMLRuntime",
    "executorch": "salsdk.runtimes.executorch_runtime:ExecuTorchRuntime",
    "openvino": "salsdk.runtimes.openvino_runtime:OpenVINORuntime",
}


def open_runtime(name: str, path: str | Path, **options: Any) -> Runtime:
    """Open the artifact at ``path`` with runtime ``name`` (a key of :data:`RUNTIMES`).

    Engine failures while loading the file (a corrupt or foreign model) become :class:`BundleError` s.
    """
    if name not in RUNTIMES:
        raise BundleError(f"unknown runtime {name!r}; salsdk runs {', '.join(RUNTIMES)}")
    module, cls = RUNTIMES[name].split(":")
    try:
        adapter = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise BundleError(f"the {name} runtime is not installed ({exc.name}): pip install salsdk's runtime extra "
                          "or the engine itself") from None
    try:
        return adapter(path, **options)
    except (BundleError, InputError):
        raise
    except Exception as exc:  # engines raise their own types for unreadable models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{name} cannot load {path}: {first}") from None


__all__ = ["RUNTIMES", "Runtime", "open_runtime"]
