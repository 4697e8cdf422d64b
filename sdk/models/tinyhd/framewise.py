"""TinyHD without 3-D convolutions: the same function on clips folded to frames, for mobile export.

TFLite's ``CONV_3D`` has no groups, so onnx2tf splits each depthwise 3-D convolution of TinyHD into one
convolution per channel (thousands of ops that no delegate accelerates). :func:`framewise_tinyhd` re-expresses a
:class:`~salsdk.models.tinyhd.network.TinyHD` — weights and all — as a network of 2-D operations only:

* the clip (N, C, T, H, W) is folded to a batch of frames (N*T, C, H, W) once, at the input;
* a 3-D convolution with temporal kernel ``kt``, stride ``st`` and padding ``pt`` becomes ``kt`` 2-D convolutions
  (depthwise stays depthwise), one per temporal tap ``j``: tap ``j`` of output frame ``t`` reads input frame
  ``t*st - pt + j``; each tap runs only on the frames it reads (a frame slice) and the taps are summed: the
  partial ones (which miss frames at the clip's ends) over the union of their frame ranges by slices and
  concatenations of the batch axis, then added to one that covers every frame, so each layer ends in an ADD
  that converters fuse with the ReLU6 after it (zero-padding the batch axis instead costs litert-torch a
  TRANSPOSE on each side of every pad: 207 TRANSPOSEs in TinyHD-S x1/4 against 91, all in pixel shuffles).
  One-tap kernels ((1,1,1), (1,k,k)) are a single 2-D convolution on all frames; a tap that only ever reads
  padding is dropped. A full (not depthwise) convolution with several taps (TinyHD's 3x3x3 stem) is instead one
  2-D convolution over its taps' frames stacked as channels, one per run of output frames that read the same
  taps (the stem's first output frame reads two: a 6-channel convolution on one frame, then 9 channels on seven):
  XNNPACK's int8 kernels run one convolution on 9 channels about as fast as one on 3 (TinyHD-S x1/4 int8
  57.5 -> 53.9 ms, fp32 unchanged). No zero frames: litert-torch would store one as a constant;
* the BatchNorm that follows each convolution is folded into its weights (eval-mode statistics);
* per-frame pixel shuffle is ``pixel_shuffle`` on the frames, x2 trilinear up-sampling in space is bilinear
  (``align_corners=True``) per frame, and x2 trilinear up-sampling in time is a bilinear resize of the tensor
  transposed so that time is a spatial axis; where TinyHD-M up-samples in space and then in time, the frames are
  blended first, on 4x fewer pixels (the two steps commute);
* strided frame selections are built from one-frame slices, and long concatenations as trees of short ones, the
  forms the XNNPACK delegate accepts;
* TinyHD-M's full-resolution blocks with 4 hidden channels on 16 frames (aggregator 33, 35, 36) run with each
  clip's frames beside its channels, (N, T*C, H, W): see :class:`FramesAsChannelsBlock` (int8 164.8 -> 136.1 ms,
  fp32 239.7 -> 217.5 ms per clip side by side);
* where an aggregator block's output feeds only the next block, directly or through a pixel shuffle (D1's four
  branches, D2's m[4] -> m[5]: :data:`POINTWISE_CHAINS`), the first block's 1x1 project and the second's 1x1 expand
  are one 1x1 convolution (:func:`merge_pointwise_pair`): 13 convolutions and bottleneck tensors fewer, at about
  the same MACs (TinyHD-S x1/4 int8 54.2 -> 50.1 ms side by side, fp32 unchanged);
* the MIMO head applies the D1 part of its 1x1 fusion conv once per clip instead of to 16 copies of D1's maps,
  and its output (N*16, 1, H, W) is reshaped back to (N, 1, 16, H, W).

Exact up to float rounding (tested for all six variants with and without the official weights). The frame count
of every layer is fixed by the 16-frame input, so each layer knows its own; with batch 1 (the exported shape)
frame selection is plain slicing on the batch axis, so the exported graph holds no 5-D tensor after the input.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .network import ClipOps, InvertedResidual3d, TinyHD, _check_input
from .zoo import TINYHD_FRAMES

MAX_CONCAT = 4  # inputs per concatenation that the XNNPACK delegate accepts (it rejects 7)
# depthwise channels that fill at most a quarter of the 16 XNNPACK's depthwise kernels take per pixel at the cost of
# one (int8 and fp32, AVX-512): blocks with so few put their frames beside their channels (FramesAsChannelsBlock)
FEW_CHANNELS = 4

def _select(x: Tensor, batch: int, frames: int, index: slice) -> Tensor:
    """Frames ``index`` of every clip of ``x`` (``batch`` clips of ``frames`` frames, folded to (N*T, C, H, W)).

    With batch 1 a strided selection is made of one-frame slices and concatenations: XNNPACK does not take
    strided slices, and takes concatenations of at most :data:`MAX_CONCAT` inputs.
    """
    if batch == 1:
        if index.step in (None, 1) or len(range(frames)[index]) == 1:
            picked = range(frames)[index]
            return x[picked.start : picked.start + len(picked)]
        return concat([x[i : i + 1] for i in range(frames)[index]], dim=0)
    clips = x.reshape(batch, frames, *x.shape[1:])
    return clips[:, index].reshape(-1, *x.shape[1:])


def concat(tensors: Sequence[Tensor], dim: int) -> Tensor:
    """``torch.cat`` as a tree of concatenations of at most :data:`MAX_CONCAT` inputs each."""
    parts = list(tensors)
    while len(parts) > MAX_CONCAT:
        parts = [torch.cat(parts[i : i + MAX_CONCAT], dim) if len(parts[i : i + MAX_CONCAT]) > 1 else parts[i]
                 for i in range(0, len(parts), MAX_CONCAT)]
    return torch.cat(parts, dim) if len(parts) > 1 else parts[0]


def _pad_frames(x: Tensor, batch: int, before: int, after: int) -> Tensor:
    """Zero frames added before and after each clip of ``x``."""
    if before == after == 0:
        return x
    if batch == 1:  # a pad of the batch axis: no zero frames stored as constants in the exported file
        return F.pad(x, (0, 0, 0, 0, 0, 0, before, after))
    clips = x.reshape(batch, -1, *x.shape[1:])
    parts = [clips.new_zeros(batch, before, *x.shape[1:]), clips, clips.new_zeros(batch, after, *x.shape[1:])]
    padded = torch.cat([p for p in parts if p.shape[1]], dim=1)
    return padded.reshape(-1, *x.shape[1:])


def _sum_frame_ranges(a: Tensor, a_first: int, b: Tensor, b_first: int) -> tuple[Tensor, int] | None:
    """``a`` (frames ``a_first, ...`` of one clip) plus ``b`` (frames ``b_first, ...``) over the union of their
    frame ranges, and its first frame; None if the ranges leave a gap between them. Slices and concatenations of
    the batch axis, which litert-torch keeps channels-last (a zero-pad of that axis, :func:`_pad_frames`, costs it
    a TRANSPOSE on each side)."""
    if b_first < a_first:
        a, a_first, b, b_first = b, b_first, a, a_first
    a_end, b_end = a_first + a.shape[0], b_first + b.shape[0]
    if b_first > a_end:
        return None
    lo, hi = b_first - a_first, min(a_end, b_end) - a_first  # the overlap, in frames of a
    parts = [a[:lo], a[lo:hi] + b[: hi - lo], a[hi:] if a_end > b_end else b[hi - lo :]]
    return concat([p for p in parts if p.shape[0]], dim=0), a_first


def fold_batchnorm(conv: nn.Conv3d, norm: nn.BatchNorm3d | None) -> tuple[Tensor, Tensor | None]:
    """Weights and bias of ``norm(conv(x))`` as one convolution (eval-mode statistics)."""
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else None
    if norm is None:
        return weight, bias
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias.detach() - norm.running_mean * scale
    if bias is not None:
        shift = shift + bias * scale
    return weight * scale.view(-1, 1, 1, 1, 1), shift


class FramewiseConv3d(nn.Module):
    """A ``Conv3d`` (with its BatchNorm folded in) on folded clips: one ``Conv2d`` per temporal tap, or for a full
    convolution with several taps ``stacked`` ``Conv2d`` over the taps' frames stacked as channels (``ranges``).

    ``frames_in`` is the fixed number of frames per clip this layer receives; ``placements[i]`` says which output
    frames tap ``taps[i]`` produces: ``(first_out, count, first_in)``, reading input frames
    ``first_in, first_in + st, ...``; a tap that covers every output frame comes first and carries the bias
    (else the bias is added after the sum), so that converters fuse it into that convolution.
    """

    def __init__(self, conv: nn.Conv3d, norm: nn.BatchNorm3d | None, frames_in: int) -> None:
        super().__init__()
        kt, st, pt = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        if conv.dilation[0] != 1 or isinstance(conv.padding, str):
            raise ValueError(f"FramewiseConv3d needs temporal dilation 1 and numeric padding, got {conv}")
        weight, bias = fold_batchnorm(conv, norm)
        self.frames_in, self.stride, self.padding = frames_in, st, pt
        self.frames_out = (frames_in + 2 * pt - kt) // st + 1
        self.placements: list[tuple[int, int, int]] = []
        self.ranges: list[tuple[int, int, list[int]]] = []  # stacked taps: (first output frame, count, taps read)
        self.stacked, self.taps, self.bias_tap, self.bias = nn.ModuleList(), nn.ModuleList(), None, None
        if conv.groups == 1 and kt > 1:
            self._stack_taps(conv, weight, bias)
            return
        for j in range(kt):
            valid = [t for t in range(self.frames_out) if 0 <= t * st - pt + j < frames_in]
            if valid:  # else this tap only ever reads the zero padding
                self.placements.append((valid[0], len(valid), valid[0] * st - pt + j))
        full = [i for i, (_, count, _) in enumerate(self.placements) if count == self.frames_out]
        if full:  # the sum starts from a tap that covers every output frame; the others are added to frame ranges
            self.placements.insert(0, self.placements.pop(full[0]))
        self.bias_tap = 0 if full and bias is not None else None
        for i, (first_out, _, first_in) in enumerate(self.placements):
            tap = _conv2d(conv, conv.in_channels, weight[:, :, first_in - first_out * st + pt],
                          bias if i == self.bias_tap else None)
            self.taps.append(tap)
        if bias is not None and self.bias_tap is None:
            self.bias = nn.Parameter(bias, requires_grad=False)

    def _stack_taps(self, conv: nn.Conv3d, weight: Tensor, bias: Tensor | None) -> None:
        """A full convolution: for each run of output frames that read the same taps (the clip's ends miss the
        taps that would read padding), one ``Conv2d`` over those taps' frames stacked as channels."""
        kt, st, pt = conv.kernel_size[0], self.stride, self.padding
        for t in range(self.frames_out):
            taps = [j for j in range(kt) if 0 <= t * st - pt + j < self.frames_in]
            if self.ranges and self.ranges[-1][2] == taps:
                first, count, _ = self.ranges[-1]
                self.ranges[-1] = (first, count + 1, taps)
            else:
                self.ranges.append((t, 1, taps))
        for _, _, taps in self.ranges:
            stacked = torch.cat([weight[:, :, j] for j in taps], dim=1)
            self.stacked.append(_conv2d(conv, conv.in_channels * len(taps), stacked, bias))

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0] // self.frames_in
        if self.ranges:
            parts = []
            for layer, (first, count, taps) in zip(self.stacked, self.ranges):
                start = first * self.stride - self.padding
                reads = [self._frames(x, batch, start + j, count) for j in taps]
                parts.append(layer(torch.cat(reads, dim=1) if len(reads) > 1 else reads[0]))
            return _cat_frames(parts, batch)
        out: Tensor | None = None
        rest: tuple[Tensor, int] | None = None  # with one clip: the sum of the taps after the first, from a frame
        for tap, (first_out, count, first_in) in zip(self.taps, self.placements):
            y = tap(self._frames(x, batch, first_in, count))
            if out is not None and batch == 1:
                merged = _sum_frame_ranges(*rest, y, first_out) if rest else (y, first_out)
                if merged is None:  # a gap between the frame ranges: add what is summed so far
                    out, merged = _sum_frame_ranges(out, 0, *rest)[0], (y, first_out)
                rest = merged
            else:
                y = _pad_frames(y, batch, first_out, self.frames_out - first_out - count)
                out = y if out is None else out + y
        assert out is not None
        if rest is not None:  # a whole-clip sum ends in an ADD, which converters fuse with the ReLU6 after it
            out = out + rest[0] if rest[0].shape[0] == self.frames_out else _sum_frame_ranges(out, 0, *rest)[0]
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def _frames(self, x: Tensor, batch: int, first: int, count: int) -> Tensor:
        """Input frames ``first, first + stride, ...`` (``count`` of them) of every clip."""
        if first == 0 and count == self.frames_in and self.stride == 1:
            return x
        return _select(x, batch, self.frames_in, slice(first, first + self.stride * (count - 1) + 1, self.stride))


