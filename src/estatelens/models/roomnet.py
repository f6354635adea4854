"""A RoomNet-style network (seed 001): a tiny CNN built from convolution blocks, residual blocks of
convolution blocks, and a dense block that classifies the pooled features. Trained from scratch;
0.25 M parameters (under 1 MB of float32 weights), like the published 700 KB model.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """Convolution, batch norm, ReLU: RoomNet's most basic block."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Two convolution blocks with an identity (or 1x1 projected) shortcut, then dropout."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(ConvBlock(cin, cout, 3, stride), ConvBlock(cout, cout, 3))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            # ceil_mode: the same size as the strided convolution's output on odd sides too
            # (7 -> 4), so any input size works, not only multiples of 64
            nn.AvgPool2d(stride, ceil_mode=True) if stride > 1 else nn.Identity(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.body(x) + self.shortcut(x))


class RoomNet(nn.Module):
    """`forward` returns the pooled embedding; `estatelens.models.Classifier` adds the dense block."""

    def __init__(self, widths: tuple[int, ...] = (24, 32, 48, 64, 80), dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(3, 16, 3, 2), ConvBlock(16, widths[0], 3, 2)]
        cin = widths[0]
        for i, w in enumerate(widths):
            layers.append(ResidualBlock(cin, w, 1 if i == 0 else 2, dropout))
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)
