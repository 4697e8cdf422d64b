"""UMSI zoo entry: saliency and importance of graphic designs and natural images, plus a design class."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..cards import Checkpoint, Claim, ModelCard, Preprocessing
from ..registry import register_model
from .umsi import (OFFICIAL_CHECKPOINT, OFFICIAL_CHECKPOINT_BYTES, OFFICIAL_CHECKPOINT_URL,
                   UMSI_CLASS_NAMES_UNORDERED, UMSI_INPUT_SIZE, UMSI_MEAN_BGR, UMSI_NUM_CLASSES, build_umsi,
                   load_keras_h5)

PAPER = ("C. Fosco, V. Casser, A. K. Bedi, P. O'Donovan, A. Hertzmann, Z. Bylinskii. Predicting Visual Importance "
         "Across Graphic Design Types. UIST 2020. (Reproduction: 'Reproducing the Unified Model of Saliency and "
         "Importance (UMSI)', shared/seeds/004.)")

PREPROCESSING = Preprocessing(resize="letterbox", size=UMSI_INPUT_SIZE, channel_order="BGR", scale=1.0,
                              mean=UMSI_MEAN_BGR, std=(1.0, 1.0, 1.0), pad_value=(0.0, 0.0, 0.0))

# The index order of the six classes was never published (training read an unpublished label map), so
# predictions name classes by index; the set of names is on the card.
CLASS_LABELS = tuple(f"class_{i}" for i in range(UMSI_NUM_CLASSES))


def load_umsi_h5(model: nn.Module, path: Path, card: ModelCard) -> None:
    """Official UMSI Keras ``.h5`` (read with h5py, no code executed), every layer and shape checked."""
    from ..errors import WeightsError

    try:
        load_keras_h5(model, path)
    except (ValueError, OSError, KeyError) as exc:
        raise WeightsError(f"{path} is not a usable UMSI Keras checkpoint: {exc}") from None


CARD = ModelCard(
    name="UMSI",
    family="umsi",
    task="design-importance",
    summary="Xception (output stride 8) encoder, ASPP, a classification branch whose features are fused into the "
            "decoder; predicts a saliency/importance heat map and the design class.",
    paper=PAPER,
    preprocessing=PREPROCESSING,
    outputs=("heat map >= 0 (ReLU, unnormalised), 480x640 for the 240x320 letterboxed input",
             f"class probabilities (softmax over {UMSI_NUM_CLASSES} classes)"),
    output_range="[0, inf) heat map; probabilities sum to 1",
    checkpoint=Checkpoint(url=OFFICIAL_CHECKPOINT_URL, filename=OFFICIAL_CHECKPOINT, sha256=None,
                          format="keras-h5", state_key=None, size_bytes=OFFICIAL_CHECKPOINT_BYTES,
                          notes="Keras 2.2 full-model .h5; not available here, no hash published: pin it with "
                                "--sha256. Checked by the UMSI reference outputs in shared/data/reference/umsi "
                                "the day it is present."),
    licence="See the predimportance release (research code and model from MIT/Adobe); terms not stated with the "
            "checkpoint: check before redistributing artifacts.",
    licence_short="unstated (research)",
    claims=(
        Claim("size_mb", OFFICIAL_CHECKPOINT_BYTES / 1e6, "official Keras .h5 file", "predimportance release"),
    ),
    class_names=CLASS_LABELS,
    notes="The paper calls UMSI real-time but gives no timing figure. Class names (index order unpublished): "
          + ", ".join(UMSI_CLASS_NAMES_UNORDERED) + ".",
)

register_model(CARD, build_umsi, load_umsi_h5)