def _conv2d(like: nn.Conv3d, in_channels: int, weight: Tensor, bias: Tensor | None) -> nn.Conv2d:
    """A ``Conv2d`` with the spatial geometry of ``like`` holding ``weight`` and ``bias``."""
    conv = nn.Conv2d(in_channels, like.out_channels, like.kernel_size[1:], like.stride[1:], like.padding[1:],
                     like.dilation[1:], like.groups, bias=bias is not None)
    conv.weight.data.copy_(weight)
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


def _cat_frames(parts: Sequence[Tensor], batch: int) -> Tensor:
    """Runs of consecutive frames of every clip, in order, joined into whole clips."""
    if len(parts) == 1:
        return parts[0]
    if batch == 1:
        return concat(parts, dim=0)
    clips = [p.reshape(batch, -1, *p.shape[1:]) for p in parts]
    return torch.cat(clips, dim=1).reshape(-1, *parts[0].shape[1:])


class FramesAsChannelsBlock(nn.Module):
    """An aggregator block (1x1x1 expand, depthwise 3x3x3 keeping the frame count, 1x1x1 project) on few channels,
    run with each clip's frames beside its channels: (N*T, C, H, W) read as (N, T*C, H, W), a free view here.

    XNNPACK's depthwise kernels cost the same per pixel for 4 channels as for 16, so TinyHD-M's full-resolution
    blocks with 4 hidden channels on 16 frames ran at a quarter of their lanes. Here the 1x1 convolutions are
    block-diagonal over the frames (``kron(I_T, W)``), the depthwise taps run on all T*C channels at once (their
    weights repeated per frame), and the temporal sum shifts channels by one frame's worth: output frame ``t``
    adds tap 0 of frame ``t-1``, tap 1 of ``t`` and tap 2 of ``t+1``, the clip's first and last frames missing
    the tap that would read padding. Exact to float rounding; TinyHD-M x1/4 int8, one such block 16.0 -> 8.7 ms.
    """

    def __init__(self, block: nn.Module, frames: int) -> None:
        super().__init__()
        expand, depthwise, project, project_norm = block.conv
        e, e_bias = fold_batchnorm(expand[0], expand[1])
        d, d_bias = fold_batchnorm(depthwise[0], depthwise[1])
        p, p_bias = fold_batchnorm(project, project_norm)
        self.frames, self.hidden, self.out_channels = frames, e.shape[0], p.shape[0]
        self.expand = _block_diagonal(e[:, :, 0, 0, 0], e_bias, frames)
        self.taps = nn.ModuleList()
        lanes = frames * self.hidden
        for j in range(3):
            tap = nn.Conv2d(lanes, lanes, 3, 1, 1, groups=lanes, bias=j == 1 and d_bias is not None)
            tap.weight.data.copy_(d[:, :, j].repeat(frames, 1, 1, 1))
            if tap.bias is not None:
                tap.bias.data.copy_(d_bias.repeat(frames))
            self.taps.append(tap)
        self.project = _block_diagonal(p[:, :, 0, 0, 0], p_bias, frames)

    @staticmethod
    def applies(block: nn.Module, frames: int) -> bool:
        """Whether ``block`` (receiving ``frames`` frames per clip) has this form and few enough channels."""
        if not isinstance(block, InvertedResidual3d) or block.use_residual or len(block.conv) != 4:
            return False
        depthwise = block.conv[1][0]
        return (frames > 1 and depthwise.kernel_size == (3, 3, 3) and depthwise.stride == (1, 1, 1)
                and depthwise.padding == (1, 1, 1) and depthwise.groups == depthwise.in_channels
                and depthwise.in_channels <= FEW_CHANNELS)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        z = F.relu6(self.expand(x.reshape(n // self.frames, self.frames * c, h, w)))
        y0, y1, y2 = (tap(z) for tap in self.taps)
        k = self.hidden
        first = F.relu6(y1[:, :k] + y2[:, k : 2 * k])
        middle = F.relu6(y1[:, k:-k] + y0[:, : -2 * k] + y2[:, 2 * k :])
        last = F.relu6(y1[:, -k:] + y0[:, -2 * k : -k])
        return self.project(torch.cat([first, middle, last], dim=1)).reshape(n, self.out_channels, h, w)


def _block_diagonal(weight: Tensor, bias: Tensor | None, frames: int) -> nn.Conv2d:
    """A 1x1 ``Conv2d`` applying ``weight`` (out, in) to each of ``frames`` groups of channels."""
    out_channels, in_channels = weight.shape
    conv = nn.Conv2d(frames * in_channels, frames * out_channels, 1, bias=bias is not None)
    conv.weight.data.copy_(torch.kron(torch.eye(frames), weight).view(frames * out_channels, -1, 1, 1))
    if bias is not None:
        conv.bias.data.copy_(bias.repeat(frames))
    return conv


# (producer, consumer, pixel-shuffle factor between them): aggregator blocks where the producer's output feeds the
# consumer and nothing else, directly or through a pixel shuffle (TinyHDAggregator.decoder1's four branches and
# decoder2's m[4] -> m[5]); see merge_pointwise_pair
POINTWISE_CHAINS = ((0, 1, 1), (1, 2, 2), (2, 3, 1), (4, 5, 2), (5, 6, 2), (6, 7, 1), (8, 9, 2), (9, 10, 2),
                    (10, 11, 2), (12, 13, 2), (13, 14, 2), (14, 15, 2), (20, 21, 1))


def merge_pointwise_pair(producer: nn.Module, consumer: nn.Module, shuffle: int) -> None:
    """In place: the producer's 1x1 project (a linear bottleneck: BatchNorm, no activation) and the consumer's 1x1
    expand (with ``shuffle``, the pixel shuffle between them, 1 for none) become one 1x1 ``Conv2d`` + ReLU6 that
    ends the producer; the consumer then starts at its depthwise convolution.

    The composition of two linear maps is one: weight ``E @ P`` and bias ``E @ b_P + b_E``, taken per sub-pixel
    (the producer's output channel ``c * shuffle**2 + s`` is the consumer's input channel ``c`` at sub-pixel ``s``,
    so the merged channel ``k * shuffle**2 + s`` is the consumer's hidden channel ``k`` there); ReLU6 commutes with
    the shuffle. One convolution and one bottleneck tensor fewer per pair (in int8 one quantization fewer), at
    about the same MACs. Both must be :class:`InvertedResidual3d` aggregator blocks (expand, depthwise, project).
    """
    for block in (producer, consumer):
        if not isinstance(block, InvertedResidual3d) or block.use_residual or len(block.conv) != 4:
            raise ValueError(f"merge_pointwise_pair needs expand-depthwise-project blocks, got {type(block).__name__}")
    p, p_bias = fold_batchnorm(producer.conv[2], producer.conv[3])
    e, e_bias = fold_batchnorm(consumer.conv[0][0], consumer.conv[0][1])
    sub, hidden = shuffle * shuffle, p.shape[1]
    if p.shape[0] != e.shape[1] * sub:
        raise ValueError(f"producer gives {p.shape[0]} channels, consumer takes {e.shape[1]} x {sub} sub-pixels")
    p = p[:, :, 0, 0, 0].reshape(e.shape[1], sub, hidden)
    e = e[:, :, 0, 0, 0]
    p_bias = p_bias if p_bias is not None else p.new_zeros(p.shape[0] * sub)
    bias = torch.einsum("kc,cs->ks", e, p_bias.reshape(-1, sub))
    if e_bias is not None:
        bias = bias + e_bias[:, None]
    merged = nn.Conv2d(hidden, e.shape[0] * sub, 1)
    merged.weight.data.copy_(torch.einsum("kc,csh->ksh", e, p).reshape(-1, hidden, 1, 1))
    merged.bias.data.copy_(bias.reshape(-1))
    producer.conv[2], producer.conv[3] = nn.Sequential(merged, nn.ReLU6()), nn.Identity()
    consumer.conv[0] = nn.Identity()


class FramewiseOps(ClipOps):
    """TinyHD's layout-dependent steps on ``batch`` clips folded to (N*T, C, H, W) frames."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def shuffle_up(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(x, 2)

    def space_up(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)

    def time_up(self, x: Tensor) -> Tensor:
        """x2 linear interpolation in time (``align_corners=True``), as a 2-D bilinear resize of the time axis."""
        frames = x.shape[0] // self.batch
        if self.batch == 1:
            index0, index1, weight1 = time_up_blend(frames)
            first = concat([x[i : i + 1] for i in index0], dim=0)
            second = concat([x[i : i + 1] for i in index1], dim=0)
            weight = torch.tensor(weight1, dtype=x.dtype).view(-1, 1, 1, 1)
            return first + (second - first) * weight
        clips = x.reshape(self.batch, frames, *x.shape[1:]).transpose(1, 2)
        return super().time_up(clips).transpose(1, 2).reshape(-1, *x.shape[1:])

    def space_time_up(self, x: Tensor, space_up: Callable[[Tensor], Tensor]) -> Tensor:
        """Time first: the frame blends then run on 4x fewer pixels."""
        return space_up(self.time_up(x))

    def cat(self, tensors: Sequence[Tensor]) -> Tensor:
        return concat(tensors, dim=1)

    def drop_time(self, x: Tensor) -> Tensor:
        return x  # one frame per clip: the folded tensor already is (N, C, H, W)

    def repeat_time(self, x: Tensor, frames: int) -> Tensor:
        if self.batch == 1:
            return x.expand(frames, -1, -1, -1)
        return x.unsqueeze(1).expand(-1, frames, -1, -1, -1).reshape(-1, *x.shape[1:])


def time_up_blend(frames: int) -> tuple[list[int], list[int], list[float]]:
    """For x2 linear up-sampling in time with ``align_corners=True``: for each of the ``2 * frames`` output frames,
    the two input frames it blends and the weight of the second."""
    scale = (frames - 1) / (2 * frames - 1)
    index0, index1, weight1 = [], [], []
    for t in range(2 * frames):
        source = t * scale
        i = min(int(source), frames - 1)
        index0.append(i)
        index1.append(min(i + 1, frames - 1))
        weight1.append(source - i)
    return index0, index1, weight1


def _input_frames(model: TinyHD) -> dict[str, int]:
    """Frames per clip entering every ``Conv3d`` of ``model`` for a 16-frame input (found by one small run)."""
    seen: dict[str, int] = {}

    def record(name: str, args: tuple[Tensor, ...]) -> None:
        seen[name] = args[0].shape[2]

    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: record(name, args))
             for name, m in model.named_modules() if isinstance(m, nn.Conv3d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, TINYHD_FRAMES, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _replace_convs(module: nn.Module, frames: dict[str, int], prefix: str = "") -> None:
    """In place: every Conv3d (and the BatchNorm3d right after it) -> FramewiseConv3d (and Identity)."""
    children = list(module.named_children())
    for i, (name, child) in enumerate(children):
        path = f"{prefix}{name}"
        if isinstance(child, nn.Conv3d):
            following = children[i + 1][1] if i + 1 < len(children) else None
            norm = following if isinstance(following, nn.BatchNorm3d) else None
            setattr(module, name, FramewiseConv3d(child, norm, frames[path]))
            if norm is not None:
                setattr(module, children[i + 1][0], nn.Identity())
        elif not isinstance(child, nn.BatchNorm3d):
            _replace_convs(child, frames, f"{path}.")


class FramewiseMimoHead(nn.Module):
    """TinyHD-M's head without repeating D1's single-frame maps 16 times: the 1x1 fusion conv is split into its
    D1 part (run once per clip, broadcast over the frames) and its D2/D3 part (run per frame)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        conv = head.decoder[0]
        weight = conv.weight.detach()[:, :, 0]  # (1, 6, 1, 1): D1's 4 maps, then D2's and D3's
        self.single = nn.Conv2d(4, 1, 1, bias=False)
        self.single.weight.data.copy_(weight[:, :4])
        self.multi = nn.Conv2d(2, 1, 1)
        self.multi.weight.data.copy_(weight[:, 4:])
        self.multi.bias.data.copy_(conv.bias.detach())
        self.frames = head.frames

    def forward(self, maps: Sequence[Tensor], ops: FramewiseOps) -> Tensor:
        d1, d2, d3 = maps
        once = self.single(d1)  # (N, 1, H, W)
        if ops.batch != 1:
            once = ops.repeat_time(once, self.frames)
        return torch.sigmoid(self.multi(ops.cat([d2, d3])) + once)


class FramewiseTinyHD(nn.Module):
    """A :class:`TinyHD` re-expressed without 3-D operations (see the module docstring); same input and output.

    Built by :func:`framewise_tinyhd`; for inference and export only (BatchNorm is folded).
    """

    def __init__(self, model: TinyHD) -> None:
        super().__init__()
        frames = _input_frames(model)
        folded = copy.deepcopy(model).eval()
        blocks = folded.aggregator.aggregate_adapter
        for i, block in enumerate(blocks):
            count = frames[f"aggregator.aggregate_adapter.{i}.conv.1.0"]
            if FramesAsChannelsBlock.applies(block, count):
                blocks[i] = FramesAsChannelsBlock(block, count)
        for producer, consumer, shuffle in POINTWISE_CHAINS:
            merge_pointwise_pair(blocks[producer], blocks[consumer], shuffle)
        _replace_convs(folded, frames)
        self.mode, self.width = model.mode, model.width
        self.encoder, self.aggregator = folded.encoder, folded.aggregator
        self.decoder = folded.decoder if model.mode == "S" else FramewiseMimoHead(model.decoder)

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.jit.is_tracing() or torch.jit.is_scripting()):
            _check_input(x)
        n, c, t, h, w = x.shape
        ops = FramewiseOps(n)
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        out = self.decoder(self.aggregator(self.encoder(frames), ops), ops)
        return out if self.mode == "S" else out.reshape(n, 1, t, h, w)  # one channel: (N*T, 1) -> (N, 1, T)


def framewise_tinyhd(model: nn.Module) -> FramewiseTinyHD:
    """The export graph of a TinyHD model: the same function with no 3-D convolution (see the module docstring)."""
    if not isinstance(model, TinyHD):
        raise TypeError(f"framewise_tinyhd rewrites TinyHD models, got {type(model).__name__}")
    return FramewiseTinyHD(model).eval()


def max_abs_error(model: nn.Module, rewritten: nn.Module, clips: Sequence[Tensor]) -> float:
    """Largest absolute difference between the two models' outputs over ``clips``."""
    with torch.no_grad():
        return max(float((model(c) - rewritten(c)).abs().max()) for c in clips)
