"""MobileNetV2 feature extractor (Sandler et al., 2018) with torchvision's parameter names.

torchvision is not usable beside the CPU build of torch this project pins, so the few layers are written here.
Module names follow ``torchvision.models.mobilenet_v2().features`` exactly (``0.0.weight``, ``1.conv.0.0.weight``,
...), because the official KDSalBox checkpoints store the encoder under those names.
"""
from __future__ import annotations

from torch import Tensor, nn

# (expansion t, output channels c, repeats n, first stride s) — Table 2 of the MobileNetV2 paper.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels as torchvision does: to a multiple of ``divisor``, never below 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU6, with 'same' padding for odd kernels (keys ``0``, ``1``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class ResidualBlock(nn.Module):
    """A block ``x + conv(x)`` (or ``conv(x)`` without a residual); subclasses set ``conv`` and ``use_residual``."""

    conv: nn.Sequential
    use_residual: bool

    @property
    def residual_branch_norm(self) -> nn.Module | None:
        """The BatchNorm closing the residual branch (damped in untrained stand-ins), if there is a residual."""
        return self.conv[-1] if self.use_residual else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class InvertedResidual(ResidualBlock):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear), with a residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)


def mobilenet_v2_features(width_mult: float = 1.0, last_channels: int = 1280) -> nn.Sequential:
    """The 19 feature blocks of MobileNetV2 (output stride 32, ``last_channels`` channels)."""
    cin = make_divisible(32 * width_mult)
    last = make_divisible(last_channels * max(1.0, width_mult))
    blocks: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        cout = make_divisible(c * width_mult)
        for i in range(n):
            blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
            cin = cout
    blocks.append(ConvBNReLU6(cin, last, kernel=1))
    return nn.Sequential(*blocks)
