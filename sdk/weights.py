"""Official checkpoints: the local cache, download on first use with hash checks, and safe, strict loading.

* The cache lives in ``$SALSDK_HOME/weights`` (default ``~/.cache/salsdk/weights``); every function also takes
  an explicit ``cache_dir``.
* ``weights="official"`` uses the cached checkpoint, downloading it on first use (progress bar; written to a
  temporary file, hashed, renamed into place only when it verifies). Where the card publishes a SHA-256 the file
  must have it; where the publisher gives none, the first download's hash is pinned in ``pins.json`` in the cache
  (trust on first use) and every later use must match that pin: a changed file is an error, never a silent
  substitute.
* Offline (``SALSDK_OFFLINE=1`` or ``offline=True``) nothing is downloaded: a missing checkpoint is a one-line
  error naming the file, its URL and where to put it.
* Checkpoints are read without executing pickled code (``torch.load(weights_only=True)``; UMSI's Keras files
  through h5py); every key and shape is compared with the model before anything is copied, and tensors with
  NaN or infinite values are refused.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Union

from .atomic import write_text
from .cards import ModelCard
from .errors import WeightsError
from .hashing import file_sha256
from .paths import salsdk_home

if TYPE_CHECKING:
    import torch
    from torch import nn

CHUNK = 1 << 20
OFFICIAL = "official"
WeightsArg = Union[str, Path, None, Literal["official"]]
PINS_FILE = "pins.json"
READ_TIMEOUT_S = 20.0  # a download that delivers nothing for this long is abandoned


def weights_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder holding downloaded checkpoints."""
    return Path(cache_dir).expanduser() if cache_dir is not None else salsdk_home() / "weights"


def offline_mode(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``SALSDK_OFFLINE`` is set to 1/true/yes."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("SALSDK_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


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
    official: bool = False  # the official checkpoint (published hash, or the cache's first-use pin)
    seed: int | None = None  # for untrained (random-init) models

    @property
    def label(self) -> str:
        """Short human-readable description, e.g. for table cells and overlay captions."""
        if not self.trained:
            return f"UNTRAINED (random init, seed {self.seed})"
        return "official" if self.official else f"custom ({Path(self.path or '').name})"


# ---------------------------------------------------------------------------------------------------- pins
def read_pins(cache_dir: str | Path | None = None) -> dict[str, str]:
    """File name -> SHA-256 pinned on first download, for checkpoints without a published hash."""
    path = weights_dir(cache_dir) / PINS_FILE
    if not path.is_file():
        return {}
    try:
        pins = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path} is unreadable ({exc}): delete it to pin the cached checkpoints again") from None
    if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
        raise WeightsError(f"{path} is not a file-name -> SHA-256 map: delete it to pin the checkpoints again")
    return pins


def _pin(card: ModelCard, digest: str, cache_dir: str | Path | None) -> None:
    pins = read_pins(cache_dir)
    pins[card.checkpoint.filename] = digest
    write_text(weights_dir(cache_dir) / PINS_FILE, json.dumps(pins, indent=2, sort_keys=True) + "\n")


def expected_hash(card: ModelCard, cache_dir: str | Path | None = None) -> tuple[str | None, str]:
    """``(sha256, source)`` the official checkpoint of ``card`` must have: the published hash, else the first-use
    pin, else ``(None, "none")``."""
    if card.checkpoint.sha256:
        return card.checkpoint.sha256.lower(), "published"
    pinned = read_pins(cache_dir).get(card.checkpoint.filename)
    return (pinned, "pinned on first download") if pinned else (None, "none")


