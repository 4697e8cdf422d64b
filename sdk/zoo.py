"""``create_model``: a zoo model as an eval-mode ``torch.nn.Module`` with its official (or explicit random) weights."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

from torch import nn

from .errors import WeightsError
from .registry import build_untrained, get_entry
from .weights import WeightsInfo, cached_path, sha256_of

OFFICIAL = "official"
WeightsArg = Union[str, Path, None, Literal["official"]]


def create_model(name: str, weights: WeightsArg = OFFICIAL, *, cache_dir: str | Path | None = None,
                 seed: int = 0) -> nn.Module:
    """Build zoo model ``name`` (case-insensitive) in eval mode.

    Args:
        name: a name from :func:`salsdk.list_models`.
        weights: ``"official"`` (default) loads the official checkpoint from the cache (fetch it first with
            ``salsdk weights fetch NAME``); a path loads that checkpoint, checked key by key and shape by
            shape; ``None`` builds the model with seeded random initialisation, marked untrained.
        cache_dir: weights cache folder (default ``$SALSDK_HOME/weights``).
        seed: seed of the random initialisation when ``weights is None``.

    The returned module carries ``salsdk_card`` (its :class:`~salsdk.cards.ModelCard`) and ``salsdk_weights``
    (a :class:`~salsdk.weights.WeightsInfo` saying where its weights came from and whether it is trained).
    """
    entry = get_entry(name)
    card = entry.card
    if weights is None:
        model = build_untrained(card.name, seed=seed)
        info = WeightsInfo(model=card.name, trained=False, seed=seed)
    else:
        model = entry.build()
        if isinstance(weights, str) and weights == OFFICIAL:
            path = cached_path(card, cache_dir)
            if not path.is_file():
                raise WeightsError(
                    f"the official weights of {card.name} ({card.checkpoint.filename}) are not in the cache "
                    f"({path}). Fetch them with `salsdk weights fetch {card.name}`, pass weights=PATH "
                    f"(--weights PATH), or weights=None (--random-init) for an untrained model."
                )
        else:
            path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"checkpoint {path} for {card.name} does not exist")
        entry.load_weights(model, path, card)
        digest = sha256_of(path)
        info = WeightsInfo(model=card.name, trained=True, path=str(path), sha256=digest,
                           official=digest == card.checkpoint.sha256)
    model.eval()
    model.salsdk_card = card
    model.salsdk_weights = info
    return model
