"""The one registry of the zoo: architectures, and the named models built from them with their weights.

As in timm, an :class:`Architecture` is a network (a builder, a checkpoint reader, an optional export rewrite)
and a zoo model is one set of weights for it, found by its own name: the ten KDSalBox students are one
architecture with ten names (``AIM`` ... ``DGII``), each TinyHD variant one architecture with its DHF1K weights.
Every family declares its architectures and model cards in one module, ``salsdk.models.<family>.zoo``, listed in
:data:`FAMILY_MODULES`; a new zoo name is one card there, a new architecture one :func:`register_architecture`
call. Builders, readers and rewrites are named ``"module:function"`` and imported on first use, so listing the zoo
or reading a card imports no PyTorch. Names are case-insensitive.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .cards import ModelCard
from .errors import UnknownModelError

if TYPE_CHECKING:
    from torch import nn

FAMILY_MODULES = ("salsdk.models.kdsalbox.zoo", "salsdk.models.tinyhd.zoo", "salsdk.models.umsi.zoo")


def resolve(reference: str) -> Callable[..., Any]:
    """The callable a ``"module:function"`` reference names (imported now)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ExportRewrite:
    """The same function as a graph that mobile runtimes run faster (exact up to float rounding)."""

    name: str  # e.g. "tinyhd-framewise-2d", recorded in manifests
    summary: str
    function: str  # "module:function" taking the eval-mode model, returning the rewritten one


@dataclass(frozen=True)
class Architecture:
    """A network: how to build it (untrained), how to read its official checkpoints, how to rewrite it for export."""

    name: str
    builder: str  # "module:function" returning an ``nn.Module``, called with ``kwargs``
    checkpoint_reader: str  # "module:function" (model, path, card) loading a checkpoint strictly
    kwargs: dict[str, Any] = field(default_factory=dict)
    export_rewrite: ExportRewrite | None = None


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its card and its architecture."""

    card: ModelCard
    architecture: Architecture

    def build(self) -> "nn.Module":
        """The network with PyTorch's default initialisation (see :mod:`salsdk.standins` for usable stand-ins)."""
        return resolve(self.architecture.builder)(**self.architecture.kwargs)

    def load_weights(self, model: "nn.Module", path: Path) -> None:
        """Load a checkpoint into ``model``, checked key by key and shape by shape."""
        resolve(self.architecture.checkpoint_reader)(model, path, self.card)

    @property
    def export_rewrite(self) -> ExportRewrite | None:
        """The architecture's export rewrite, if it has one."""
        return self.architecture.export_rewrite

    def rewrite(self, model: "nn.Module") -> "nn.Module":
        """``model`` re-expressed by the export rewrite."""
        if self.export_rewrite is None:
            raise ValueError(f"{self.card.name} has no export rewrite")
        return resolve(self.export_rewrite.function)(model)


_ARCHITECTURES: dict[str, Architecture] = {}
_MODELS: dict[str, ZooEntry] = {}
_loaded = False


def register_architecture(architecture: Architecture) -> Architecture:
    """Add an architecture (called by the family ``zoo`` modules); returns it."""
    if architecture.name in _ARCHITECTURES:
        raise ValueError(f"architecture {architecture.name!r} is registered twice")
    _ARCHITECTURES[architecture.name] = architecture
    return architecture


def register_model(card: ModelCard) -> None:
    """Add a zoo model; its card names a registered architecture."""
    key = card.name.lower()
    if key in _MODELS:
        raise ValueError(f"model {card.name!r} is registered twice")
    if card.architecture not in _ARCHITECTURES:
        raise ValueError(f"model {card.name!r} names the unregistered architecture {card.architecture!r}")
    _MODELS[key] = ZooEntry(card, _ARCHITECTURES[card.architecture])


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in FAMILY_MODULES:
            importlib.import_module(module)


def list_models(family: str | None = None) -> list[str]:
    """Names of all zoo models (optionally of one family), in registration order."""
    _ensure_loaded()
    return [e.card.name for e in _MODELS.values() if family is None or e.card.family == family]


def list_architectures() -> list[str]:
    """Names of all registered architectures."""
    _ensure_loaded()
    return list(_ARCHITECTURES)


def get_entry(name: str) -> ZooEntry:
    """The zoo entry of ``name`` (case-insensitive); raises :class:`UnknownModelError` with the choices."""
    _ensure_loaded()
    if not isinstance(name, str):
        raise UnknownModelError(f"a model name must be a string, got {type(name).__name__}")
    try:
        return _MODELS[name.lower()]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; available models: {', '.join(list_models())}") from None


def get_card(name: str) -> ModelCard:
    """The model card of ``name``."""
    return get_entry(name).card


def guess_model_for_state_dict(state_dict: dict[str, Any]) -> str | None:
    """Name of the first zoo model whose parameter names and shapes equal ``state_dict``'s, if any.

    Each architecture is built once on PyTorch's ``meta`` device, so this costs no memory or initialisation time.
    """
    import torch

    _ensure_loaded()
    signature = {k: tuple(v.shape) for k, v in state_dict.items()}
    seen: set[str] = set()
    for entry in _MODELS.values():
        if entry.card.checkpoint.format != "torch" or entry.architecture.name in seen:
            continue
        seen.add(entry.architecture.name)
        with torch.device("meta"):
            candidate = entry.build()
        if {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == signature:
            return entry.card.name
    return None