def verify_file(path: str | Path, expected_sha256: str | None, source: str = "expected") -> str:
    """Return the file's SHA-256; raise :class:`WeightsError` if it differs from ``expected_sha256``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    actual = file_sha256(path)
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise WeightsError(
            f"checkpoint {path} has SHA-256 {actual}, but {expected_sha256} is {source}: the file is corrupted, "
            "truncated or not the official one. Delete it and fetch it again (salsdk weights fetch)")
    return actual


# ------------------------------------------------------------------------------------------------ download
def _offline_message(card: ModelCard, target: Path, why: str) -> str:
    return (f"the official weights of {card.name} ({card.checkpoint.filename}) are not in the cache and {why}: "
            f"download {card.checkpoint.url} and put it at {target} (or pass --weights PATH / weights=PATH)")


def fetch(card: ModelCard, cache_dir: str | Path | None = None, *, force: bool = False,
          expected_sha256: str | None = None, progress: bool = True, offline: bool | None = None) -> Path:
    """The official checkpoint of ``card`` in the cache, downloaded and verified if needed; returns its path.

    ``expected_sha256`` overrides the card's hash and the first-use pin. A cached, verified file is not
    downloaded again unless ``force``.
    """
    target = cached_path(card, cache_dir)
    expected, source = (expected_sha256.lower(), "given") if expected_sha256 else expected_hash(card, cache_dir)
    if target.is_file() and not force:
        digest = verify_file(target, expected, f"the {source} hash")
        if expected is None:
            _pin(card, digest, cache_dir)
        return target
    if offline_mode(offline):
        raise WeightsError(_offline_message(card, target, "salsdk is offline (SALSDK_OFFLINE)"))
    from .atomic import writable_folder

    writable_folder(target.parent, "weights cache")
    fd, tmp_name = tempfile.mkstemp(prefix=f".salsdk-{os.getpid()}-{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        _download(card.checkpoint.url, fd, target.name, progress, card.checkpoint.size_bytes)
        digest = verify_file(tmp, expected, f"the {source} hash")
        os.replace(tmp, target)
        if expected is None:
            _pin(card, digest, cache_dir)
    except (OSError, urllib.error.URLError, socket.timeout) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(_offline_message(card, target, f"the download failed ({reason})")) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _download(url: str, fd: int, name: str, progress: bool, size_hint: int | None) -> None:
    """Stream ``url`` into the open file ``fd`` with a progress bar; a stall of :data:`READ_TIMEOUT_S` aborts."""
    from tqdm import tqdm

    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=READ_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or size_hint
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}", disable=not progress) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
        if total and out.tell() != total:
            raise OSError(f"received {out.tell()} of {total} bytes")


def resolve_official(card: ModelCard, cache_dir: str | Path | None = None, offline: bool | None = None,
                     progress: bool = True) -> Path:
    """The verified official checkpoint of ``card``, downloaded on first use (see :func:`fetch`)."""
    return fetch(card, cache_dir, offline=offline, progress=progress)


# --------------------------------------------------------------------------------------------- safe loading
def unwrap_state_dict(checkpoint: Mapping[str, Any], state_key: str | None) -> dict[str, Any]:
    """The state dict inside an official checkpoint (under ``state_key`` when present), with a DataParallel
    ``module.`` prefix stripped; a bare state dict is accepted too. Pure: the input is not modified."""
    if state_key and isinstance(checkpoint.get(state_key), Mapping):
        checkpoint = checkpoint[state_key]
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def read_torch_state_dict(path: str | Path, card: ModelCard) -> dict[str, "torch.Tensor"]:
    """Read the state dict of a PyTorch checkpoint safely (no pickled code is executed).

    Accepts the official layout (a dict holding the state dict under ``card.checkpoint.state_key``) and, for
    convenience, a bare state dict. Raises :class:`WeightsError` naming the file and the problem.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a folder; give the checkpoint file itself (model {card.name})")
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist (model {card.name})")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/garbage files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint (corrupted, truncated, or not a .pth file?): {reason}"
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"{path} holds a {type(checkpoint).__name__}, not a dict of tensors")
    key = card.checkpoint.state_key
    if key and key not in checkpoint and not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise WeightsError(f"{path} has top-level keys {sorted(map(str, checkpoint))[:8]}, but {card.name} "
                           f"checkpoints hold their weights under {key!r}")
    state = unwrap_state_dict(checkpoint, key)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: the entry {key!r} is not a state dict of tensors")
    return state


def check_finite(model: "nn.Module", source: str) -> None:
    """:class:`WeightsError` if any parameter or buffer of ``model`` holds NaN or infinity."""
    import torch

    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{source}: tensor {name} holds NaN or infinite values; the checkpoint is damaged")


def load_state_dict_exactly(model: "nn.Module", state_dict: Mapping[str, "torch.Tensor"], source: str,
                            name: str) -> None:
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


def state_dict_mismatches(expected: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
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


def load_torch_checkpoint(model: "nn.Module", path: Path, card: ModelCard) -> None:
    """Checkpoint reader of architectures whose official files are PyTorch state dicts (KDSalBox, TinyHD)."""
    load_state_dict_exactly(model, read_torch_state_dict(path, card), str(path), card.name)
