"""One predictor for every runtime: image in, saliency map (at the image's resolution) out.

``Predictor`` joins a :class:`~salsdk.runtimes.base.Runtime` (the engine) and a :class:`~salsdk.contract.Contract`
(the pre/post-processing). Image models use :meth:`Predictor.predict` / :meth:`Predictor.predict_batch`; clip models
(TinyHD) use :meth:`Predictor.predict_video` or :meth:`Predictor.stream`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from .contract import Contract
from .errors import InputError
from .imageio import ImageLike, iter_video_frames, load_image
from .postprocess import PostprocessOptions, apply_postprocess, restore_map
from .preprocess import Geometry, preprocess_image, resize_bilinear
from .runtimes.base import Runtime

if TYPE_CHECKING:
    from .manifest import Manifest


@dataclass
class Prediction:
    """A saliency map at the input's resolution, and class probabilities for models that classify (UMSI)."""

    saliency: np.ndarray
    class_probs: dict[str, float] = field(default_factory=dict)

    @property
    def top_class(self) -> str | None:
        """Most probable class name, if the model classifies."""
        return max(self.class_probs, key=self.class_probs.get) if self.class_probs else None


class Predictor:
    """Pre-process, run, post-process. Create it with :func:`salsdk.load`.

    ``max_side``: models that run at the image's own resolution (KDSalBox) get images whose longer side exceeds
    it downscaled first (the map is brought back to the full size); None runs every image at its own size.
    """

    def __init__(self, runtime: Runtime, contract: Contract, postprocess: PostprocessOptions | None = None,
                 batch_size: int = 8, manifest: "Manifest | None" = None, max_side: int | None = None) -> None:
        if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 32):
            raise InputError(f"max_side must be a whole number of pixels >= 32, got {max_side!r}")
        self.max_side = max_side
        self.runtime = runtime
        self.contract = contract
        self.postprocess = postprocess or PostprocessOptions()
        self.batch_size = batch_size
        self.manifest = manifest  # the bundle's verified manifest, for predictors loaded from artifacts

    def describe(self) -> dict:
        """What executes (runtime, version, provider/delegate, threads) and for which model."""
        return {"model": self.contract.model, "trained": self.contract.trained, **self.runtime.describe()}

    def executes(self) -> str:
        """One line on what actually runs: engine, version, provider/delegate/device and threads."""
        info = self.runtime.describe()
        if "xnnpack" in info:
            detail = f"XNNPACK, {info['delegate_partitions']} partitions" if info["xnnpack"] else "no delegate"
        elif "providers" in info:
            detail = info["providers"][0]
        else:
            detail = str(info.get("device") or info.get("compute_units") or info.get("delegate", "")).replace(
                "xnnpack", "XNNPACK delegate")
        return f"{info['runtime']} {info.get('version', '')} ({detail}, {info.get('threads')} threads)"

    # ----------------------------------------------------------------------------------------------- images
    def predict(self, image: ImageLike, postprocess: PostprocessOptions | None = None) -> np.ndarray:
        """Saliency map of one image: (H, W) float32 at the image's own resolution.

        ``image`` is a path, a PIL image or an (H, W[, C]) array (see :func:`salsdk.imageio.load_image`).
        """
        return self.predict_full(image, postprocess).saliency

    def predict_full(self, image: ImageLike, postprocess: PostprocessOptions | None = None) -> Prediction:
        """Like :meth:`predict`, also returning class probabilities for models that have them (UMSI)."""
        return self.predict_batch_full([image], postprocess)[0]

    def predict_batch(self, images: Sequence[ImageLike], postprocess: PostprocessOptions | None = None) -> list[np.ndarray]:
        """Saliency maps of several images (batched where sizes and the runtime allow)."""
        return [p.saliency for p in self.predict_batch_full(images, postprocess)]

    def predict_batch_full(self, images: Sequence[ImageLike],
                           postprocess: PostprocessOptions | None = None) -> list[Prediction]:
        """:meth:`predict_full` for several images."""
        if self.contract.is_video:
            raise InputError(f"{self.contract.model} is a video model: use predict_video(frames or path)")
        rgbs = [load_image(image) for image in images]
        inputs = [self._shrunk(rgb) for rgb in rgbs]
        prepared = [preprocess_image(rgb, self.contract.preprocessing, self.runtime.input_hw) for rgb in inputs]
        results: list[Prediction | None] = [None] * len(rgbs)
        for indices in self._batches([p[0].shape for p in prepared]):
            outputs = self.runtime.run(np.stack([prepared[i][0] for i in indices]))
            for row, i in enumerate(indices):
                result = self._finish(outputs, row, prepared[i][1], postprocess)
                if inputs[i] is not rgbs[i]:  # back to the full size of the downscaled image
                    result = Prediction(resize_bilinear(result.saliency, rgbs[i].shape[:2]), result.class_probs)
                results[i] = result
        return results  # type: ignore[return-value]

    def _shrunk(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` downscaled to :attr:`max_side` for native-resolution models, else itself."""
        h, w = rgb.shape[:2]
        if self.max_side is None or self.contract.preprocessing.resize != "native" or max(h, w) <= self.max_side:
            return rgb
        scale = self.max_side / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        return np.clip(np.round(resize_bilinear(rgb, size)), 0, 255).astype(np.uint8)

    def _batches(self, shapes: list[tuple[int, ...]]) -> Iterator[list[int]]:
        limit = min(self.batch_size, self.runtime.max_batch or self.batch_size)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, shape in enumerate(shapes):
            groups.setdefault(shape, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), limit):
                yield indices[start:start + limit]

    def _finish(self, outputs: list[np.ndarray], row: int, geometry: Geometry,
                postprocess: PostprocessOptions | None) -> Prediction:
        saliency = apply_postprocess(restore_map(outputs[0][row, 0], geometry), postprocess or self.postprocess)
        probs = {}
        if self.contract.class_names and len(outputs) > 1:
            probs = {n: float(p) for n, p in zip(self.contract.class_names, outputs[1][row])}
        return Prediction(saliency, probs)

    # ----------------------------------------------------------------------------------------------- videos
    def predict_video(self, video: str | Path | Iterable[ImageLike],
                      postprocess: PostprocessOptions | None = None) -> Iterator[np.ndarray]:
        """One saliency map per frame (at the frame's resolution) for a video file or an iterable of frames.

        Clip models only (TinyHD): MISO slides a 16-frame window by one frame; MIMO predicts 16-frame blocks;
        the first frames and the last partial block are handled as :mod:`salsdk.video` describes.
        """
        from .video import predict_video

        frames = iter_video_frames(video) if isinstance(video, (str, Path)) else video
        return predict_video(self, frames, postprocess)

    def stream(self, postprocess: PostprocessOptions | None = None):
        """A :class:`~salsdk.video.VideoStream` for live frames: ``push(frame)`` returns maps when available."""
        from .video import VideoStream

        return VideoStream(self, postprocess)
