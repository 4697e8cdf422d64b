"""``create_model``: a zoo model as an eval-mode ``torch.nn.Module`` with its official (or explicit random) weights."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .errors import WeightsError
from .registry import get_entry
from .hashing import file_sha256
from .weights import OFFICIAL, WeightsArg, WeightsInfo, check_finite, expected_hash, resolve_official

__all__ = ["OFFICIAL", "WeightsArg", "create_model"]


def create_model(name: str, weights: WeightsArg = OFFICIAL, *, cache_dir: str | Path | None = None,
                 seed: int = 0, offline: bool | None = None) -> nn.Module:
    """Build zoo model ``name`` (case-insensitive) in eval mode.

    Args:
        name: a name from :func:`salsdk.list_models`.
        weights: ``"official"`` (default): the official checkpoint from the cache, downloaded and verified on
            first use (see :mod:`salsdk.weights`); a path: that checkpoint, checked key by key and shape by
            shape; ``None``: seeded random initialisation (:func:`salsdk.standins.build_untrained`), marked untrained.
        cache_dir: weights cache folder (default ``$SALSDK_HOME/weights``).
        seed: seed of the random initialisation when ``weights is None``.
        offline: never download (default: ``SALSDK_OFFLINE``).

    The returned module carries ``salsdk_card`` (its :class:`~salsdk.cards.ModelCard`) and ``salsdk_weights``
    (a :class:`~salsdk.weights.WeightsInfo` saying where its weights came from and whether it is trained).
    """
    entry = get_entry(name)
    card = entry.card
    if weights is None:
        from .standins import build_untrained

        if isinstance(seed, bool) or not isinstance(seed, int):
            raise WeightsError(f"seed must be an integer, got {seed!r}")
        model = build_untrained(card.name, seed=seed)
        info = WeightsInfo(model=card.name, trained=False, seed=seed)
    else:
        if not isinstance(weights, (str, Path)):
            raise WeightsError(f"weights must be 'official', a checkpoint path or None, got {type(weights).__name__}")
        official = isinstance(weights, str) and weights == OFFICIAL
        path = resolve_official(card, cache_dir, offline) if official else Path(weights).expanduser()
        if path.is_dir():
            raise WeightsError(f"{path} is a folder; give the checkpoint file of {card.name} itself")
        if not path.is_file():
            raise WeightsError(f"checkpoint {path} for {card.name} does not exist")
        model = entry.build()
        entry.load_weights(model, path)
        check_finite(model, str(path))
        digest = file_sha256(path)
        known, _ = expected_hash(card, cache_dir)
        info = WeightsInfo(model=card.name, trained=True, path=str(path), sha256=digest,
                           official=official or digest == known)
    model.eval()
    model.salsdk_card = card
    model.salsdk_weights = info
    return model
