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

from ..mobilenetv2 import mobilenet_v2_features

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
