"""salsdk: saliency models (KDSalBox, TinyHD, UMSI) from official checkpoints to phones, browsers and edge devices.

Main entry points::

    import salsdk
    salsdk.list_models()                                   # every zoo model
    model = salsdk.create_model("TinyHD-S-x0.25", weights="d123s_rc4_rc1T.pth")   # eval-mode nn.Module
    predictor = salsdk.load("UniSal", weights=None)        # untrained, explicit random init
    predictor = salsdk.load("out/UniSal-onnx-int8")        # a bundle: its own runtime, no PyTorch needed
    saliency = predictor.predict("photo.jpg")              # (H, W) float32 map

The package is imported lazily: ``import salsdk`` and ``salsdk.load(bundle)`` import neither PyTorch nor
TensorFlow; PyTorch is imported when a PyTorch model is built.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import BundleError, ConversionError, InputError, SalsdkError, UnknownModelError, WeightsError

__version__ = "0.2.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "load": "salsdk.api", "load_bundle": "salsdk.api", "OFFICIAL": "salsdk.api",
    "create_model": "salsdk.zoo",
    "list_models": "salsdk.registry", "get_card": "salsdk.registry",
    "Contract": "salsdk.contract", "Manifest": "salsdk.manifest", "read_manifest": "salsdk.manifest",
    "Prediction": "salsdk.predictor", "Predictor": "salsdk.predictor",
    "PostprocessOptions": "salsdk.postprocess",
}

__all__ = ["BundleError", "ConversionError", "InputError", "SalsdkError", "UnknownModelError", "WeightsError",
           "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'salsdk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
