"""Where an image goes inside a model input, and how a map comes back onto the image.

Three fits exist (:class:`~salsdk.cards.Preprocessing` ``resize``): ``native`` (the image's own size), ``stretch``
(resized to the input size, aspect ratio ignored) and ``letterbox``. ``letterbox`` is the official UMSI rule
exactly (``sal_imp_utilities.padding`` and ``postprocess_predictions`` of the released code), in integers:

* **fit** (:func:`letterbox_fit`): the side that overflows the input most is fitted, the other is scaled by
  *integer division*, ``new_w = w * rows // h`` (or ``new_h = h * cols // w``), and the image is pasted at
  ``((rows - new_h) // 2, (cols - new_w) // 2)`` on a canvas of the pad value; equal ratios fit the width.
  The official code crashes when the scaled side rounds down to 0 pixels (an image 240 times wider than high);
  here it is kept at 1 pixel.
* **un-crop** (:func:`uncrop_fit`): the map (e.g. UMSI's 480x640) is resized, aspect ratio kept, so that it covers
  the original image (the other side again by integer division), and the image's size is cut from its centre.

Every client (Python, the Kotlin core, the browser) implements these same integer formulas.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """Where an image went inside the model input, so that its map can be brought back onto it.

    ``content`` is (top, left, height, width) of the image inside the (``input_hw``) model input: the whole input
    except for letterboxing. ``letterbox`` says the map is restored by the official un-crop (:func:`uncrop_fit`).
    """

    original_hw: tuple[int, int]
    input_hw: tuple[int, int]
    content: tuple[int, int, int, int]
    letterbox: bool = False


def letterbox_fit(original_hw: tuple[int, int], target_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of an image of ``original_hw`` letterboxed into ``target_hw`` (official rule)."""
    (h, w), (rows, cols) = original_hw, target_hw
    if h * cols > w * rows:  # h / rows > w / cols: the height overflows most
        new_w = max(1, min(cols, w * rows // h))
        return 0, (cols - new_w) // 2, rows, new_w
    new_h = max(1, min(rows, h * cols // w))
    return (rows - new_h) // 2, 0, new_h, cols


def uncrop_fit(map_hw: tuple[int, int], original_hw: tuple[int, int]) -> tuple[tuple[int, int], int, int]:
    """``((resize_h, resize_w), top, left)``: resize the map to cover the image, then cut ``original_hw`` at
    (top, left) (official ``postprocess_predictions``)."""
    (mh, mw), (h, w) = map_hw, original_hw
    if h * mw > w * mh:  # h / mh > w / mw
        new_w = mw * h // mh
        return (h, new_w), 0, (new_w - w) // 2
    new_h = mh * w // mw
    return (new_h, w), (new_h - h) // 2, 0


def input_geometry(resize: str, original_hw: tuple[int, int], target_hw: tuple[int, int] | None) -> Geometry:
    """Geometry of an image of ``original_hw`` fitted by ``resize`` (native, stretch, letterbox) into ``target_hw``."""
    original_hw = (int(original_hw[0]), int(original_hw[1]))
    if target_hw is None:
        if resize != "native":
            raise ValueError(f"pre-processing {resize!r} needs an input size")
        return Geometry(original_hw, original_hw, (0, 0, *original_hw))
    target_hw = (int(target_hw[0]), int(target_hw[1]))
    if resize == "letterbox":
        return Geometry(original_hw, target_hw, letterbox_fit(original_hw, target_hw), letterbox=True)
    return Geometry(original_hw, target_hw, (0, 0, *target_hw))


def content_in_map(map_hw: tuple[int, int], geometry: Geometry) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)``: the part of a model output of ``map_hw`` that ends up in the restored map.

    The whole map, except for letterboxed inputs, where it is the region the official un-crop keeps, in map
    coordinates (what the fidelity gate compares: the bands' constant input is easy to reproduce).
    """
    mh, mw = map_hw
    if not geometry.letterbox:
        return 0, 0, mh, mw
    (rh, rw), top, left = uncrop_fit(map_hw, geometry.original_hw)
    h, w = geometry.original_hw
    y0, x0 = round(top * mh / rh), round(left * mw / rw)
    return y0, x0, max(y0 + 1, round((top + h) * mh / rh)), max(x0 + 1, round((left + w) * mw / rw))
