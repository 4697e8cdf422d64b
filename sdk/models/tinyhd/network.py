"""TinyHD video saliency (Hu, Palazzo, Proietto Salanitri, Bellitto, Moradi, Spampinato, McGuinness, WACV 2023).

"TinyHD: Efficient Video Saliency Prediction with Heterogeneous Decoders using Hierarchical Maps Distillation".
Re-implementation of ``FastSalA`` from the public ``feiyanhu/tinyHD`` code (``src/models/fastsal3D/``,
``src/quick_start.py``), written from the paper and that code, not copied. Module names reproduce the official
state-dict keys exactly, so the official ``.pth`` files load with ``strict=True`` and no renaming
(:func:`salsdk.weights.unwrap_state_dict` only unwraps the ``{"student_model": state_dict}`` container and would
strip a ``module.`` prefix; the two public x1/4 files carry none).

Variants (:func:`build_tinyhd`)
    ``mode`` "S" (MISO, official config ``d123s``: decoders D1+D2+D3, all "single"; 16 frames -> 1 map) or
    "M" (MIMO, ``d123m``: D1 single, D2 and D3 "multi"; 16 frames -> 16 maps), at ``width`` 1.0, 0.5 or 0.25.
    The width is the official ``reduced_channel`` ``rc`` = 1, 2, 4 (``rc2`` / ``rc4`` in the checkpoint names;
    ``rc1T`` means "distilled from the x1 student as teacher assistant", it does not change the architecture).
    ``rc`` divides every encoder channel count (except the 3 RGB inputs) and selects the official per-width
    aggregator tables; the MIMO files are built by quick_start from ``eval_config_multi_rc.yaml``
    (``D1_LAST: False``), the MISO ones from ``eval_config_single.yaml``.

    =======  =========  ===========  ==========  =============  ===========  ===========================
    variant  params     paper (5a)   checkpoint  conv MACs      paper-style  paper GMACs (1a / 5a)
    =======  =========  ===========  ==========  =============  ===========  ===========================
    S x1     3,940,981  3.94M                    5,129,318,400  5.569 G      5.57 (x16 = 89.12)
    S x0.5   1,370,291  1.37M                    3,345,928,704  3.719 G      59.52 / 16 = 3.72
    S x0.25    513,121  513.1k       d123s_rc4   2,068,578,816  2.338 G      37.44 / 16 = 2.34
    M x1     3,922,405  3.92M                    7,220,714,496  7.952 G      7.95
    M x0.5   1,366,979  1.37M                    6,162,490,368  6.923 G      6.92
    M x0.25    515,281  515.3k       d123m_rc4   3,556,525,056  4.060 G      4.06
    =======  =========  ===========  ==========  =============  ===========  ===========================

    MACs are for one (1, 3, 16, 192, 256) clip, i.e. 1 map (S) or 16 maps (M). "conv MACs" is
    ``torch.utils.flop_counter.FlopCounterMode`` total flops / 2 (it counts convolutions only). The paper's counter
    (ptflops-style) also charges 2 per BatchNorm output element, 1 per ReLU6 output element, 1 per conv-bias and
    per interpolated output element; adding those ("paper-style") reproduces every Table 1a / 5a number.

Architecture
    * Encoder: torchvision MobileNetV2 ``features`` inflated to 3-D (every k x k conv becomes kt x k x k; by default
      kt = k, temporal stride = spatial stride, temporal padding = spatial padding), channels divided by ``rc``.
      Exceptions: block 2's depthwise conv keeps temporal stride 1; block 14's depthwise conv keeps temporal
      stride 1 (S) or has kernel 2 / padding 0 (M); blocks 15-17 use temporal kernel 1 in M. 16 frames ->
      8 (block 0), 4 (block 4), 2 (block 7), then 2 (S) or 1 (M) after block 14. Outputs of blocks 1..18 are used.
    * Feature fusion: the 18 outputs are concatenated into 5 groups (blocks 1 | 2-3 | 4-6 | 7-13 | 14-18), groups
      2-5 are pixel-shuffled x2 (per frame, channels / 4) and groups 1-2 concatenated, giving four maps ``x0..x3``
      of 28, 24, 136, 520 channels (x1; divided by ``rc``) at 1/2, 1/4, 1/8, 1/16 of the input size.
    * Aggregator: 37 MobileNetV2 inverted-residual blocks (expansion 2, no residual), inflated to 3-D with a
      temporal kernel/stride/padding per block; D1 (16 blocks: four 4-block branches, one map each, U-Net-like
      upsampling of x0..x3), D2 (8 blocks: a top-down FPN-like path) and D3 (13 blocks: a dense DLA-like
      aggregation), each followed by a sigmoid. Upsampling is per-frame pixel shuffle x2, or trilinear x2
      (``align_corners=True``) in space (reduced widths) or in time (MIMO decoders D2/D3).
    * Head (``decoder.decoder``): the 4 + 1 + 1 = 6 maps are concatenated (MIMO repeats the single-frame D1 maps
      16 times in time) and fused by a 1x1 conv (Conv2d for S, Conv3d for M) followed by a sigmoid.

Output (:meth:`TinyHD.forward`)
    The official model's first output, after its final sigmoid: values in (0, 1) — a per-frame probability-like
    map, not normalised to sum to one. S: (B, 1, 192, 256); M: (B, 1, 16, 192, 256), map t for input frame t.

Pre-processing of the official quick_start (``Video_reader``)
    Frames are decoded as uint8 RGB, scaled to [0, 1], normalised with ``TINYHD_MEAN`` / ``TINYHD_STD`` and
    resized to ``salsdk.models.tinyhd.zoo.TINYHD_SIZE`` = (192, 256) (rows, cols) with torchvision ``F.resize`` on the float tensor, i.e.
    bilinear, ``align_corners=False``, no antialias in the torchvision of that time, aspect ratio NOT kept.
    Clip tensor: (B, 3, T=16, 192, 256), frames in temporal order.

Video windowing of the official quick_start (``VideoClips`` with 16 frames / step 1 + ``EvalClipSampler``)
    * MISO (S): one window per start frame s = 0 .. N-16 (stride 1). The map of window [s, s+15] belongs to its
      LAST frame, s+15 (``idx[:, -1]``). The first 15 frames k = 0..14 are covered by ``padd_append``: window =
      frame 0 repeated (15 - k) times followed by frames 0..k (16 frames; i.e. the clip is left-padded by
      replicating the first frame) and its map belongs to frame k. (quick_start writes the frame-15 map to
      those 15 files by a slip — ``cv2.imwrite(file_name, img)`` instead of ``img_ext`` — whereas the evaluation
      script ``generate.py`` writes the padded-window maps; the latter is the intended convention.)
    * MIMO (M): blocks start at 0, 16, 32, ... (step 16), while start <= N-16; when (N-16) is not a multiple of
      16 one more block starts at N-16, overlapping the previous one, and its maps overwrite the overlapped
      frames (they are written later). Map t of a block starting at s belongs to frame s+t. No padding.
    * Videos shorter than 16 frames yield no window at all in quick_start (``VideoClips`` drops them); left-padding
      by replicating the first frame as above is the natural extension for both modes.
    * Frame ids are the container's presentation timestamps (``pts`` unit); for the AVI examples they equal the
      frame index.

Post-processing of the official code (``generate.post_process_png``), per map
    ``normalize_map`` (min-max to [0, 1]), ``* 255`` cast to uint8, ``cv2.resize`` to the original (W, H) with
    ``INTER_CUBIC``, ``cv2.GaussianBlur`` 5x5 with sigma 0 (OpenCV derives 1.1), clip to [0, 255].
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..mobilenetv2 import ResidualBlock
from .zoo import TINYHD_FRAMES

Mode = Literal["S", "M"]
WIDTH_TO_RC: dict[float, int] = {1.0: 1, 0.5: 2, 0.25: 4}  # width multiplier -> official ``reduced_channel``

# Temporal (kernel, stride, padding) of an inflated k x k conv; the spatial part is unchanged.
Temporal = tuple[int, int, int]
T_DOWN: Temporal = (3, 2, 1)  # 3 taps, halves the frame count
T_KEEP: Temporal = (3, 1, 1)  # 3 taps, keeps the frame count
T_ONE: Temporal = (1, 1, 0)  # one tap: a per-frame 2-D conv
T_PAIR: Temporal = (2, 1, 0)  # 2 taps, no padding: 2 frames -> 1
_CODE: dict[str, Temporal] = {"D": T_DOWN, "K": T_KEEP, "1": T_ONE}

# MobileNetV2 blocks 1-17: (input channels, output channels, spatial stride, expansion) at x1.
_MBV2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (32, 16, 1, 1),
    (16, 24, 2, 6), (24, 24, 1, 6),
    (24, 32, 2, 6), (32, 32, 1, 6), (32, 32, 1, 6),
    (32, 64, 2, 6), (64, 64, 1, 6), (64, 64, 1, 6), (64, 64, 1, 6),
    (64, 96, 1, 6), (96, 96, 1, 6), (96, 96, 1, 6),
    (96, 160, 2, 6), (160, 160, 1, 6), (160, 160, 1, 6),
    (160, 320, 1, 6),
)
_STEM, _LAST = 32, 1280
# Blocks whose output joins each fusion group (block 0, the stem, is not used).
_GROUPS: tuple[tuple[int, ...], ...] = ((1,), (2, 3), (4, 5, 6), (7, 8, 9, 10, 11, 12, 13), (14, 15, 16, 17, 18))

# Aggregator temporal configs, one letter per block, D1 (16) | D2 (8) | D3 (13); D = T_DOWN, K = T_KEEP, 1 = T_ONE.
# S uses the "single" table for all three decoders; M uses the 3-D table for its single-frame D1 and T_KEEP
# everywhere in its multi-frame D2 and D3.
_AGG_TEMPORAL: dict[str, str] = {
    "S": "D1DD" "D1D1" "D111" "D111" + "11D1DDDD" + "DD111DDDDDDD1",
    "M": "DKDD" "DKDK" "DKKK" "KKKK" + "K" * 8 + "K" * 13,
}


def _inflated_conv(cin: int, cout: int, kernel: int, stride: int, temporal: Temporal, groups: int = 1) -> nn.Conv3d:
    """A 2-D ``kernel`` x ``kernel`` conv (no bias, 'same' spatial padding) inflated with ``temporal``."""
    kt, st, pt = temporal
    pad = (kernel - 1) // 2
    return nn.Conv3d(cin, cout, (kt, kernel, kernel), (st, stride, stride), (pt, pad, pad), groups=groups, bias=False)


class ConvBNReLU6(nn.Sequential):
    """Inflated conv -> BatchNorm3d -> ReLU6 (torchvision's ``Conv2dNormActivation``; keys ``0``, ``1``)."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: int = 1, temporal: Temporal = T_KEEP, groups: int = 1
    ) -> None:
        super().__init__(
            _inflated_conv(cin, cout, kernel, stride, temporal, groups),
            nn.BatchNorm3d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual3d(ResidualBlock):
    """MobileNetV2 block inflated to 3-D: [1x1x1 expand] -> depthwise (``temporal`` x 3 x 3) -> 1x1x1 project.

    Keys follow torchvision (``conv.0.0.weight``, ..., ``conv.3.bias``). The 1x1 convs are one-tap in time; only
    the depthwise conv sees neighbouring frames. ``residual`` adds the input (encoder blocks with stride 1 and
    equal widths; never in the aggregator).
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int, temporal: Temporal, residual: bool) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1, temporal=T_ONE))
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride, temporal, groups=hidden),
            nn.Conv3d(hidden, cout, 1, bias=False),
            nn.BatchNorm3d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = residual


def _encoder_dw_temporal(block: int, mode: Mode) -> Temporal:
    """Temporal config of the depthwise conv of MobileNetV2 block ``block`` (1..17)."""
    stride = _MBV2_BLOCKS[block - 1][2]
    if block == 14:
        return T_PAIR if mode == "M" else T_KEEP
    if block in (15, 16, 17) and mode == "M":
        return T_ONE
    if block == 2:
        return T_KEEP  # spatial stride 2, temporal stride 1
    return (3, stride, 1)  # default inflation: temporal stride = spatial stride


class TinyHDEncoder(nn.Module):
    """3-D MobileNetV2 (19 blocks in ``encoder``) returning the outputs of blocks 1..18."""

    def __init__(self, mode: Mode, rc: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ConvBNReLU6(3, _STEM // rc, 3, 2, T_DOWN)]
        for i, (cin, cout, stride, expand) in enumerate(_MBV2_BLOCKS, start=1):
            residual = stride == 1 and cin == cout
            blocks.append(
                InvertedResidual3d(cin // rc, cout // rc, stride, expand, _encoder_dw_temporal(i, mode), residual)
            )
        blocks.append(ConvBNReLU6(_MBV2_BLOCKS[-1][1] // rc, _LAST // rc, kernel=1, temporal=T_ONE))
        self.encoder = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i >= 1:
                features.append(x)
        return features


class ClipOps:
    """The layout-dependent steps of TinyHD's forward, on native (N, C, T, H, W) clips.

    The aggregator and the head call only these (plus convolutions, which the modules hold), so the same
    topology code also runs on clips folded to (N*T, C, H, W) frames: see
    :class:`salsdk.models.tinyhd.framewise.FramewiseOps`, used by the mobile export graph.
    """

    def shuffle_up(self, x: Tensor) -> Tensor:
        """Per-frame pixel shuffle x2: (N, C, T, H, W) -> (N, C/4, T, 2H, 2W)."""
        n, c, t, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        x = F.pixel_shuffle(x, 2)
        return x.view(n, t, c // 4, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)

    def time_up(self, x: Tensor) -> Tensor:
        """Trilinear x2 in time (``align_corners=True``), space unchanged."""
        return F.interpolate(x, scale_factor=(2.0, 1.0, 1.0), mode="trilinear", align_corners=True)

    def space_up(self, x: Tensor) -> Tensor:
        """Trilinear x2 in space (``align_corners=True``), time unchanged."""
        return F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="trilinear", align_corners=True)

    def space_time_up(self, x: Tensor, space_up: Callable[[Tensor], Tensor]) -> Tensor:
        """``time_up(space_up(x))``: TinyHD-M's up-sampling steps in D2/D3, in the reference's order.

        Both are linear along their own axes, so they commute; a layout may run them in the cheaper order.
        """
        return self.time_up(space_up(x))

    def cat(self, tensors: Sequence[Tensor]) -> Tensor:
        """Concatenation along channels."""
        return torch.cat(list(tensors), dim=1)

    def drop_time(self, x: Tensor) -> Tensor:
        """A single-frame clip (N, C, 1, H, W) -> its frame (N, C, H, W)."""
        return x.squeeze(2)

    def repeat_time(self, x: Tensor, frames: int) -> Tensor:
        """A single-frame clip (N, C, 1, H, W) repeated ``frames`` times in time."""
        return x.repeat(1, 1, frames, 1, 1)


NATIVE = ClipOps()


def _fused_channels(rc: int) -> tuple[int, int, int, int]:
    """Channels of the fused maps x0..x3 (see :meth:`TinyHDAggregator.fuse`)."""
    outs = [_MBV2_BLOCKS[i - 1][1] // rc for i in range(1, 18)] + [_LAST // rc]
    group = [sum(outs[i - 1] for i in g) for g in _GROUPS]
    return group[0] + group[1] // 4, group[2] // 4, group[3] // 4, group[4] // 4


def aggregator_channels(rc: int) -> list[tuple[int, int]]:
    """(input, output) channels of the 37 aggregator blocks (the official ``inv_config_{rc}`` tables).

    Where a map is upsampled by pixel shuffle its channels drop by 4 before the next block; the reduced widths
    upsample some maps trilinearly instead (D1's last branch at x1/4 only; D2's last step and D3's inputs at
    x1/2 and x1/4), which keeps the channels. D1's hidden widths do not depend on ``rc``.
    """
    c0, c1, c2, c3 = _fused_channels(rc)
    shuf = rc == 1  # D2 last step and D3 inputs: pixel shuffle at x1, trilinear at reduced widths

    def u(c: int) -> int:
        return c // 4 if shuf else c

    d1_last_in = c3 if rc == 4 else c3 // 4
    d1 = [(c0, 24), (24, 48), (12, 24), (24, 1),
          (c1, 56), (14, 56), (14, 28), (28, 1),
          (c2, 56), (14, 56), (14, 56), (14, 1),
          (d1_last_in, 136), (34, 136), (34, 136), (34, 1)]
    d2 = [(c3, 4 * c2), (c2, 4 * c1), (c1, c1), (c1, 4 * c0), (c0, c0), (c0, c0), (c0, c0), (u(c0), 1)]
    d3 = [(c0, u(c1)), (c1, u(c2)), (c2, u(c3)),
          (u(c1), 8), (u(c2), 32), (u(c3), 128),
          (u(c0), 2), (u(c1), 8), (u(c2), 32),
          (2, 2), (8, 8), (2, 2), (2, 1)]  # fmt: skip
    return d1 + d2 + d3


class TinyHDAggregator(nn.Module):
    """Feature fusion + the three heterogeneous decoders D1, D2, D3 (blocks ``aggregate_adapter.0..36``).

    :meth:`forward` returns the three sigmoid maps: D1 (B, 4, 1, H, W) and, for S, D2/D3 (B, 1, 1, H, W); for M,
    D2/D3 are (B, 1, 16, H, W).
    """

    def __init__(self, mode: Mode, rc: int) -> None:
        super().__init__()
        self.rc = rc
        self.multi = mode == "M"  # D2 and D3 run in MIMO mode (upsample time back to 16 frames)
        temporal = [_CODE[ch] for ch in _AGG_TEMPORAL[mode]]
        self.aggregate_adapter = nn.ModuleList(
            InvertedResidual3d(cin, cout, 1, 2, tc, residual=False)
            for (cin, cout), tc in zip(aggregator_channels(rc), temporal, strict=True)
        )

    @staticmethod
    def fuse(features: Sequence[Tensor], ops: ClipOps = NATIVE) -> list[Tensor]:
        """Blocks 1..18 -> x0 (1/2 size), x1 (1/4), x2 (1/8), x3 (1/16), each the concatenation of a group."""
        groups, start = [], 0
        for g in _GROUPS:
            groups.append(ops.cat(features[start : start + len(g)]))
            start += len(g)
        up = [ops.shuffle_up(g) for g in groups[1:]]
        return [ops.cat([groups[0], up[0]]), up[1], up[2], up[3]]

    def decoder1(self, x: Sequence[Tensor], ops: ClipOps) -> Tensor:
        """Four single-frame branches, one per fused map, each upsampled to full size; 4 maps."""
        m, shuffle_up = self.aggregate_adapter[0:16], ops.shuffle_up
        y0 = shuffle_up(m[1](m[0](x[0])))
        y0 = m[3](m[2](y0))
        y1 = shuffle_up(m[4](x[1]))
        y1 = shuffle_up(m[5](y1))
        y1 = m[7](m[6](y1))
        y2 = x[2]
        for blk in m[8:11]:
            y2 = shuffle_up(blk(y2))
        y2 = m[11](y2)
        y3 = ops.space_up(x[3]) if self.rc == 4 else shuffle_up(x[3])
        y3 = m[12](y3)
        for blk in m[13:16]:
            y3 = blk(shuffle_up(y3))
        return ops.cat([y0, y1, y2, y3])

    def decoder2(self, x: Sequence[Tensor], ops: ClipOps) -> Tensor:
        """Top-down path from x3 with lateral additions of x2, x1, x0; 1 map."""
        m, up = self.aggregate_adapter[16:24], self._upsampler(ops)
        y = up(m[0](x[3]), ops.shuffle_up) + x[2]
        y = up(m[1](y), ops.shuffle_up) + m[2](x[1])
        y = up(m[3](y), ops.shuffle_up) + m[5](m[4](x[0]))
        return m[7](up(m[6](y), ops.shuffle_up if self.rc == 1 else ops.space_up))

    def decoder3(self, x: Sequence[Tensor], ops: ClipOps) -> Tensor:
        """Dense (DLA-like) aggregation: three rounds of upsample-and-add between neighbouring levels; 1 map."""
        m, up, shuffle_up = self.aggregate_adapter[24:37], self._upsampler(ops), ops.shuffle_up
        first_up = shuffle_up if self.rc == 1 else ops.space_up
        l1 = [up(y, first_up) for y in x]
        l1[1:] = [y + blk(z) for y, blk, z in zip(l1[1:], m[0:3], x[:-1])]
        l2 = [up(blk(y), shuffle_up) + lat(z) for blk, y, lat, z in zip(m[3:6], l1[1:], m[6:9], l1[:-1])]
        l3 = [up(y, shuffle_up) + lat(z) for y, lat, z in zip(l2[1:], m[9:11], l2[:-1])]
        l4 = up(l3[1], shuffle_up) + m[11](l3[0])
        return m[12](l4)

    def _upsampler(self, ops: ClipOps) -> Callable[[Tensor, Callable[[Tensor], Tensor]], Tensor]:
        """The up-sampling step of D2/D3: ``up(x, space_up)`` is x2 in space, and also x2 in time for MIMO."""
        if self.multi:
            return ops.space_time_up
        return lambda x, space_up: space_up(x)

    def forward(self, features: Sequence[Tensor], ops: ClipOps = NATIVE) -> list[Tensor]:
        x = self.fuse(features, ops)
        return [torch.sigmoid(d(x, ops)) for d in (self.decoder1, self.decoder2, self.decoder3)]


class TinyHDHead(nn.Module):
    """Fusion of the 6 decoder maps: 1x1 conv (``decoder.0``, with bias) -> sigmoid."""

    def __init__(self, mode: Mode, frames: int = TINYHD_FRAMES) -> None:
        super().__init__()
        conv = nn.Conv2d(6, 1, 1) if mode == "S" else nn.Conv3d(6, 1, 1)
        self.decoder = nn.Sequential(conv, nn.Sigmoid())
        self.mode = mode
        self.frames = frames

    def forward(self, maps: Sequence[Tensor], ops: ClipOps = NATIVE) -> Tensor:
        if self.mode == "S":
            return self.decoder(ops.drop_time(ops.cat(maps)))
        d1, d2, d3 = maps  # D1 is single-frame: repeat it over the output frames
        return self.decoder(ops.cat([ops.repeat_time(d1, self.frames), d2, d3]))


class TinyHD(nn.Module):
    """TinyHD-S (MISO) or TinyHD-M (MIMO) at width ``1 / rc``; see the module docstring.

    Input: (B, 3, 16, H, W) RGB clip normalised with ``TINYHD_MEAN`` / ``TINYHD_STD``, H and W multiples of 32
    (official 192 x 256), frames in temporal order. Output (:meth:`forward`): after a sigmoid, values in (0, 1);
    S -> (B, 1, H, W), the map of the clip's last frame; M -> (B, 1, 16, H, W), map t for frame t.
    """

    def __init__(self, mode: Mode = "S", width: float = 1.0) -> None:
        super().__init__()
        if mode not in ("S", "M"):
            raise ValueError(f"TinyHD mode must be 'S' or 'M', got {mode!r}")
        if width not in WIDTH_TO_RC:
            raise ValueError(f"TinyHD width must be one of {sorted(WIDTH_TO_RC)}, got {width!r}")
        self.mode: Mode = mode
        self.width = float(width)
        rc = WIDTH_TO_RC[width]
        self.encoder = TinyHDEncoder(mode, rc)
        self.aggregator = TinyHDAggregator(mode, rc)
        self.decoder = TinyHDHead(mode)

    def forward_with_maps(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Final map plus the three decoders' sigmoid maps (the official model's second output)."""
        if not (torch.jit.is_tracing() or torch.jit.is_scripting()):
            _check_input(x)
        maps = self.aggregator(self.encoder(x))
        return self.decoder(maps), maps

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_maps(x)[0]


def _check_input(x: Tensor) -> None:
    if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] != TINYHD_FRAMES:
        raise ValueError(f"TinyHD expects a (B, 3, {TINYHD_FRAMES}, H, W) clip, got {tuple(x.shape)}")
    if x.shape[3] % 32 or x.shape[4] % 32:
        raise ValueError(f"TinyHD needs H and W divisible by 32, got {tuple(x.shape[3:])}")


def build_tinyhd(mode: str, width: float) -> TinyHD:
    """TinyHD variant ``mode`` ("S" MISO or "M" MIMO) at channel ``width`` 1.0, 0.5 or 0.25 (random init)."""
    return TinyHD(mode.upper(), width)  # type: ignore[arg-type]
