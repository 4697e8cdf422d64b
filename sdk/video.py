"""Video saliency with clip models (TinyHD): the official windowing, as a stream and over whole videos.

Conventions of the official ``src/quick_start.py`` of TinyHD:

* **MISO** (S models, 16 frames in, 1 map out): the map of frame ``j`` comes from the window of frames
  ``j-15 .. j`` (the map belongs to the window's *last* frame, sliding by one frame). For the first 15 frames the
  window is left-padded by repeating frame 0, so every frame gets a map from the first frame on.
* **MIMO** (M models, 16 in, 16 out): non-overlapping blocks of 16 frames, one map per frame. The official code
  drops a trailing partial block; here the last partial block is predicted from the last 16 frames of the video
  (or, for videos shorter than 16 frames, from the frames left-padded with frame 0, as MISO does), and only the
  maps of the not-yet-predicted frames are emitted, so every frame gets exactly one map.

Each frame is pre-processed once (resized to the model's size and normalised) and kept in a 16-frame buffer.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from .errors import InputError
from .imageio import load_image
from .postprocess import PostprocessOptions, apply_postprocess, restore_map
from .preprocess import Geometry, preprocess_image

if TYPE_CHECKING:
    from .predictor import Predictor


class VideoStream:
    """Push live frames, get saliency maps (each at the frame's resolution) as soon as the model can give them.

    MISO models return one map per pushed frame at once; MIMO models return 16 maps every 16th frame, and
    :meth:`flush` returns the maps of the frames still waiting at the end of the stream.
    """

    def __init__(self, predictor: "Predictor", postprocess: PostprocessOptions | None = None) -> None:
        contract = predictor.contract
        if not contract.is_video:
            raise InputError(f"{contract.model} is an image model: use predict(image), not a video stream")
        self.predictor = predictor
        self.options = postprocess or predictor.postprocess
        self.frames = contract.temporal.frames
        self.mimo = contract.temporal.mode == "mimo"
        self.window: deque[np.ndarray] = deque(maxlen=self.frames)  # last pre-processed frames
        self.first: np.ndarray | None = None
        self.geometry: Geometry | None = None
        self.pending = 0  # MIMO: frames pushed since the last block
        self.count = 0

    def _clip(self) -> np.ndarray:
        frames = list(self.window)
        padding = [self.first] * (self.frames - len(frames))  # left-pad with frame 0, as the official code
        return np.stack(padding + frames, axis=1)[None]  # (1, 3, T, H, W)

    def _maps(self, output: np.ndarray) -> list[np.ndarray]:
        maps = output[0, 0] if output.ndim == 5 else output[0]  # (T, h, w) for MIMO, (1, h, w) for MISO
        return [apply_postprocess(restore_map(m, self.geometry), self.options) for m in maps]

    def push(self, frame) -> list[np.ndarray]:
        """Add one frame (path, PIL image or array); return the maps that became available (maybe none)."""
        rgb = load_image(frame)
        tensor, geometry = preprocess_image(rgb, self.predictor.contract.preprocessing, self.predictor.runtime.input_hw)
        if self.geometry is None:
            self.geometry, self.first = geometry, tensor
        elif geometry.original_hw != self.geometry.original_hw:
            raise InputError(f"frame {self.count} is {geometry.original_hw}, earlier frames {self.geometry.original_hw}")
        self.window.append(tensor)
        self.count += 1
        if not self.mimo:
            return self._maps(self.predictor.runtime.run(self._clip())[0])
        self.pending += 1
        if self.pending < self.frames:
            return []
        self.pending = 0
        return self._maps(self.predictor.runtime.run(self._clip())[0])

    def flush(self) -> list[np.ndarray]:
        """End of stream: maps of the frames a MIMO model has not predicted yet (the last partial block)."""
        if not self.mimo or self.pending == 0:
            return []
        maps = self._maps(self.predictor.runtime.run(self._clip())[0])
        waiting, self.pending = self.pending, 0
        return maps[-waiting:]


def predict_video(predictor: "Predictor", frames: Iterable, postprocess: PostprocessOptions | None = None) -> Iterator[np.ndarray]:
    """One saliency map per frame, in order, for an iterable of frames (see :class:`VideoStream`)."""
    stream = VideoStream(predictor, postprocess)
    for frame in frames:
        yield from stream.push(frame)
    yield from stream.flush()
