"""TinyHD zoo: S (MISO) and M (MIMO) at x1, x1/2 and x1/4 channels, each an architecture with its DHF1K weights.

The network is :class:`salsdk.models.tinyhd.network.TinyHD`; its export rewrite (no 3-D convolutions, for
TFLite) is :func:`salsdk.models.tinyhd.framewise.framewise_tinyhd`. The official checkpoints are plain PyTorch
state dicts (under ``student_model``), read by :func:`salsdk.weights.load_torch_checkpoint`.
"""
from __future__ import annotations

from ...cards import Checkpoint, Claim, ModelCard, Preprocessing, Temporal
from ...registry import Architecture, ExportRewrite, register_architecture, register_model

TINYHD_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet RGB mean, on [0, 1] pixels
TINYHD_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
TINYHD_FRAMES = 16  # frames per input clip (both modes)
TINYHD_SIZE: tuple[int, int] = (192, 256)  # (rows, cols) of the input clip and of the output maps
FRAMEWISE = ExportRewrite(
    "tinyhd-framewise-2d",
    "3-D convolutions re-expressed as per-temporal-tap 2-D convolutions on frames folded into the batch, "
    "BatchNorm folded, time up-sampling as frame blends (salsdk.models.tinyhd.framewise)",
    "salsdk.models.tinyhd.framewise:framewise_tinyhd")

PAPER = ("F. Hu, S. Palazzo, F. Proietto Salanitri, G. Bellitto, M. Moradi, C. Spampinato, K. McGuinness. "
         "TinyHD: Efficient Video Saliency Prediction with Heterogeneous Decoders using Hierarchical Maps "
         "Distillation. WACV 2023.")
COMMIT = "2657310d41501384fc367b4615bc9f27e679b09b"
RAW = f"https://github.com/feiyanhu/tinyHD/raw/{COMMIT}/weights"
LICENCE = ("No licence file in feiyanhu/tinyHD: the weights are published for research use without explicit "
           "terms; check with the authors before redistributing artifacts.")
TABLE_5A = "TinyHD paper, Table 5a (DHF1K)"
HARDWARE = "per 16-frame 192x256 clip"

# (mode, width, checkpoint file, sha256 or None, paper params, paper GMACs for 16 output maps)
VARIANTS = (
    ("S", 1.0, "d1d2d3_S_lt.pth", None, 3.94e6, 89.12),
    ("S", 0.5, "d123s_rc2_rc1T.pth", None, 1.37e6, 59.52),
    ("S", 0.25, "d123s_rc4_rc1T.pth", "939f818117dda22faa1232127f479c107e7932398c2b1901a963c6fe93b3413c", 513.1e3,
     37.44),
    ("M", 1.0, "d1d2d3_M_lt.pth", None, 3.92e6, 7.95),
    ("M", 0.5, "d123m_rc2_rc1T.pth", None, 1.37e6, 6.92),
    ("M", 0.25, "d123m_rc4_rc1T.pth", "53e8a306d3e260f6c236e99694bec5852ee208b21d816d93a2918c1828771958", 515.3e3,
     4.06),
)

PREPROCESSING = Preprocessing(resize="stretch", size=TINYHD_SIZE, channel_order="RGB", scale=1.0 / 255.0,
                              mean=TINYHD_MEAN, std=TINYHD_STD)


def variant_name(mode: str, width: float) -> str:
    """Registry name, e.g. ``TinyHD-S-x0.25``."""
    return f"TinyHD-{mode}-x{width:g}"


def _card(mode: str, width: float, filename: str, sha256: str | None, params: float, gmacs16: float) -> ModelCard:
    miso = mode == "S"
    maps = "1 map for the clip's last frame (MISO)" if miso else "16 maps, one per input frame (MIMO)"
    return ModelCard(
        name=variant_name(mode, width),
        family="tinyhd",
        architecture=variant_name(mode, width).lower(),
        task="video-saliency",
        summary=f"TinyHD-{mode} at x{width:g} channels: inflated 3-D MobileNetV2 encoder, heterogeneous decoders "
                f"D1+D2+D3 fused by a 1x1 conv; 16 frames in, {maps}.",
        paper=PAPER,
        preprocessing=PREPROCESSING,
        outputs=("saliency in (0, 1) after the final sigmoid: (B, 1, 192, 256) for S, (B, 1, 16, 192, 256) for M",),
        output_range="(0, 1)",
        checkpoint=Checkpoint(url=f"{RAW}/{filename}", filename=f"tinyhd_{filename}", sha256=sha256, format="torch",
                              state_key="student_model",
                              notes="" if sha256 else "Not available here; no hash published: pin it with --sha256."),
        licence=LICENCE,
        licence_short="no licence file (research)",
        claims=(
            Claim("params", params, "trainable parameters", TABLE_5A),
            Claim("gmacs", gmacs16 / 16,
                  f"{HARDWARE}, per output map ({gmacs16} GMACs reported for 16 maps)", TABLE_5A),
        ),
        temporal=Temporal("miso" if miso else "mimo", TINYHD_FRAMES),
        notes="MACs: 'conv' counts convolutions only (torch's FlopCounterMode); the ptflops-style count (BatchNorm, "
              "activations, biases and interpolation too) reproduces the paper's figures. TFLite artifacts are made "
              "from an exact 2-D re-expression of the network (salsdk.models.tinyhd.framewise): TFLite has no "
              "grouped 3-D convolution.",
    )


def _register_all() -> None:
    for mode, width, filename, sha256, params, gmacs in VARIANTS:
        register_architecture(Architecture(
            variant_name(mode, width).lower(), builder="salsdk.models.tinyhd.network:build_tinyhd",
            checkpoint_reader="salsdk.weights:load_torch_checkpoint", kwargs={"mode": mode, "width": width},
            export_rewrite=FRAMEWISE))
        register_model(_card(mode, width, filename, sha256, params, gmacs))


_register_all()
