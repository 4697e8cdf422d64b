"""KDSalBox zoo: the ten MobileNetV2 students, one architecture with ten sets of weights.

Each row of :data:`STUDENTS` is one zoo model (its name is its weight tag); a new student is one more row.
The network is :class:`salsdk.models.kdsalbox.network.KDSalBoxStudent`; the official checkpoints are plain
PyTorch state dicts (under ``student_model``), read by :func:`salsdk.weights.load_torch_checkpoint`.
"""
from __future__ import annotations

from ...cards import Checkpoint, Claim, ModelCard, Preprocessing
from ...registry import Architecture, register_architecture, register_model

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
        architecture=ARCHITECTURE.name,
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


ARCHITECTURE = register_architecture(Architecture(
    "kdsalbox-student", builder="salsdk.models.kdsalbox.network:KDSalBoxStudent",
    checkpoint_reader="salsdk.weights:load_torch_checkpoint"))

for _student in STUDENTS:
    register_model(_card(*_student))
