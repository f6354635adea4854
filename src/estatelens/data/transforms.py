"""Train and eval presets (as in torchvision's references), defined once for every model.

Listing photos arrive small, re-compressed, sometimes black and white, and stamped with an
agency's watermark or a portal's text, so the train preset adds greyscale, low-resolution,
overlaid-text and JPEG augmentation to the usual crop, flip and colour jitter.
"""
from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont
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


# Part of every cache key of augmented views: bump it when train_preset changes what it draws.
AUGMENTATION_VERSION = 2

_WATERMARK_WORDS = ("www.homes-online.com", "(c) Realty Partners", "ESTATE AGENCY", "FOTO: M. Nowak",
                    "Immobilien Schmidt", "inmobiliaria.es", "+34 912 345 678", "hemnet", "SOLD",
                    "Agence du Centre", "makelaar.nl", "Photo 3/12", "VIRTUAL STAGING", "idealista")


class RandomOverlayText:
    """With probability p, stamp a portal's or agency's text on the photo: a word or two, large
    and half transparent across the middle (a watermark) or small and opaque in a corner or on a
    band (a caption), so the model learns to look past it."""

    def __init__(self, p: float = 0.25):
        self.p = p

    def __call__(self, im: Image.Image) -> Image.Image:
        if torch.rand(()).item() >= self.p:
            return im
        w, h = im.size
        r = torch.rand(8).tolist()
        text = _WATERMARK_WORDS[int(r[0] * len(_WATERMARK_WORDS))]
        watermark = r[1] < 0.5
        size = max(8, int(min(w, h) * (0.08 + 0.10 * r[2] if watermark else 0.035 + 0.04 * r[2])))
        font = ImageFont.load_default(size=size)
        layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        tw, th = x1 - x0, y1 - y0
        x = int((w - tw) * (0.5 + (r[3] - 0.5) * 0.4 if watermark else r[3])) - x0
        y = int((h - th) * (0.5 + (r[4] - 0.5) * 0.4 if watermark else (0.02 if r[4] < 0.5 else 0.95))) - y0
        shade = 255 if r[5] < 0.7 else 0
        alpha = int(70 + 90 * r[6]) if watermark else 255
        if not watermark and r[7] < 0.4:  # a caption band behind the text
            draw.rectangle((0, y + y0 - 4, w, y + y1 + 4), fill=(255 - shade, 255 - shade, 255 - shade, 200))
        draw.text((x, y), text, font=font, fill=(shade, shade, shade, alpha))
        return Image.alpha_composite(im.convert("RGBA"), layer).convert(im.mode)


def _to_normalised_tensor(pre: Preprocessing, jpeg_p: float = 0.0) -> list:
    jpeg = [T.RandomApply([T.JPEG((15, 75))], p=jpeg_p)] if jpeg_p else []
    return [T.PILToTensor(), *jpeg, T.ToDtype(torch.float32, scale=True), T.Normalize(pre.mean, pre.std)]


# Below this input size the network is no photo model (tests' 64 px synthetic stripes): there the
# preset stays as it was before 2026-12-01, since a watermark, JPEG blocks or more greyscale and
# thumbnail views would hide what is to be learned.
PHOTO_SIZE = 128


def train_preset(pre: Preprocessing, *, min_scale: float = 0.35, jitter: float = 0.3,
                 greyscale_p: float | None = None, lowres_p: float | None = None, text_p: float | None = None,
                 jpeg_p: float | None = None) -> T.Compose:
    """Crop, flip, low resolution, overlaid text, colour jitter, greyscale, JPEG recompression.
    Unless given, the probabilities are 0.25 (low resolution), 0.2 (text), 0.15 (greyscale) and
    0.25 (JPEG) for photo-sized inputs, and 0.2, 0, 0.1 and 0 below PHOTO_SIZE."""
    photo = pre.size >= PHOTO_SIZE
    lowres_p = (0.25 if photo else 0.2) if lowres_p is None else lowres_p
    text_p = (0.2 if photo else 0.0) if text_p is None else text_p
    greyscale_p = (0.15 if photo else 0.1) if greyscale_p is None else greyscale_p
    jpeg_p = (0.25 if photo else 0.0) if jpeg_p is None else jpeg_p
    return T.Compose([
        T.RandomResizedCrop(pre.size, scale=(min_scale, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        *([RandomOverlayText(text_p)] if text_p else []),  # no draw at all when off: the old stream
        RandomLowResolution(lowres_p),
        T.ColorJitter(jitter, jitter, jitter, 0.03),
        T.RandomGrayscale(greyscale_p),
        *_to_normalised_tensor(pre, jpeg_p),
    ])


def eval_preset(pre: Preprocessing) -> T.Compose:
    return T.Compose([
        T.Resize(decode_side(pre), antialias=True),
        T.CenterCrop(pre.size),
        *_to_normalised_tensor(pre),
    ])
