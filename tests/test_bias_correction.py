"""Bias correction of int8 convolution weights (salsdk.quantize.bias_correction).

The shift it subtracts must be exactly the mean output change that the rounded weights cause (checked against
PyTorch convolutions for plain, grouped and depthwise layouts, and with the taps of strided and dilated
convolutions reading TFLite's SAME padding); on a real model it must only touch the
convolutions that are quantized and bring the int8 file closer to the float one.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from salsdk.quantize.bias_correction import mean_shift, tap_means


@pytest.mark.parametrize("kind,channels_in,channels_out,groups", [
    ("CONV_2D", 6, 4, 1), ("CONV_2D", 6, 4, 2), ("DEPTHWISE_CONV_2D", 5, 5, 5), ("DEPTHWISE_CONV_2D", 3, 6, 3)])
def test_shift_is_the_mean_output_change_of_the_weight_error(kind, channels_in, channels_out, groups):
    generator = torch.Generator().manual_seed(0)
    error = torch.randn(channels_out, channels_in // groups, 3, 3, generator=generator) * 0.01  # torch layout
    means = torch.rand(channels_in, generator=generator) * 3
    x = means.view(1, -1, 1, 1).expand(1, channels_in, 5, 5)  # constant per channel: every output pixel is the mean
    expected = F.conv2d(x, error, groups=groups)[0, :, 1, 1].numpy()
    if kind == "CONV_2D":
        tflite_error = error.permute(0, 2, 3, 1).numpy()  # (O, kh, kw, I/groups)
    else:
        tflite_error = error.permute(1, 2, 3, 0).numpy()  # (1, kh, kw, C*multiplier)
    np.testing.assert_allclose(mean_shift(kind, tflite_error, means.numpy()), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind,padding,stride,dilation,size", [
    ("CONV_2D", "SAME", 1, 1, (7, 9)), ("CONV_2D", "SAME", 2, 1, (8, 11)), ("DEPTHWISE_CONV_2D", "SAME", 1, 6, (5, 8)),
    ("DEPTHWISE_CONV_2D", "SAME", 3, 2, (10, 7)), ("CONV_2D", "VALID", 2, 2, (9, 12)), ("CONV_2D", (2, 1), 2, 1, (6, 9))])
def test_shift_counts_what_each_tap_reads_padding_included(kind, padding, stride, dilation, size):
    """Where taps read padding (UMSI's ASPP: dilation 18 on a 30x40 map), one mean per channel is wrong; the shift
    must equal the mean over output pixels of the weight error convolved with the input, padded as TFLite pads
    (SAME, VALID) or as PyTorch does (explicit rows and columns on each side)."""
    generator = torch.Generator().manual_seed(1)
    channels = 4
    if kind == "CONV_2D":
        error = torch.randn(channels, channels, 3, 3, generator=generator) * 0.01  # torch layout (O, I, kh, kw)
    else:
        error = torch.randn(channels, 1, 3, 3, generator=generator) * 0.01  # torch depthwise layout (C, 1, kh, kw)
    spatial = torch.rand(1, channels, *size, generator=generator) + 1.0  # a per-pixel mean input (all positive)
    x = spatial
    if padding == "SAME":
        span = 2 * dilation + 1
        total = [max((-(-n // stride) - 1) * stride + span - n, 0) for n in size]
        x = F.pad(spatial, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
    elif padding != "VALID":
        x = F.pad(spatial, (padding[1], padding[1], padding[0], padding[0]))
    groups = channels if kind == "DEPTHWISE_CONV_2D" else 1
    expected = F.conv2d(x, error, stride=stride, dilation=dilation, groups=groups).mean(dim=(0, 2, 3)).numpy()
    tflite_error = (error.permute(0, 2, 3, 1) if kind == "CONV_2D" else error.permute(1, 2, 3, 0)).numpy()
    taps = tap_means(spatial[0].permute(1, 2, 0).numpy(), (3, 3), (stride, stride), (dilation, dilation), padding)
    np.testing.assert_allclose(mean_shift(kind, tflite_error, taps), expected, rtol=1e-5, atol=1e-7)
    if padding != "VALID":  # one mean per channel, as before: off wherever taps read padding
        flat = mean_shift(kind, tflite_error, spatial.mean(dim=(0, 2, 3)).numpy())
        assert np.abs(flat - expected).max() > 0.05 * np.abs(expected).max()


def test_correction_modes_differ_only_in_the_mean_they_use():
    """``correct`` refuses an unknown mode; per channel is per tap with every tap reading the channel mean, which
    is what :func:`tap_means` gives for a constant input without padding."""
    from salsdk.quantize.bias_correction import MODES, correct

    assert MODES == ("per-tap", "per-channel")
    with pytest.raises(ValueError, match="not one of"):
        correct(b"", b"", {}, mode="per-pixel")
    constant = np.broadcast_to(np.float32([1.0, 2.0, 3.0]), (6, 8, 3))
    np.testing.assert_allclose(tap_means(constant, (3, 3)), np.broadcast_to(constant[0, 0], (3, 3, 3)), rtol=1e-6)
