"""One input of a batch job: its saliency map(s) written atomically, and the index row that records them.

:class:`Worker` holds one predictor (one runtime session) and is what every engine runs, so local processes and
Ray actors write the same bytes and the same rows for the same input.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..errors import SalsdkError
from ..hashing import file_sha256
from ..imageio import is_video_path, load_image
from ..postprocess import overlay
from .stats import map_stats, parse_ratio

MAP_FORMATS = ("png16", "npy")
MAPS = "maps"


@dataclass(frozen=True)
class BatchSpec:
    """What a batch job computes, picklable so that worker processes and Ray actors can rebuild the predictor.

    ``model`` is a zoo name or a bundle folder; ``weights`` as in :func:`salsdk.load` (bundles: ignored);
    ``map_formats`` a subset of :data:`MAP_FORMATS`; ``crops`` aspect ratios such as ``"16:9"``.
    """

    model: str
    out: str
    weights: str | None = "official"
    map_formats: tuple[str, ...] = ("png16",)
    overlays: bool = False
    crops: tuple[str, ...] = ()
    threads: int | None = 1
    max_side: int | None = None

    def validate(self) -> None:
        from ..errors import InputError

        unknown = set(self.map_formats) - set(MAP_FORMATS)
        if unknown or not self.map_formats:
            raise InputError(f"map formats {sorted(unknown) or '(none)'}: choose from {', '.join(MAP_FORMATS)}")
        for ratio in self.crops:
            parse_ratio(ratio)


def input_id(path: str) -> str:
    """A stable file-name stem for an input: its name plus a hash of its absolute path (unique per input)."""
    return f"{Path(path).stem[:60]}-{hashlib.sha1(path.encode('utf-8')).hexdigest()[:10]}"


def write_map(saliency: np.ndarray, stem: Path, formats: tuple[str, ...]) -> tuple[str, float, float]:
    """The map as a 16-bit PNG (min-max scaled; the range is returned for the index) and/or float32 ``.npy``."""
    from PIL import Image

    lo, hi = float(saliency.min()), float(saliency.max())
    names = []
    if "png16" in formats:
        scaled = (saliency - lo) / (hi - lo) if hi > lo else np.zeros_like(saliency)
        level = np.round(scaled * 65535).astype(np.uint16)
        with atomic.temporary_file(stem.with_suffix(".png")) as tmp:
            Image.fromarray(level).save(tmp, format="PNG")
        names.append(stem.with_suffix(".png").name)
    if "npy" in formats:
        with atomic.temporary_file(stem.with_suffix(".npy")) as tmp:
            np.save(tmp, saliency.astype(np.float32), allow_pickle=False)
        names.append(stem.with_suffix(".npy").name)
    return ",".join(names), lo, hi


class Worker:
    """One runtime session; :meth:`process` turns an input path into its outputs and index row."""

    def __init__(self, spec: BatchSpec) -> None:
        from ..api import load

        self.spec = spec
        weights = None if spec.weights is None else spec.weights
        kwargs = {} if Path(spec.model).is_dir() else {"weights": weights}
        self.predictor = load(spec.model, threads=spec.threads, max_side=spec.max_side, **kwargs)
        manifest = self.predictor.manifest
        self.identity = {"model": self.predictor.contract.model, "runtime": self.predictor.runtime.name,
                         "bundle_sha256": manifest.files[manifest.model_file].sha256 if manifest else None}
        self.maps = Path(spec.out) / MAPS
        self.maps.mkdir(parents=True, exist_ok=True)

    def process(self, path: str) -> dict[str, Any]:
        """Outputs of one input and its row; a bad input gives a ``failed`` row, never an exception."""
        row: dict[str, Any] = {"input": path, "input_sha256": None, "status": "failed", "error": None,
                               "kind": "video" if is_video_path(path) else "image", "height": None, "width": None,
                               "frames": None, "map_files": None, "map_min": None, "map_max": None,
                               "latency_ms": None, "peak_x": None, "peak_y": None, "mean": None,
                               "entropy_bits": None, "crops": None, **self.identity}
        try:
            row["input_sha256"] = file_sha256(path)
            start = time.perf_counter()
            row.update(self._video(path) if row["kind"] == "video" else self._image(path))
            row["latency_ms"] = (time.perf_counter() - start) * 1000.0
            row["status"] = "ok"
        except (SalsdkError, OSError, MemoryError) as exc:
            row["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return row

    def _image(self, path: str) -> dict[str, Any]:
        rgb = load_image(path)
        saliency = self.predictor.predict(rgb)
        stem = self.maps / input_id(path)
        files, lo, hi = write_map(saliency, stem, self.spec.map_formats)
        if self.spec.overlays:
            from PIL import Image

            with atomic.temporary_file(stem.with_name(stem.name + "_overlay.jpg")) as tmp:
                Image.fromarray(overlay(rgb, saliency)).save(tmp, format="JPEG", quality=90)
        stats = map_stats(saliency, self.spec.crops)
        return {"height": rgb.shape[0], "width": rgb.shape[1], "frames": 1, "map_files": files, "map_min": lo,
                "map_max": hi, **stats, "crops": json.dumps(stats["crops"])}

    def _video(self, path: str) -> dict[str, Any]:
        """Every frame's map into ``maps/<id>/``, written in a staging folder and renamed into place when whole."""
        target = self.maps / input_id(path)
        with atomic.staging_folder(self.maps, target.name) as staged:
            count, total, shape = 0, None, None
            for count, saliency in enumerate(self.predictor.predict_video(path), start=1):
                write_map(saliency, staged / f"{count - 1:05d}", self.spec.map_formats)
                total = saliency.astype(np.float64) if total is None else total + saliency
                shape = saliency.shape
            atomic.replace_folder(staged, target)
        stats = map_stats((total / max(count, 1)).astype(np.float32), self.spec.crops)  # of the mean map
        return {"height": shape[0], "width": shape[1], "frames": count, "map_files": f"{target.name}/",
                **stats, "crops": json.dumps(stats["crops"])}
