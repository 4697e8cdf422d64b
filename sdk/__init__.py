"""salsdk: saliency models (KDSalBox, TinyHD, UMSI) from official checkpoints to phones and edge devices.

Main entry points::

    import salsdk
    salsdk.list_models()                                   # every zoo model
    model = salsdk.create_model("TinyHD-S-x0.25", weights="d123s_rc4_rc1T.pth")   # eval-mode nn.Module
    predictor = salsdk.load("UniSal", weights=None)        # untrained, explicit random init
    saliency = predictor.predict("photo.jpg")              # (H, W) float32 map
"""
from __future__ import annotations

from pathlib import Path

from .contract import Contract
from .errors import BundleError, ConversionError, InputError, SalsdkError, UnknownModelError, WeightsError
from .postprocess import PostprocessOptions
from .predictor import Prediction, Predictor
from .registry import get_card, list_models
from .zoo import OFFICIAL, WeightsArg, create_model

__version__ = "0.1.0"

__all__ = [
    "BundleError", "ConversionError", "Contract", "InputError", "Prediction", "Predictor", "PostprocessOptions",
    "SalsdkError", "UnknownModelError", "WeightsError", "create_model", "get_card", "list_models", "load",
    "__version__",
]


def load(model: str | Path, weights: WeightsArg = OFFICIAL, *, cache_dir: str | Path | None = None,
         device: str | None = None, threads: int | None = None,
         postprocess: PostprocessOptions | None = None, seed: int = 0, **runtime_options) -> Predictor:
    """A :class:`Predictor` for a zoo model name (PyTorch) or an artifact bundle folder (its own runtime).

    For a zoo name, ``weights`` is as in :func:`create_model` (``"official"`` from the cache, a checkpoint path,
    or ``None`` for an explicitly untrained, seeded model). For a bundle (a folder with ``manifest.json``, as
    written by ``salsdk convert``), the manifest is read and every file's hash checked; the runtime it names
    (ONNX Runtime, LiteRT, CoreML) runs the model, and pre/post-processing follow the manifest alone.
    ``runtime_options`` go to the runtime adapter (e.g. ``xnnpack=False`` for LiteRT).
    """
    from .runtimes.torch_runtime import TorchRuntime

    if Path(model).is_dir():
        return load_bundle(model, threads=threads, postprocess=postprocess, **runtime_options)

    net = create_model(str(model), weights, cache_dir=cache_dir, seed=seed)
    contract = Contract.from_card(net.salsdk_card, trained=net.salsdk_weights.trained)
    return Predictor(TorchRuntime(net, device=device, threads=threads), contract, postprocess)


def load_bundle(bundle: str | Path, *, threads: int | None = None, postprocess: PostprocessOptions | None = None,
                **runtime_options) -> Predictor:
    """A :class:`Predictor` for an artifact bundle (see :func:`load`)."""
    from .manifest import contract_from_manifest, read_manifest
    from .runtimes import open_runtime

    manifest = read_manifest(bundle)
    runtime = open_runtime(manifest["format"]["runtime"], Path(bundle) / manifest["model_file"],
                           threads=threads, **runtime_options)
    return Predictor(runtime, contract_from_manifest(manifest), postprocess, manifest=manifest)
