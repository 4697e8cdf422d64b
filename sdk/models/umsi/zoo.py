"""UMSI zoo entry: saliency and importance of graphic designs and natural images, plus a design class.

The network is :class:`salsdk.models.umsi.network.UMSI`; the official Keras ``.h5`` is read by
:func:`salsdk.models.umsi.checkpoint.load_umsi_h5`.
"""
from __future__ import annotations

from ...cards import Checkpoint, Claim, ModelCard, Preprocessing
from ...registry import Architecture, register_architecture, register_model

UMSI_INPUT_SIZE: tuple[int, int] = (240, 320)  # (rows, cols) fed to the network
UMSI_OUTPUT_SIZE: tuple[int, int] = (480, 640)  # heatmap size for a UMSI_INPUT_SIZE input (16x the 30x40 grid)
UMSI_CHANNEL_ORDER = "BGR"  # cv2.imread order, as in training
UMSI_MEAN_BGR: tuple[float, float, float] = (103.939, 116.779, 123.68)  # subtracted from B, G, R (0-255 scale)
UMSI_SCALE = 1.0  # pixels stay in 0-255 before the mean subtraction
UMSI_PAD_VALUE = 0  # letterbox canvas value (uint8, before mean subtraction)
UMSI_NUM_CLASSES = 6
# The six classes of the classification head (Fosco et al. 2020; Imp1K's five design types + natural images).
# Their INDEX ORDER is not in any public source: training read it from ``imp1k_with_nat_images_label_map.txt``,
# which was not published. Listed alphabetically; do not use as an index -> name map.
UMSI_CLASS_NAMES_UNORDERED: tuple[str, ...] = (
    "advertisement", "infographic", "mobile_ui", "movie_poster", "natural_image", "webpage",
)
OFFICIAL_CHECKPOINT = "xception_cl_fus_aspp_imp1k_10kl-3cc0.1mse-5nss5bc_bs4_ep30_valloss-2.5774_full.h5"
OFFICIAL_CHECKPOINT_URL = f"http://predimportance.mit.edu/data/{OFFICIAL_CHECKPOINT}"
OFFICIAL_CHECKPOINT_BYTES = 120_194_112

PAPER = ("C. Fosco, V. Casser, A. K. Bedi, P. O'Donovan, A. Hertzmann, Z. Bylinskii. Predicting Visual Importance "
         "Across Graphic Design Types. UIST 2020. (Reproduction: 'Reproducing the Unified Model of Saliency and "
         "Importance (UMSI)', shared/seeds/004.)")

PREPROCESSING = Preprocessing(resize="letterbox", size=UMSI_INPUT_SIZE, channel_order=UMSI_CHANNEL_ORDER,
                              scale=UMSI_SCALE, mean=UMSI_MEAN_BGR, std=(1.0, 1.0, 1.0),
                              pad_value=(float(UMSI_PAD_VALUE),) * 3)

# The index order of the six classes was never published (training read an unpublished label map), so
# predictions name classes by index; the set of names is on the card.
CLASS_LABELS = tuple(f"class_{i}" for i in range(UMSI_NUM_CLASSES))


ARCHITECTURE = register_architecture(Architecture(
    "umsi-xception-os8", builder="salsdk.models.umsi.network:build_umsi",
    checkpoint_reader="salsdk.models.umsi.checkpoint:load_umsi_h5"))

CARD = ModelCard(
    name="UMSI",
    family="umsi",
    architecture=ARCHITECTURE.name,
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

register_model(CARD)
