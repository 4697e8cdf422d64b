"""UMSI, the Unified Model of Saliency and Importance (Fosco et al., UIST 2020), in PyTorch.

Faithful port of ``xception_cl_fus_aspp`` from the public ``predimportance-public`` code
(``src/singleduration_models.py`` + ``src/xception_custom.py``), the builder whose name the official checkpoint
``xception_cl_fus_aspp_imp1k_10kl-3cc0.1mse-5nss5bc_bs4_ep30_valloss-2.5774_full.h5`` (120,194,112 bytes, a
Keras ``model.save`` file that the official demo opens with ``keras.models.load_model``) carries. Written from the
paper and that code, not copied.

Architecture (input 240x320, NHWC in Keras, NCHW here)
    * Encoder: Keras-applications Xception with the output stride cut from 32 to 8 — in ``xception_custom`` the
      block-4 and block-13 residual 1x1 convs and max-pools use stride 1 instead of 2 — so 240x320 -> 30x40x2048.
      Keras default BatchNorm epsilon 1e-3; ``block1_conv1``/``block1_conv2`` are 'valid' 3x3 convs.
    * ASPP (``aspp``): a 1x1 conv branch and three separable branches (3x3 depthwise with dilation 6/12/18 -> BN ->
      ReLU -> 1x1 -> BN -> ReLU), 256 channels each, BatchNorm epsilon 1e-5, concatenated (1024 channels).
    * Global branch (``global_net``): 3x3 conv stride 3 'same' (30x40 -> 10x14) -> BN(1e-5) -> ReLU -> dropout
      -> global average pool -> Dense(256) (linear) -> dropout. Its output feeds
        - ``out_classif``: Dense(num_classes, softmax) — the design-class probabilities (6 classes);
        - ``dense_fusion``: Dense(256) (linear), tiled over the 30x40 grid and concatenated after the ASPP
          channels (1024 + 256 = 1280 channels).
    * ``concat_projection`` 1x1 conv (no bias) -> BN(1e-5) -> ReLU -> dropout.
    * Decoder (``decoder_block``, dilation 2, 256 filters): conv3x3 256, conv3x3 256, x2 bilinear,
      conv3x3 128, conv3x3 128, x2 bilinear, conv3x3 64, x4 bilinear, 1x1 conv to one channel; every conv has a
      bias and a ReLU (the heatmap is ReLU'd, not normalised). Output 16x the encoder grid: 480x640 for a
      240x320 input, i.e. TWICE the input size (``shape_r_out, shape_c_out = 480, 640`` in the official config).
    * Dropouts are identities at inference.

'same' padding: Keras pads ``total = max((out-1)*stride + dilated_kernel - in, 0)`` with ``total // 2`` before and
the rest after; PyTorch's symmetric ``padding=`` only matches when ``total`` is even, so strided convs and pools
here pad explicitly (:func:`tf_same_padding`). At 240x320 every pad happens to be symmetric; other sizes test the
asymmetric case.

Bilinear upsampling: the official code targets standalone Keras 2.2/2.3 on TensorFlow 1 (it relies on
``keras_applications``' ``keras_modules_injection``), whose ``UpSampling2D(interpolation='bilinear')`` is
``tf.image.resize_bilinear`` with ``half_pixel_centers=False`` (source pixel ``= dst / scale``, clamped at the far
edge). TensorFlow 2 (``tf.keras``, Keras 3), which e.g. the Aalto AIM service uses to run the same file since its
v1.1, resizes with half-pixel centres (``(dst + 0.5) / scale - 0.5``), which is PyTorch's
``align_corners=False``. Both are offered (``upsampling='tf1'``, the default and training-time
behaviour, or ``'tf2'``). TF1 samples each x``s`` stage ``(s - 1) / 2`` output pixels further down-right, so its
heatmap is shifted up-left by about 7.5 pixels of the 480x640 output (4 + 2 + 1.5) relative to TF2's.

Pre-processing of the official pipeline (``sal_imp_utilities.preprocess_images`` / ``padding``, training and
evaluation): ``cv2.imread`` (BGR, uint8), letterbox to 240x320 keeping the aspect ratio (:func:`letterbox_geometry`:
``cv2.resize`` bilinear to the fitted size, pasted centred on a zero (black) canvas), cast to float and subtract
``UMSI_MEAN_BGR`` per channel — no scaling to [0, 1], no std division; padded pixels become ``-mean``. The public
demo script's PIL branch (``use_cv2=False``, also used by the AIM service) subtracts the same numbers from *RGB*
channels, a channel-order slip that this port does not reproduce.

Post-processing: take ``heatmap[0]`` (480x640, >= 0), resize it keeping its aspect ratio so it covers the original
image and centre-crop the image's size (:func:`uncrop_geometry`; the inverse of the letterbox), optionally
Gaussian-blur and scale to ``map / max * 255``.

Checkpoint layout (h5py, weights only): a full-model file has the root attributes ``keras_version``, ``backend``,
``model_config`` (JSON) and the group ``model_weights``; a ``save_weights`` file has the layer groups at the root.
Each layer group ``<layer>`` lists its arrays in the attribute ``weight_names`` (``'<layer>/kernel:0'``, ...), stored
at ``<layer>/<layer>/kernel:0``. The names are those of the official code (:func:`keras_layer_table`); the four
Xception residual 1x1 convs and their BatchNorms were left unnamed there, so Keras numbered them
(``conv2d_1`` ... ``conv2d_4`` and ``batch_normalization_1`` ... ``batch_normalization_4`` in a fresh Keras 2.2
session; ``conv2d``, ``conv2d_1``, ... in tf.keras): :func:`load_keras_h5` matches them by that number's order.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    import h5py

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

Upsampling = Literal["tf1", "tf2"]

KERAS_BN_EPS = 1e-3  # keras.layers.BatchNormalization default (Xception encoder)
HEAD_BN_EPS = 1e-5  # every BatchNorm of the UMSI head sets epsilon=1e-5


# --------------------------------------------------------------------------------------------------------------
# Keras-equivalent layers
# --------------------------------------------------------------------------------------------------------------

def tf_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) of one spatial axis of length ``size``.

    Layers call it with ``int(x.shape[i])``: pads are Python constants, so a traced/exported graph is specialised
    to the input size (the ONNX exporter silently drops pads computed from traced shape tensors).
    """
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with Keras ``padding='same'|'valid'`` semantics (asymmetric 'same' pads applied explicitly)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1,
                 bias: bool = True, padding: Literal["same", "valid"] = "same") -> None:
        dynamic = padding == "same" and (stride > 1 or (kernel - 1) * dilation % 2 == 1)
        static = (kernel - 1) * dilation // 2 if padding == "same" and not dynamic else 0
        super().__init__(cin, cout, kernel, stride, static, dilation, groups, bias)
        self.keras_padding = padding
        self._dynamic = dynamic

    def forward(self, x: Tensor) -> Tensor:
        if self._dynamic:
            k, s, d = self.kernel_size[0], self.stride[0], self.dilation[0]
            top, bottom = tf_same_padding(int(x.shape[-2]), k, s, d)
            left, right = tf_same_padding(int(x.shape[-1]), k, s, d)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class MaxPool2dSame(nn.Module):
    """Keras ``MaxPooling2D(3, strides, padding='same')``: padded cells never win (padding with -inf)."""

    def __init__(self, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = tf_same_padding(int(x.shape[-2]), self.kernel, self.stride)
        left, right = tf_same_padding(int(x.shape[-1]), self.kernel, self.stride)
        if top == bottom and left == right:
            return F.max_pool2d(x, self.kernel, self.stride, (top, left))
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D(cout, 3, padding='same', use_bias=False)``: depthwise 3x3 then pointwise 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = Conv2dSame(cin, cin, 3, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


def batch_norm(channels: int, eps: float) -> nn.BatchNorm2d:
    """A BatchNorm2d with Keras' epsilon (inference uses the moving statistics, as Keras does)."""
    return nn.BatchNorm2d(channels, eps=eps)


class UpsampleBilinear(nn.Module):
    """Keras ``UpSampling2D(size, interpolation='bilinear')`` under TensorFlow 1 (``'tf1'``) or 2 (``'tf2'``).

    ``'tf1'`` is TF1's ``resize_bilinear(align_corners=False, half_pixel_centers=False)``: output pixel ``j`` reads
    source coordinate ``j / factor``, the last source row/column repeated past the edge. It is computed exactly as
    an edge-replicated 1-pixel pad followed by an ``align_corners=True`` resize to ``n * factor + 1`` and a crop
    (ONNX: Pad(edge) -> Resize(align_corners) -> Slice). ``'tf2'`` is half-pixel (``align_corners=False``).
    """

    def __init__(self, factor: int, mode: Upsampling = "tf1") -> None:
        super().__init__()
        if mode not in ("tf1", "tf2"):
            raise ValueError(f"upsampling must be 'tf1' or 'tf2', got {mode!r}")
        self.factor, self.mode = factor, mode

    def forward(self, x: Tensor) -> Tensor:
        size = (int(x.shape[-2]) * self.factor, int(x.shape[-1]) * self.factor)
        if self.mode == "tf2":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        x = F.interpolate(x, size=(size[0] + 1, size[1] + 1), mode="bilinear", align_corners=True)
        return x[..., : size[0], : size[1]]


# --------------------------------------------------------------------------------------------------------------
# Encoder: Xception with output stride 8 (predimportance ``xception_custom``)
# --------------------------------------------------------------------------------------------------------------

class XceptionBlock(nn.Module):
    """One Xception block: [ReLU] -> SepConv -> BN, repeated, [max-pool], plus a (projected) residual.

    Attributes mirror the Keras names: ``sepconv{i}`` / ``sepconv{i}_bn`` are ``block{n}_sepconv{i}[_bn]``;
    ``residual_conv`` / ``residual_bn`` are the unnamed 1x1 projection (``conv2d_k`` / ``batch_normalization_k``).
    """

    def __init__(self, cin: int, widths: tuple[int, ...], relu_first: bool = True,
                 residual_stride: int | None = None, pool_stride: int | None = None) -> None:
        super().__init__()
        self.relu_first = relu_first
        self.n_sep = len(widths)
        channels = cin
        for i, width in enumerate(widths, start=1):
            setattr(self, f"sepconv{i}", SeparableConv2d(channels, width))
            setattr(self, f"sepconv{i}_bn", batch_norm(width, KERAS_BN_EPS))
            channels = width
        self.pool = MaxPool2dSame(3, pool_stride) if pool_stride else None
        if residual_stride is not None:
            self.residual_conv: nn.Module | None = nn.Conv2d(cin, channels, 1, residual_stride, bias=False)
            self.residual_bn: nn.Module | None = batch_norm(channels, KERAS_BN_EPS)
        else:
            self.residual_conv = self.residual_bn = None

    @property
    def residual_branch_norm(self) -> nn.Module:
        """The BatchNorm closing the separable-conv branch (damped in untrained stand-ins)."""
        return getattr(self, f"sepconv{self.n_sep}_bn")

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.residual_conv is None else self.residual_bn(self.residual_conv(x))
        for i in range(1, self.n_sep + 1):
            if i > 1 or self.relu_first:
                x = F.relu(x)
            x = getattr(self, f"sepconv{i}_bn")(getattr(self, f"sepconv{i}")(x))
        if self.pool is not None:
            x = self.pool(x)
        return x + residual


class XceptionOS8(nn.Module):
    """Keras-applications Xception without top, output stride 8 (blocks 4 and 13 do not downsample)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1_conv1 = Conv2dSame(3, 32, 3, stride=2, bias=False, padding="valid")
        self.block1_conv1_bn = batch_norm(32, KERAS_BN_EPS)
        self.block1_conv2 = Conv2dSame(32, 64, 3, bias=False, padding="valid")
        self.block1_conv2_bn = batch_norm(64, KERAS_BN_EPS)
        self.block2 = XceptionBlock(64, (128, 128), relu_first=False, residual_stride=2, pool_stride=2)
        self.block3 = XceptionBlock(128, (256, 256), residual_stride=2, pool_stride=2)
        self.block4 = XceptionBlock(256, (728, 728), residual_stride=1, pool_stride=1)  # Keras original: 2, 2
        for n in range(5, 13):
            setattr(self, f"block{n}", XceptionBlock(728, (728, 728, 728)))
        self.block13 = XceptionBlock(728, (728, 1024), residual_stride=1, pool_stride=1)  # Keras original: 2, 2
        self.block14_sepconv1 = SeparableConv2d(1024, 1536)
        self.block14_sepconv1_bn = batch_norm(1536, KERAS_BN_EPS)
        self.block14_sepconv2 = SeparableConv2d(1536, 2048)
        self.block14_sepconv2_bn = batch_norm(2048, KERAS_BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.block1_conv1_bn(self.block1_conv1(x)))
        x = F.relu(self.block1_conv2_bn(self.block1_conv2(x)))
        for n in range(2, 14):
            x = getattr(self, f"block{n}")(x)
        x = F.relu(self.block14_sepconv1_bn(self.block14_sepconv1(x)))
        return F.relu(self.block14_sepconv2_bn(self.block14_sepconv2(x)))


# --------------------------------------------------------------------------------------------------------------
# UMSI head
# --------------------------------------------------------------------------------------------------------------

class AtrousSeparableBranch(nn.Module):
    """DeepLabv3+ ``SepConv_BN(depth_activation=True)``: dilated depthwise 3x3 -> BN -> ReLU -> 1x1 -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, rate: int) -> None:
        super().__init__()
        self.depthwise = Conv2dSame(cin, cin, 3, dilation=rate, groups=cin, bias=False)
        self.depthwise_bn = batch_norm(cin, HEAD_BN_EPS)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.pointwise_bn = batch_norm(cout, HEAD_BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.depthwise_bn(self.depthwise(x)))
        return F.relu(self.pointwise_bn(self.pointwise(x)))


class ASPP(nn.Module):
    """Atrous separable pyramid pooling without image pooling: 1x1 branch + rates 6, 12, 18, concatenated."""

    RATES = (6, 12, 18)

    def __init__(self, cin: int = 2048, filters: int = 256) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, filters, 1, bias=False)
        self.conv0_bn = batch_norm(filters, HEAD_BN_EPS)
        self.branches = nn.ModuleList(AtrousSeparableBranch(cin, filters, r) for r in self.RATES)

    def forward(self, x: Tensor) -> Tensor:
        outs = [F.relu(self.conv0_bn(self.conv0(x)))] + [branch(x) for branch in self.branches]
        return torch.cat(outs, dim=1)


