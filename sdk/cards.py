"""Model cards: what a model is, how to feed it, where its official weights come from, and what its paper claims.

A card is plain data (frozen dataclasses), so it can be printed by ``salsdk list``, written into an artifact
manifest, and compared against measurements by ``salsdk bench --claims``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

ImageResize = Literal["native", "stretch", "letterbox"]


@dataclass(frozen=True)
class Preprocessing:
    """How raw RGB pixels become the model's input tensor.

    The steps, in order: convert to ``channel_order``; fit to ``size`` by ``resize`` (``native`` keeps the
    image's own size, rounded by the model itself; ``stretch`` resizes to ``size`` ignoring aspect ratio;
    ``letterbox`` resizes keeping the aspect ratio and pads the rest with ``pad_value``, image centred);
    then ``x = (pixel * scale - mean) / std`` per channel; layout NCHW (NCTHW for clips, see :class:`Temporal`).
    The ``letterbox`` fit is the official UMSI rule (:mod:`salsdk.geometry`).
    """

    resize: ImageResize
    size: tuple[int, int] | None  # (height, width) of the model input; None for ``native``
    channel_order: Literal["RGB", "BGR"] = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: Literal["bilinear", "bicubic", "area"] = "bilinear"
    pad_value: tuple[float, float, float] = (0.0, 0.0, 0.0)  # raw pixel value of the padding, before scaling

    def at_size(self, size_hw: tuple[int, int]) -> "Preprocessing":
        """The same steps for a static input of ``size_hw`` (``native`` becomes ``stretch``), as in bundles."""
        return replace(self, size=(int(size_hw[0]), int(size_hw[1])),
                       resize="stretch" if self.resize == "native" else self.resize)


@dataclass(frozen=True)
class Temporal:
    """How a clip model slides over a video (:mod:`salsdk.video`): ``miso`` windows of ``frames`` frames give the
    map of their last frame; ``mimo`` blocks of ``frames`` frames give one map per frame."""

    mode: Literal["miso", "mimo"]
    frames: int


@dataclass(frozen=True)
class Checkpoint:
    """Where the official weights are published and how to verify and read them."""

    url: str
    filename: str
    sha256: str | None  # None: the publisher gives no hash and none was available to us to record
    format: Literal["torch", "keras-h5"]
    state_key: str | None = "student_model"  # key of the state dict inside a torch checkpoint
    size_bytes: int | None = None
    notes: str = ""


@dataclass(frozen=True)
class Claim:
    """One figure a paper gives for a model, with the hardware it was measured on."""

    metric: Literal["params", "gmacs", "size_mb", "latency_s", "fps"]
    value: float
    context: str  # e.g. "640x480 image, CPU (SMILER)" or "per output map, 16x192x256 clip"
    source: str  # paper and table


@dataclass(frozen=True)
class ModelCard:
    """Everything a user, converter, runtime or benchmark needs to know about one zoo model."""

    name: str
    family: Literal["kdsalbox", "tinyhd", "umsi"]
    architecture: str  # registered architecture (salsdk.registry): one architecture, one or more weight tags
    task: Literal["image-saliency", "video-saliency", "design-importance"]
    summary: str
    paper: str
    preprocessing: Preprocessing
    outputs: tuple[str, ...]  # meaning of each model output, in order
    output_range: str
    checkpoint: Checkpoint
    licence: str
    licence_short: str
    claims: tuple[Claim, ...] = ()
    temporal: Temporal | None = None  # None for image models
    class_names: tuple[str, ...] = ()
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (used in manifests and ``salsdk list --json``)."""
        return asdict(self)
