"""Train and eval presets (as in torchvision's references), defined once for every model.

Listing photos arrive small, re-compressed and sometimes black and white, so the train preset adds
greyscale and low-resolution augmentation to the usual crop, flip and colour jitter.
"""
from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2 as T

# Preprocessing itself needs neither torch nor torchvision (the tagger runs without them).
from .preprocess import (IMAGENET_MEAN, IMAGENET_STD, SYMMETRIC_MEAN, SYMMETRIC_STD,  # noqa: F401
                         Preprocessing, decode_side, eval_array)


class RandomLowResolution:
    """With probability p, shrink the photo to a short side in `sides` and scale it back up, as a
    thumbnail-sized listing photo looks after the portal enlarges it."""

    def __init__(self, p: float = 0.2, sides: tuple[int, int] = (48, 128)):
        self.p, self.sides = p, sides

    def __call__(self, im: Image.Image) -> Image.Image:
        # torch's generator, not Python's: seeded per loader worker and restored on resume.
        if torch.rand(()).item() >= self.p:
            return im
        w, h = im.size
        side = int(torch.randint(self.sides[0], self.sides[1] + 1, ()).item())
        scale = side / min(w, h)
        if scale >= 1:
            return im
        small = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        return small.resize((w, h), Image.BILINEAR)


def _to_normalised_tensor(pre: Preprocessing) -> list:
    return [T.PILToTensor(), T.ToDtype(torch.float32, scale=True), T.Normalize(pre.mean, pre.std)]


def train_preset(pre: Preprocessing, *, min_scale: float = 0.35, jitter: float = 0.3,
                 greyscale_p: float = 0.1, lowres_p: float = 0.2) -> T.Compose:
    return T.Compose([
        T.RandomResizedCrop(pre.size, scale=(min_scale, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        RandomLowResolution(lowres_p),
        T.ColorJitter(jitter, jitter, jitter, 0.03),
        T.RandomGrayscale(greyscale_p),
        *_to_normalised_tensor(pre),
    ])


def eval_preset(pre: Preprocessing) -> T.Compose:
    return T.Compose([
        T.Resize(decode_side(pre), antialias=True),
        T.CenterCrop(pre.size),
        *_to_normalised_tensor(pre),
    ])