class GlobalBranch(nn.Module):
    """``global_net``: 3x3 stride-3 conv -> BN -> ReLU -> global average pool -> Dense (no activation)."""

    def __init__(self, cin: int = 2048, filters: int = 256) -> None:
        super().__init__()
        self.conv = Conv2dSame(cin, filters, 3, stride=3, bias=False)
        self.bn = batch_norm(filters, HEAD_BN_EPS)
        self.dense = nn.Linear(filters, filters)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.conv(x)))
        return self.dense(x.mean(dim=(2, 3)))


class Decoder(nn.Module):
    """``decoder_block(dil_rate=(2, 2), dec_filt=256)``: five dilated 3x3 conv+ReLU, x2/x2/x4 bilinear, 1x1+ReLU."""

    def __init__(self, filters: int = 256, upsampling: Upsampling = "tf1") -> None:
        super().__init__()
        widths = (filters, filters, filters, filters // 2, filters // 2, filters // 4)
        for i in range(1, 6):
            setattr(self, f"c{i}", Conv2dSame(widths[i - 1], widths[i], 3, dilation=2))
        self.c_out = nn.Conv2d(widths[-1], 1, 1)
        self.ups1 = UpsampleBilinear(2, upsampling)
        self.ups2 = UpsampleBilinear(2, upsampling)
        self.ups3 = UpsampleBilinear(4, upsampling)

    def forward(self, x: Tensor) -> Tensor:
        x = self.ups1(F.relu(self.c2(F.relu(self.c1(x)))))
        x = self.ups2(F.relu(self.c4(F.relu(self.c3(x)))))
        x = self.ups3(F.relu(self.c5(x)))
        return F.relu(self.c_out(x))


class UMSI(nn.Module):
    """UMSI (``xception_cl_fus_aspp``): Xception-OS8 encoder, ASPP, class-fused decoder, classifier.

    ``forward(x)``: ``x`` is (B, 3, H, W) pre-processed as the official code does (BGR, 0-255 minus
    ``UMSI_MEAN_BGR``, letterboxed to ``UMSI_INPUT_SIZE``). Returns ``(heatmap, class_probs)``:
    ``heatmap`` is (B, 1, 16*h, 16*w) for an encoder grid of h x w — (B, 1, 480, 640), twice the input size, for
    a 240x320 input — unnormalised and >= 0 (ReLU), the Keras output transposed to NCHW; ``class_probs`` is
    (B, num_classes) softmax probabilities.
    """

    def __init__(self, num_classes: int = UMSI_NUM_CLASSES, filters: int = 256,
                 upsampling: Upsampling = "tf1") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.encoder = XceptionOS8()
        self.aspp = ASPP(2048, filters)
        self.global_net = GlobalBranch(2048, filters)
        self.out_classif = nn.Linear(filters, num_classes)
        self.dense_fusion = nn.Linear(filters, filters)
        self.concat_projection = nn.Conv2d(4 * filters + filters, filters, 1, bias=False)
        self.concat_projection_bn = batch_norm(filters, HEAD_BN_EPS)
        self.decoder = Decoder(filters, upsampling)

    @property
    def convs_without_batchnorm(self) -> list[nn.Conv2d]:
        """The decoder's hidden convolutions (conv + ReLU, no BatchNorm), in order: an untrained stand-in
        normalises them from data as BatchNorm normalises the other layers."""
        return [getattr(self.decoder, f"c{i}") for i in range(1, 6)]

    @property
    def relu_output_conv(self) -> nn.Conv2d:
        """The 1x1 convolution whose ReLU is the heatmap (an untrained stand-in's bias is set from data)."""
        return self.decoder.c_out

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.encoder(x)
        pyramid = self.aspp(features)
        global_features = self.global_net(features)
        class_probs = torch.softmax(self.out_classif(global_features), dim=1)
        fusion = self.dense_fusion(global_features)[:, :, None, None].expand(-1, -1, *pyramid.shape[-2:])
        x = torch.cat([pyramid, fusion], dim=1)
        x = F.relu(self.concat_projection_bn(self.concat_projection(x)))
        return self.decoder(x), class_probs


def build_umsi(num_classes: int = UMSI_NUM_CLASSES, upsampling: Upsampling = "tf1") -> UMSI:
    """A randomly initialised UMSI in eval mode (load the official weights with :func:`load_keras_h5`)."""
    return UMSI(num_classes=num_classes, upsampling=upsampling).eval()


# --------------------------------------------------------------------------------------------------------------
# Pre/post-processing geometry of the official pipeline
# --------------------------------------------------------------------------------------------------------------

def letterbox_geometry(height: int, width: int, size: tuple[int, int] = UMSI_INPUT_SIZE) -> tuple[int, int, int, int]:
    """Official ``padding()``: ``(new_h, new_w, top, left)``; resize the image to new_h x new_w, paste at (top, left).

    The side that overflows most is fitted (integer division), the other padded equally on both sides (the odd
    pixel goes after); equal ratios pad rows.
    """
    rows, cols = size
    if height / rows > width / cols:
        new_w = min(width * rows // height, cols)
        return rows, new_w, 0, (cols - new_w) // 2
    new_h = min(height * cols // width, rows)
    return new_h, cols, (rows - new_h) // 2, 0


def uncrop_geometry(map_size: tuple[int, int], height: int, width: int) -> tuple[int, int, int, int]:
    """Official ``postprocess_predictions``: ``(resize_h, resize_w, top, left)``.

    Resize the heatmap (``map_size``, e.g. 480x640) to resize_h x resize_w (aspect kept, covering the image), then
    crop ``[top:top+height, left:left+width]``.
    """
    rows, cols = map_size
    if height / rows > width / cols:
        new_w = cols * height // rows
        return height, new_w, 0, (new_w - width) // 2
    new_h = rows * width // cols
    return new_h, width, (new_h - height) // 2, 0


# --------------------------------------------------------------------------------------------------------------
# Keras .h5 -> PyTorch
# --------------------------------------------------------------------------------------------------------------

# Array names inside each kind of Keras layer, in Keras' weight order.
KERAS_WEIGHTS = {
    "conv": ("kernel",),  # + "bias" when the torch conv has one
    "depthwise": ("depthwise_kernel",),
    "separable": ("depthwise_kernel", "pointwise_kernel"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
    "dense": ("kernel", "bias"),
}
RESIDUAL_CONV = "<conv2d #{}>"  # unnamed Keras layers, resolved by their auto-number (see load_keras_h5)
RESIDUAL_BN = "<batch_normalization #{}>"


@dataclass(frozen=True)
class KerasLayer:
    """One weighted Keras layer and the PyTorch module its arrays go to."""

    keras_name: str  # official layer name, or a RESIDUAL_* placeholder
    kind: str  # key of KERAS_WEIGHTS
    module: str  # dotted path in UMSI
    activation: str = "linear"  # the Keras layer's own activation (checked against model_config when present)

    def expected_keys(self, model: nn.Module) -> tuple[str, ...]:
        keys = KERAS_WEIGHTS[self.kind]
        if self.kind == "conv" and model.get_submodule(self.module).bias is not None:
            keys += ("bias",)
        return keys


def keras_layer_table() -> list[KerasLayer]:
    """Every weighted layer of the official Keras model, in build order, with its PyTorch module.

    Encoder (Keras applications names): ``block1_conv1``/``_bn``, ``block1_conv2``/``_bn``;
    ``block{2..13}_sepconv{i}`` (SeparableConv2D) and ``..._bn``; ``block14_sepconv{1,2}``/``_bn``; the residual
    projections of blocks 2, 3, 4, 13 (unnamed: ``<conv2d #k>``, ``<batch_normalization #k>``, k = 1..4).
    Head: ``aspp_csep0``, ``aspp0_BN``, ``aspp_csepd{6,12,18}_depthwise``/``_depthwise_BN``/``_pointwise``/
    ``_pointwise_BN``; ``global_conv``, ``global_BN``, ``global_dense``, ``out_classif``, ``dense_fusion``,
    ``concat_projection``, ``concat_projection_BN``, ``dec_c1`` ... ``dec_c5``, ``dec_c_out``.
    """
    t: list[KerasLayer] = [
        KerasLayer("block1_conv1", "conv", "encoder.block1_conv1"),
        KerasLayer("block1_conv1_bn", "bn", "encoder.block1_conv1_bn"),
        KerasLayer("block1_conv2", "conv", "encoder.block1_conv2"),
        KerasLayer("block1_conv2_bn", "bn", "encoder.block1_conv2_bn"),
    ]
    residual_blocks = {2: 1, 3: 2, 4: 3, 13: 4}  # block -> auto-number order of its projection
    for n, n_sep in [(2, 2), (3, 2), (4, 2)] + [(k, 3) for k in range(5, 13)] + [(13, 2)]:
        if n in residual_blocks:
            k = residual_blocks[n]
            t += [KerasLayer(RESIDUAL_CONV.format(k), "conv", f"encoder.block{n}.residual_conv"),
                  KerasLayer(RESIDUAL_BN.format(k), "bn", f"encoder.block{n}.residual_bn")]
        for i in range(1, n_sep + 1):
            t += [KerasLayer(f"block{n}_sepconv{i}", "separable", f"encoder.block{n}.sepconv{i}"),
                  KerasLayer(f"block{n}_sepconv{i}_bn", "bn", f"encoder.block{n}.sepconv{i}_bn")]
    for i in (1, 2):
        t += [KerasLayer(f"block14_sepconv{i}", "separable", f"encoder.block14_sepconv{i}"),
              KerasLayer(f"block14_sepconv{i}_bn", "bn", f"encoder.block14_sepconv{i}_bn")]
    t += [
        KerasLayer("global_conv", "conv", "global_net.conv"),
        KerasLayer("global_BN", "bn", "global_net.bn"),
        KerasLayer("global_dense", "dense", "global_net.dense"),
        KerasLayer("out_classif", "dense", "out_classif", "softmax"),
        KerasLayer("aspp_csep0", "conv", "aspp.conv0"),
        KerasLayer("aspp0_BN", "bn", "aspp.conv0_bn"),
    ]
    for j, rate in enumerate(ASPP.RATES):
        p = f"aspp_csepd{rate}"
        t += [KerasLayer(f"{p}_depthwise", "depthwise", f"aspp.branches.{j}.depthwise"),
              KerasLayer(f"{p}_depthwise_BN", "bn", f"aspp.branches.{j}.depthwise_bn"),
              KerasLayer(f"{p}_pointwise", "conv", f"aspp.branches.{j}.pointwise"),
              KerasLayer(f"{p}_pointwise_BN", "bn", f"aspp.branches.{j}.pointwise_bn")]
    t += [
        KerasLayer("dense_fusion", "dense", "dense_fusion"),
        KerasLayer("concat_projection", "conv", "concat_projection"),
        KerasLayer("concat_projection_BN", "bn", "concat_projection_bn"),
    ]
    t += [KerasLayer(f"dec_c{i}", "conv", f"decoder.c{i}", "relu") for i in range(1, 6)]
    t.append(KerasLayer("dec_c_out", "conv", "decoder.c_out", "relu"))
    return t


def _to_torch_layout(kind: str, key: str, array: np.ndarray) -> np.ndarray:
    """Keras array -> PyTorch layout: HWIO -> OIHW, depthwise HWC1 -> C1HW, Dense (in, out) -> (out, in)."""
    if key in ("kernel", "pointwise_kernel") and array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    if key == "depthwise_kernel":
        return array.transpose(2, 3, 0, 1)
    if kind == "dense" and key == "kernel":
        return array.T
    return array


def _torch_targets(module: nn.Module, kind: str) -> dict[str, Tensor]:
    """The PyTorch tensors each Keras array name of ``kind`` is written to."""
    if kind == "conv":
        return {"kernel": module.weight, "bias": module.bias}
    if kind == "depthwise":
        return {"depthwise_kernel": module.weight}
    if kind == "separable":
        return {"depthwise_kernel": module.depthwise.weight, "pointwise_kernel": module.pointwise.weight}
    if kind == "bn":
        return {"gamma": module.weight, "beta": module.bias, "moving_mean": module.running_mean,
                "moving_variance": module.running_var}
    if kind == "dense":
        return {"kernel": module.weight, "bias": module.bias}
    raise KeyError(kind)


def _decode(value: object) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _keras_layers(root: h5py.Group, path: Path) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(layer name, {array name: array}) of every layer group holding weights, in the file's layer order.

    Array names are the last component of each ``weight_names`` entry without ``:0`` (``'x/y/kernel:0'`` ->
    ``'kernel'``), so TF1 variable-name suffixes and scopes do not matter.
    """
    names = [_decode(n) for n in root.attrs["layer_names"]] if "layer_names" in root.attrs else list(root)
    for name in names:
        arrays: dict[str, np.ndarray] = {}
        try:
            group = root[name]
            for weight_name in (_decode(w) for w in group.attrs.get("weight_names", [])):
                key = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
                arrays[key] = np.asarray(group[weight_name])
        except KeyError as exc:
            raise ValueError(f"{path}: Keras layer '{name}' is listed but its arrays are missing ({exc})") from exc
        if arrays:
            yield name, arrays


def _auto_number(name: str, prefix: str) -> int | None:
    """Keras auto-name counter: ``conv2d`` -> 0, ``conv2d_3`` -> 3; None when ``name`` is not of that form."""
    m = re.fullmatch(re.escape(prefix) + r"(?:_(\d+))?", name)
    return None if m is None else int(m.group(1) or 0)


def _resolve_unnamed(layers: dict[str, dict[str, np.ndarray]], path: Path) -> dict[str, str]:
    """Map RESIDUAL_* placeholders to the file's auto-named layers, in auto-number order."""
    resolved: dict[str, str] = {}
    for placeholder, prefix in ((RESIDUAL_CONV, "conv2d"), (RESIDUAL_BN, "batch_normalization")):
        found = sorted((n, name) for name in layers if (n := _auto_number(name, prefix)) is not None)
        if len(found) != 4:
            raise ValueError(f"{path}: expected 4 unnamed '{prefix}_<n>' layers (the Xception residual "
                             f"projections of blocks 2, 3, 4, 13), found {[name for _, name in found]}")
        for k, (_, name) in enumerate(found, start=1):
            resolved[placeholder.format(k)] = name
    return resolved


def _layer_configs(h5: h5py.File) -> dict[str, dict]:
    """{layer name: Keras config} from a full-model file's ``model_config`` attribute (JSON; empty if absent)."""
    if "model_config" not in h5.attrs:
        return {}
    config = json.loads(_decode(h5.attrs["model_config"]))
    return {layer["config"]["name"]: layer for layer in config.get("config", {}).get("layers", [])}


def _check_config(spec: KerasLayer, name: str, config: dict, module: nn.Module, path: Path) -> None:
    """Compare a layer's saved Keras hyper-parameters with the PyTorch module (strides, dilation, epsilon...)."""
    cfg = config.get("config", {})
    expected: dict[str, object] = {}
    if spec.kind != "bn":
        expected["activation"] = spec.activation
    if isinstance(module, nn.BatchNorm2d):
        expected["epsilon"] = module.eps
    elif isinstance(module, nn.Conv2d):
        expected["strides"] = list(module.stride)
        expected["dilation_rate"] = list(module.dilation)
        expected["kernel_size"] = list(module.kernel_size)
        if module.kernel_size != (1, 1) or module.stride != (1, 1):  # 'same' == 'valid' for a 1x1 stride-1 conv
            expected["padding"] = getattr(module, "keras_padding", "same")
    elif isinstance(module, SeparableConv2d):
        expected.update(strides=[1, 1], dilation_rate=[1, 1], kernel_size=[3, 3], padding="same")
    for key, want in expected.items():
        if key in cfg and not _same_setting(cfg[key], want):
            raise ValueError(f"{path}: Keras layer '{name}' has {key}={cfg[key]!r}, this UMSI port uses {want!r}")


def _same_setting(got: object, want: object) -> bool:
    """Config equality: floats to 1e-6 relative, lists and tuples alike (JSON has no tuples)."""
    if isinstance(want, float):
        return isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-6)
    def as_list(value: object) -> object:
        return list(value) if isinstance(value, (list, tuple)) else value
    return as_list(got) == as_list(want)


def _check_upsampling(model: UMSI, configs: dict[str, dict], path: Path) -> None:
    """The decoder's saved ``UpSampling2D`` layers must be bilinear x2, x2, x4."""
    for i, name in enumerate(("dec_ups1", "dec_ups2", "dec_ups3"), start=1):
        cfg = configs.get(name, {}).get("config")
        if cfg is None:
            continue
        factor = getattr(model.decoder, f"ups{i}").factor
        if not _same_setting(cfg.get("size"), [factor, factor]) or cfg.get("interpolation", "nearest") != "bilinear":
            raise ValueError(f"{path}: Keras layer '{name}' is size={cfg.get('size')!r} "
                             f"interpolation={cfg.get('interpolation')!r}, expected [{factor}, {factor}] bilinear")


def load_keras_h5(model: UMSI, path: str | Path) -> None:
    """Load an official UMSI Keras ``.h5`` (full model or weights only) into ``model``, in place.

    Reads arrays with h5py only (no Keras, no deserialisation of code). Every layer of :func:`keras_layer_table`
    must be present with exactly the expected arrays and shapes, and every weighted layer of the file must be
    consumed; otherwise a ``ValueError`` names the file and the first offending layer. The four unnamed residual
    conv/BN pairs are taken in the order of their Keras auto-numbers (``conv2d[_k]``, ``batch_normalization[_k]``).
    When the file carries ``model_config``, saved activations, strides, dilations, kernel sizes, paddings, BatchNorm
    epsilons and the decoder's upsampling factors are checked too. Nothing is written unless everything matches.
    """
    import h5py

    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with h5:
        root = h5["model_weights"] if "model_weights" in h5 else h5
        layers = dict(_keras_layers(root, path))
        configs = _layer_configs(h5)
    if not layers:
        raise ValueError(f"{path}: no Keras layer weights found (expected a Keras 2 .h5 model or weights file)")
    resolved = _resolve_unnamed(layers, path)
    _check_upsampling(model, configs, path)

    staged: list[tuple[Tensor, np.ndarray]] = []
    used: set[str] = set()
    for spec in keras_layer_table():
        name = resolved.get(spec.keras_name, spec.keras_name)
        if name not in layers:
            raise ValueError(f"{path}: Keras layer '{name}' ({spec.kind} -> {spec.module}) is missing")
        arrays = layers[name]
        want = spec.expected_keys(model)
        if set(arrays) != set(want):
            raise ValueError(f"{path}: Keras layer '{name}' holds arrays {sorted(arrays)}, expected {list(want)}")
        module = model.get_submodule(spec.module)
        if name in configs:
            _check_config(spec, name, configs[name], module, path)
        targets = _torch_targets(module, spec.kind)
        for key in want:
            value = _to_torch_layout(spec.kind, key, arrays[key])
            target = targets[key]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{path}: Keras layer '{name}' array '{key}' has shape {arrays[key].shape}, "
                                 f"expected {_keras_shape(spec.kind, key, tuple(target.shape))} "
                                 f"(-> {spec.module}, {tuple(target.shape)})")
            staged.append((target, value))
        used.add(name)
    unused = [name for name in layers if name not in used]
    if unused:
        raise ValueError(f"{path}: Keras layer '{unused[0]}' has weights this UMSI port does not use "
                         f"({len(unused)} unused layer(s): {unused[:5]})")
    with torch.no_grad():
        for target, value in staged:
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype))


def _keras_shape(kind: str, key: str, torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The Keras shape that maps onto ``torch_shape`` (for error messages)."""
    if key in ("kernel", "pointwise_kernel") and len(torch_shape) == 4:
        o, i, h, w = torch_shape
        return (h, w, i, o)
    if key == "depthwise_kernel":
        c, m, h, w = torch_shape
        return (h, w, c, m)
    if kind == "dense" and key == "kernel":
        return torch_shape[::-1]
    return torch_shape


def torch_tensors_covered() -> set[str]:
    """State-dict keys written by :func:`load_keras_h5` (all of UMSI's but ``num_batches_tracked``)."""
    with torch.device("meta"):
        model = UMSI()
    names = {id(t): k for k, t in model.state_dict(keep_vars=True).items()}
    covered: set[str] = set()
    for spec in keras_layer_table():
        for key, tensor in _torch_targets(model.get_submodule(spec.module), spec.kind).items():
            if tensor is not None and key in spec.expected_keys(model):
                covered.add(names[id(tensor)])
    return covered
