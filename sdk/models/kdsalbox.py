"""KDSalBox students (Kastrati, Bylinskii, Shechtman, SVRHM @ NeurIPS 2021).

Ten knowledge-distilled saliency models sharing one architecture — a MobileNetV2 encoder, a decoder of seven
3x3 conv+BN+ReLU layers with five bilinear x2 upsamplings and a 1x1 output conv, then a sigmoid — and differing
only in their weights, each distilled from one classic or deep saliency model.

Official runner convention (``fastsaliency_toolbox/backend/interface.py``): RGB pixels divided by 255, no mean or
std, fed at the image's own size; the map (``ceil(h/32)*32 x ceil(w/32)*32``) is resized back to the image.
Official checkpoints: ``models/<NAME>/exported/<name>.pth``, a dict with the state dict under ``student_model``;
encoder keys follow torchvision's ``mobilenet_v2().features`` (``encoder.0.0.weight``, ...).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..cards import Checkpoint, Claim, ModelCard, Preprocessing
from ..registry import register_model
from ..weights import load_torch_checkpoint
from .mobilenetv2 import mobilenet_v2_features

DECODER_CHANNELS = (1280, 512, 256, 256, 128, 128, 64, 64)
UPSAMPLE_AFTER = ("conv7_3", "conv8_1", "conv8_2", "conv9_1", "conv9_2")  # five x2 upsamplings: back to stride 1
CONV_NAMES = ("conv7_3", "conv8_1", "conv8_2", "conv9_1", "conv9_2", "conv10_1", "conv10_2")


class StudentDecoder(nn.Module):
    """Seven conv3x3+BN+ReLU layers, bilinear x2 after each of the first five, then a 1x1 conv to one channel."""

    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout in zip(CONV_NAMES, DECODER_CHANNELS[:-1], DECODER_CHANNELS[1:]):
            setattr(self, name, nn.Conv2d(cin, cout, kernel_size=3, padding=1))
            setattr(self, "bn" + name[4:], nn.BatchNorm2d(cout))
        self.output = nn.Conv2d(DECODER_CHANNELS[-1], 1, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        for name in CONV_NAMES:
            x = F.relu(getattr(self, "bn" + name[4:])(getattr(self, name)(x)))
            if name in UPSAMPLE_AFTER:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.output(x)


class KDSalBoxStudent(nn.Module):
    """MobileNetV2 encoder + :class:`StudentDecoder` + sigmoid.

    ``forward(x)``: ``x`` is (B, 3, H, W), RGB in [0, 1]; returns (B, 1, 32*ceil(H/32), 32*ceil(W/32)) saliency
    in (0, 1) (sigmoid output).
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = mobilenet_v2_features()
        self.decoder = StudentDecoder()

    def forward(self, x: Tensor) -> Tensor:
        return torch_sigmoid(self.decoder(self.encoder(x)))


def torch_sigmoid(x: Tensor) -> Tensor:
    """The student's output activation (kept as a function so exporters see a plain Sigmoid op)."""
    return x.sigmoid()


PAPER = ("A. Kastrati, Z. Bylinskii, E. Shechtman. KDSalBox: A toolbox of efficient knowledge-distilled "
         "saliency models. SVRHM @ NeurIPS 2021.")
LICENCE = ("Weights: Adobe Research licence, non-commercial research use only; artifacts converted from them "
           "inherit that restriction. Code: ardkastrati/kdsalbox.")
REPO_RAW = "https://github.com/ardkastrati/kdsalbox/raw/main/fastsaliency_toolbox/models"
PAPER_TABLE = "KDSalBox paper, Table 1 caption"
STUDENT_CLAIMS = (
    Claim("size_mb", 41.2, "every student model file", PAPER_TABLE),
    Claim("latency_s", 0.4, "640x480 image, CPU, via SMILER (CPU model not stated)", PAPER_TABLE),
    Claim("latency_s", 0.01, "640x480 image, GPU (TITAN Xp used for training; inference GPU not stated)",
          PAPER_TABLE),
)
SIZE_NOTE = (
    "Size: the paper gives 41.2 MB per student. This architecture has 10,448,833 parameters (2,223,872 in the "
    "MobileNetV2 encoder, 8,224,961 in the decoder) and 10,485,761 stored float values with the BatchNorm running "
    "statistics: 41.9 MB (40.0 MiB) as float32, within 2% of the paper's figure, whose units and rounding the paper "
    "does not state. The official files were not reachable here to compare byte for byte."
)

# name, teacher model, teacher citation, teacher's codebase/size/CPU time from Table 1
STUDENTS = (
    ("AIM", "Attention based on Information Maximization", "Bruce & Tsotsos (2009)", "Matlab, 24MB, 10sec"),
    ("IKN", "Itti-Koch-Niebur saliency", "Itti et al. (1998)", "Matlab, 1MB, 6.0sec"),
    ("GBVS", "Graph-Based Visual Saliency", "Harel et al. (2007)", "Matlab, 1MB, 6.1sec"),
    ("BMS", "Boolean Map Saliency", "Zhang & Sclaroff (2013)", "Matlab, 5MB, 0.4sec"),
    ("IMSIG", "Image Signature", "Hou et al. (2012)", "Matlab (Table 1 row not in our text copy)"),
    ("RARE2012", "RARE2012 rarity-based saliency", "Riche et al. (2013)", "Matlab (Table 1 row not in our text copy)"),
    ("SUN", "Saliency Using Natural statistics", "Zhang et al. (2008)", "Matlab, 1MB, 12sec"),
    ("UniSal", "UNISAL unified image/video saliency", "Droste et al. (2020)", "Python, 30MB, 0.4sec"),
    ("SAM", "Saliency Attentive Model", "Cornia et al. (2018)", "Python, 561MB, 7.3sec"),
    ("DGII", "DeepGaze II", "Kümmerer et al. (2016)", "Python, 330MB, 4.8sec"),
)

PREPROCESSING = Preprocessing(resize="native", size=None, channel_order="RGB", scale=1.0 / 255.0)


def _card(name: str, teacher: str, citation: str, teacher_cost: str) -> ModelCard:
    return ModelCard(
        name=name,
        family="kdsalbox",
        task="image-saliency",
        summary=f"MobileNetV2 student distilled from {teacher} ({citation}).",
        paper=PAPER,
        preprocessing=PREPROCESSING,
        outputs=("saliency map in (0, 1) (sigmoid), 32*ceil(H/32) x 32*ceil(W/32), resized to the image",),
        output_range="(0, 1)",
        checkpoint=Checkpoint(
            url=f"{REPO_RAW}/{name}/exported/{name.lower()}.pth",
            filename=f"kdsalbox_{name.lower()}.pth",
            sha256=None,
            format="torch",
            state_key="student_model",
            notes="No hash is published and the file was not reachable here: `salsdk weights fetch` prints the "
                  "downloaded file's SHA-256; pin it with --sha256.",
        ),
        licence=LICENCE,
        licence_short="Adobe Research, non-commercial",
        claims=STUDENT_CLAIMS,
        notes=f"Teacher ({teacher_cost} in KDSalBox Table 1). {SIZE_NOTE}",
        extra={"export_size": (480, 640)},
    )


def _register_all() -> None:
    for name, teacher, citation, cost in STUDENTS:
        register_model(_card(name, teacher, citation, cost), KDSalBoxStudent, load_torch_checkpoint)


_register_all()
