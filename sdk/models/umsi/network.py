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

Pre-processing (letterbox to 240x320 with the official ``padding()`` rule, BGR minus the Caffe means) and
post-processing (the official ``postprocess_predictions`` un-crop) are the SDK's own ``letterbox`` steps
(:mod:`salsdk.geometry`, :mod:`salsdk.preprocess`, :mod:`salsdk.postprocess`); the card is in
:mod:`salsdk.models.umsi.zoo`, the official Keras checkpoint reader in :mod:`salsdk.models.umsi.checkpoint`.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .zoo import UMSI_NUM_CLASSES

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
        # tiled over the grid by a broadcasting multiply with ones (exact): litert-torch writes ``expand`` as a
        # BROADCAST_TO whose shape stays channels-first while its input became channels-last, which LiteRT refuses
        grid = pyramid.new_ones(1, 1, *pyramid.shape[-2:])
        fusion = self.dense_fusion(global_features)[:, :, None, None] * grid
        x = torch.cat([pyramid, fusion], dim=1)
        x = F.relu(self.concat_projection_bn(self.concat_projection(x)))
        return self.decoder(x), class_probs


def build_umsi(num_classes: int = UMSI_NUM_CLASSES, upsampling: Upsampling = "tf1") -> UMSI:
    """A randomly initialised UMSI in eval mode (official weights: :func:`salsdk.models.umsi.checkpoint.load_keras_h5`)."""
    return UMSI(num_classes=num_classes, upsampling=upsampling).eval()
