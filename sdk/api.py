"""``salsdk.load``: a :class:`~salsdk.predictor.Predictor` for a zoo model (PyTorch) or a bundle (its own runtime)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import InputError
from .postprocess import PostprocessOptions
from .predictor import Predictor
from .weights import OFFICIAL, WeightsArg

__all__ = ["OFFICIAL", "load", "load_bundle"]


def load(model: str | Path, weights: WeightsArg = OFFICIAL, *, cache_dir: str | Path | None = None,
         device: str | None = None, threads: int | None = None, postprocess: PostprocessOptions | None = None,
         seed: int = 0, offline: bool | None = None, max_side: int | None = None, **runtime_options: Any) -> Predictor:
    """A :class:`Predictor` for a zoo model name (PyTorch) or an artifact bundle folder (its own runtime).

    For a zoo name, ``weights`` is as in :func:`salsdk.create_model` (``"official"``: the official checkpoint,
    fetched into the cache on first use unless ``offline``; a checkpoint path; or ``None`` for an explicitly
    untrained, seeded model). For a bundle (a folder with ``manifest.json``, as written by ``salsdk convert``),
    the manifest is verified (schema, file hashes, embedded copy) and the runtime it names runs the model with
    the manifest's pre/post-processing; no PyTorch is imported. ``runtime_options`` go to the runtime adapter
    (e.g. ``xnnpack=False`` for LiteRT). ``max_side`` downscales large images for models that run at the image's
    own size (:class:`Predictor`).
    """
    if model is None or not isinstance(model, (str, Path)):
        raise InputError(f"model must be a zoo name or a bundle folder, got {type(model).__name__}")
    _check_threads(threads)
    if Path(model).is_dir():
        if weights != OFFICIAL:
            raise InputError(f"{model} is a bundle: its weights are baked in; do not pass weights")
        return load_bundle(model, threads=threads, postprocess=postprocess, max_side=max_side, **runtime_options)
    from .contract import Contract
    from .runtimes.torch_runtime import TorchRuntime
    from .zoo import create_model

    net = create_model(str(model), weights, cache_dir=cache_dir, seed=seed, offline=offline)
    contract = Contract.from_card(net.salsdk_card, trained=net.salsdk_weights.trained)
    return Predictor(TorchRuntime(net, device=device, threads=threads), contract, postprocess, max_side=max_side)


def load_bundle(bundle: str | Path, *, threads: int | None = None, postprocess: PostprocessOptions | None = None,
                max_side: int | None = None, **runtime_options: Any) -> Predictor:
    """A :class:`Predictor` for an artifact bundle (see :func:`load`)."""
    from .manifest import read_manifest
    from .runtimes import open_runtime

    _check_threads(threads)
    manifest = read_manifest(bundle)
    runtime = open_runtime(manifest.format.runtime, Path(bundle) / manifest.model_file, threads=threads,
                           **runtime_options)
    return Predictor(runtime, manifest.contract(), postprocess, manifest=manifest, max_side=max_side)


def _check_threads(threads: int | None) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer, got {threads!r}")
