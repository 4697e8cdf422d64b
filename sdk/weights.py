"""Official checkpoints: the local cache, download with hash checks, and safe, strict loading.

* The cache lives in ``$SALSDK_HOME/weights`` (default ``~/.cache/salsdk/weights``); every function also takes
  an explicit ``cache_dir``.
* Downloads are written to a temporary file, hashed, checked against the card's SHA-256 and only then renamed
  into place, so an interrupted or corrupted download never looks like a valid checkpoint.
* Checkpoints are read without executing pickled code (``torch.load(weights_only=True)``; UMSI's Keras files
  through h5py), and every key and shape is compared with the model before anything is copied.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .cards import ModelCard
from .errors import WeightsError

CHUNK = 1 << 20


def salsdk_home() -> Path:
    """Root of salsdk's user data: ``$SALSDK_HOME`` or ``~/.cache/salsdk``."""
    return Path(os.environ.get("SALSDK_HOME", Path.home() / ".cache" / "salsdk")).expanduser()


def weights_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder holding downloaded checkpoints."""
    return Path(cache_dir).expanduser() if cache_dir is not None else salsdk_home() / "weights"


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_path(card: ModelCard, cache_dir: str | Path | None = None) -> Path:
    """Where the official checkpoint of ``card`` lives in the cache (whether or not it is there)."""
    return weights_dir(cache_dir) / card.checkpoint.filename


@dataclass(frozen=True)
class WeightsInfo:
    """Provenance of the weights a model was built with; travels into predictions and manifests."""

    model: str
    trained: bool
    path: str | None = None
    sha256: str | None = None
    official: bool = False  # the file's hash equals the card's published hash
    seed: int | None = None  # for untrained (random-init) models

    @property
    def label(self) -> str:
        """Short human-readable description, e.g. for table cells and overlay captions."""
        if not self.trained:
            return f"UNTRAINED (random init, seed {self.seed})"
        return "official" if self.official else f"custom ({Path(self.path or '').name})"


def verify_file(path: str | Path, expected_sha256: str | None) -> str:
    """Return the file's SHA-256; raise :class:`WeightsError` if it differs from ``expected_sha256``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    actual = sha256_of(path)
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise WeightsError(
            f"checkpoint {path} has SHA-256 {actual}, expected {expected_sha256}: the file is corrupted, "
            f"truncated or not the official one. Delete it and fetch it again (salsdk weights fetch)."
        )
    return actual


def fetch(
    card: ModelCard,
    cache_dir: str | Path | None = None,
    *,
    force: bool = False,
    expected_sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download the official checkpoint of ``card`` into the cache and verify it; return its path.

    ``expected_sha256`` overrides the card's hash (needed for checkpoints whose publisher gives none).
    An already cached, verified file is not downloaded again unless ``force``.
    """
    expected = expected_sha256 or card.checkpoint.sha256
    target = cached_path(card, cache_dir)
    if target.is_file() and not force:
        verify_file(target, expected)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(card.checkpoint.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            from tqdm import tqdm

            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
        verify_file(tmp, expected)
        os.replace(tmp, target)
    except OSError as exc:
        raise WeightsError(
            f"could not download {card.checkpoint.url} for {card.name}: {exc}. Download it by hand and pass "
            f"its path (weights=PATH / --weights PATH), or copy it to {target}."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_torch_state_dict(path: str | Path, card: ModelCard) -> dict[str, torch.Tensor]:
    """Read the state dict of a PyTorch checkpoint safely (no pickled code is executed).

    Accepts the official layout (a dict holding the state dict under ``card.checkpoint.state_key``) and,
    for convenience, a bare state dict. Raises :class:`WeightsError` naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist (model {card.name})")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/garbage files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint (corrupted, truncated, or not a .pth file?): {reason}"
        ) from exc
    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"{path} holds a {type(checkpoint).__name__}, not a dict of tensors")
    key = card.checkpoint.state_key
    if key and key in checkpoint:
        checkpoint = checkpoint[key]
    elif key and not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise WeightsError(
            f"{path} has top-level keys {sorted(checkpoint)[:8]}, but {card.name} checkpoints hold their "
            f"weights under {key!r}"
        )
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise WeightsError(f"{path}: the entry {key!r} is not a state dict of tensors")
    return dict(checkpoint)


def load_state_dict_exactly(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, name: str) -> None:
    """Copy ``state_dict`` into ``model`` after checking that every key and shape matches, both ways.

    On mismatch raises :class:`WeightsError` listing missing, unexpected and mis-shaped keys, and naming the
    registered model the checkpoint seems to belong to, if any.
    """
    problems = state_dict_mismatches(model.state_dict(), state_dict)
    if problems:
        from .registry import guess_model_for_state_dict

        guess = guess_model_for_state_dict(state_dict)
        hint = f" It looks like a checkpoint of {guess}." if guess and guess.lower() != name.lower() else ""
        raise WeightsError(f"{source} does not fit model {name}: {'; '.join(problems)}.{hint}")
    model.load_state_dict(state_dict, strict=True)


def state_dict_mismatches(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable list of differences between two state dicts (empty when they match exactly)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    return problems


def load_torch_checkpoint(model: nn.Module, path: Path, card: ModelCard) -> None:
    """Weights loader for the official PyTorch checkpoints (KDSalBox and TinyHD ``student_model`` files)."""
    load_state_dict_exactly(model, read_torch_state_dict(path, card), str(path), card.name)
