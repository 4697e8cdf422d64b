"""Where salsdk keeps and finds things: its user folder, and the shared data of development machines.

* ``$SALSDK_HOME`` (default ``~/.cache/salsdk``): the weights cache (``weights/``), converted bench bundles and
  the bench database (``bench/``).
* ``$SALSDK_SHARED`` (default ``../shared`` beside the repository): the data this project's tests, calibration
  defaults and benchmarks read (photos, design screenshots, the DHF1K clip, official TinyHD weights). Absent on a
  user's machine; everything that uses it says so and offers a way to pass one's own data.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

REPOSITORY = Path(__file__).resolve().parents[1]  # the source checkout (sdk/ lives in it), for editable installs


def salsdk_home() -> Path:
    """Root of salsdk's user data: ``$SALSDK_HOME`` or ``~/.cache/salsdk``; refused when it is not a folder."""
    home = Path(os.environ.get("SALSDK_HOME") or Path.home() / ".cache" / "salsdk").expanduser()
    if home.exists() and not home.is_dir():
        raise InputError(f"SALSDK_HOME={home} is a file, not a folder: point SALSDK_HOME at a folder salsdk may write")
    return home


def shared_dir() -> Path:
    """The shared data folder: ``$SALSDK_SHARED``, else ``shared/`` beside the repository checkout."""
    return Path(os.environ.get("SALSDK_SHARED") or REPOSITORY.parent / "shared").expanduser()


def shared_file(relative: str) -> Path | None:
    """``shared_dir() / relative`` if it exists, else None."""
    path = shared_dir() / relative
    return path if path.exists() else None


def shared_video() -> Path | None:
    """The shared DHF1K clip (TinyHD calibration, vectors and benchmarks), if present."""
    return shared_file("data/video/dhf1k_0068.avi")
