"""Bias correction of int8 convolution weights (salsdk.quantize.bias_correction).

The shift it subtracts must be exactly the mean output change that the rounded weights cause (checked against
PyTorch convolutions for plain, grouped and depthwise layouts); on a real model it must only touch the
convolutions that are quantized and bring the int8 file closer to the float one.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from salsdk.quantize.bias_correction import mean_shift


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
