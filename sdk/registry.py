"""The one registry of zoo models.

Each architecture family lives in one module under :mod:`salsdk.models` and declares its variants with
:func:`register_model` (a card plus a builder). The family modules are listed in :data:`FAMILY_MODULES` and
imported on first use, so importing :mod:`salsdk` stays cheap and the registry is filled in one known place.
Names are case-insensitive.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .cards import ModelCard
from .errors import UnknownModelError

FAMILY_MODULES = ("salsdk.models.kdsalbox",)

Builder = Callable[[], nn.Module]
WeightsLoader = Callable[[nn.Module, Path, ModelCard], None]


@dataclass(frozen=True)
class RegistryEntry:
    """A registered model: its card, how to build it untrained, how to load its official checkpoint."""

    card: ModelCard
    build: Builder
    load_weights: WeightsLoader


_REGISTRY: dict[str, RegistryEntry] = {}
_loaded = False


def register_model(card: ModelCard, build: Builder, load_weights: WeightsLoader) -> None:
    """Add one model to the registry (called by the family modules)."""
    key = card.name.lower()
    if key in _REGISTRY:
        raise ValueError(f"model {card.name!r} is registered twice")
    _REGISTRY[key] = RegistryEntry(card, build, load_weights)


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in FAMILY_MODULES:
            importlib.import_module(module)


def list_models(family: str | None = None) -> list[str]:
    """Names of all registered models (optionally of one family), in registration order."""
    _ensure_loaded()
    return [e.card.name for e in _REGISTRY.values() if family is None or e.card.family == family]


def get_entry(name: str) -> RegistryEntry:
    """The registry entry of ``name`` (case-insensitive); raises :class:`UnknownModelError` with the choices."""
    _ensure_loaded()
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; available models: {', '.join(list_models())}"
        ) from None


def get_card(name: str) -> ModelCard:
    """The model card of ``name``."""
    return get_entry(name).card


def build_untrained(name: str, seed: int = 0) -> nn.Module:
    """Build ``name`` with seeded, variance-preserving random weights (same seed, same weights).

    PyTorch's default initialisation, with BatchNorm statistics at identity, shrinks activations so much that
    an untrained network outputs a constant map; He-normal (fan-in) convolutions keep their scale, so untrained
    models give structured, input-dependent maps: useful stand-ins for converting and benchmarking when the
    official weights are absent. They are still untrained and are marked so everywhere.
    """
    entry = get_entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.build()
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return model.eval()


def guess_model_for_state_dict(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Name of the first registered model whose parameter names and shapes equal ``state_dict``'s, if any.

    Models are built on the ``meta`` device, so this costs no memory or initialisation time.
    """
    _ensure_loaded()
    signature = {k: tuple(v.shape) for k, v in state_dict.items()}
    for entry in _REGISTRY.values():
        if entry.card.checkpoint.format != "torch":
            continue
        with torch.device("meta"):
            candidate = entry.build()
        if {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == signature:
            return entry.card.name
    return None
