"""Train and eval presets (as in torchvision's references), defined once for every model.

Listing photos arrive small, re-compressed and sometimes black and white, so the train preset adds
greyscale and low-resolution augmentation to the usual crop, flip and colour jitter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2 as T


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SYMMETRIC_MEAN = (0.5, 0.5, 0.5)  # (x/255 - 0.5) / 0.5: inputs in [-1, 1]
SYMMETRIC_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the network's input: resize the short side to size/crop_fraction,
    centre-crop `size` x `size`, scale to [0, 1], normalise with mean/std.

    crop_fraction defaults to 1.0, not ImageNet's 0.875: a room photo is composed to show the
    whole room, and the border often holds what tells a kitchen from a dining room."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_fraction: float = 1.0

    def to_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std),
                "crop_fraction": self.crop_fraction}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(int(d["size"]), tuple(d["mean"]), tuple(d["std"]), float(d.get("crop_fraction", 1.0)))


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


def decode_side(pre: Preprocessing) -> int:
    """Short side a photo must be decoded at: enough for the resize before the centre crop."""
    return int(round(pre.size / pre.crop_fraction))


def eval_array(im: Image.Image, pre: Preprocessing) -> np.ndarray:
    """`eval_preset(pre)(im)` as a float32 (3, S, S) array, computed with Pillow and NumPy alone.

    Same pixels as the torchvision pipeline (same resize rule, resampling and crop offsets) at
    about a third of the cost; the tagger's decoding threads use it."""
    side, size = decode_side(pre), pre.size
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(side * long / short)
    new_w, new_h = (side, new_long) if w <= h else (new_long, side)
    if (new_w, new_h) != (w, h):
        im = im.resize((new_w, new_h), Image.BILINEAR)
    if new_w < size or new_h < size:
        raise ValueError(f"eval_array: resized photo {new_w}x{new_h} is smaller than the {size} px crop")
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)
    scale = 1.0 / (255.0 * np.asarray(pre.std, dtype=np.float32))
    shift = np.asarray(pre.mean, dtype=np.float32) / np.asarray(pre.std, dtype=np.float32)
    return np.ascontiguousarray((a * scale - shift).transpose(2, 0, 1))


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
