"""The built-in real inputs: what calibration, the fidelity gate and ``salsdk check`` use when given none.

scikit-image's natural photographs, the shared design screenshots and the shared DHF1K clip (``../shared`` or
``SALSDK_SHARED``), read where they lie; nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .imageio import IMAGE_SUFFIXES, load_image
from .paths import shared_dir, shared_video

SKIMAGE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                  "retina", "motorcycle_left", "cat", "camera", "page", "text")


def builtin_images(prefer_designs: bool = False) -> list[tuple[str, np.ndarray]]:
    """The built-in real images: scikit-image's natural images and the shared design screenshots (if present)."""
    from skimage import data

    naturals = [(f"skimage:{n}", load_image(getattr(data, n)())) for n in SKIMAGE_IMAGES if hasattr(data, n)]
    design_dir = shared_dir() / "data" / "images" / "design"
    designs = [(f"shared:design/{p.name}", load_image(p)) for p in sorted(design_dir.glob("*"))
               if p.suffix.lower() in IMAGE_SUFFIXES] if design_dir.is_dir() else []
    first, second = (designs, naturals) if prefer_designs else (naturals, designs)
    mixed: list[tuple[str, np.ndarray]] = []
    for i in range(max(len(first), len(second))):  # interleave so both kinds reach calibration and evaluation
        mixed += [pair for pair in (first[i:i + 1] + second[i:i + 1])]
    return mixed


def builtin_video() -> Path | None:
    """The shared DHF1K clip, if present."""
    return shared_video()
