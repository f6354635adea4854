"""Decoding listing photos: fast, tolerant of odd formats, explicit about failures.

Every photo goes through `open_rgb`, so EXIF orientation, colour-mode conversion and the
decompression-bomb cap are applied the same way in training, evaluation and reports.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A 50-megapixel phone photo is about the largest real listing photo; far larger files are
# almost always corrupt headers or decompression bombs. Pillow raises above twice this.
MAX_PIXELS = 90_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Photos smaller than this on their short side carry too little to classify room types.
MIN_SIDE = 32

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class PhotoError(Exception):
    """A photo that cannot be used, with the reason in words a user can act on."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def file_fingerprint(path: str | os.PathLike) -> str:
    """"size:mtime_ns" of a file, to tell whether it changed since a run saw it; "missing" where
    it is not there, "unreadable: why" where it cannot be looked at (the Ray engine's resume and
    valuation's photo-feature cache)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "missing"
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    return f"{st.st_size}:{st.st_mtime_ns}"


def open_rgb(path: str | os.PathLike | BinaryIO, min_side: int | None = None) -> Image.Image:
    """Decode `path` to an upright RGB image.

    `min_side`: the smallest short side the caller needs; JPEGs are then decoded with Pillow's
    draft mode at the smallest DCT scale (1/2, 1/4, 1/8) that still covers it, which is several
    times faster than a full decode followed by a resize.
    Raises `PhotoError` for every way a file can fail to be a usable photo.
    """
    return read_photo(path, min_side)[0]


# EXIF orientations 5 to 8 turn the photo by 90 degrees, so width and height swap.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def read_photo(path: str | os.PathLike | BinaryIO, min_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """`open_rgb`, plus the photo's full (width, height) as a viewer shows it, before draft decoding."""
    if not hasattr(path, "read"):  # a path; file-like objects (bytes already read) pass through
        path = Path(path)
    try:
        if isinstance(path, Path) and path.stat().st_size == 0:
            raise PhotoError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                # Checked here as well as by Pillow's warning, because warning filters are
                # process-wide and not thread-safe: the tagger decodes in several threads.
                if w * h > MAX_PIXELS:
                    raise PhotoError(path, f"too many pixels ({w}x{h}, over {MAX_PIXELS:,}): possible decompression bomb")
                if min_side and im.format == "JPEG":
                    scale = min_side / max(1, min(w, h))
                    im.draft("RGB", (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))))
                im.load()
                if im.getexif().get(0x0112) in _TRANSPOSING_ORIENTATIONS:
                    w, h = h, w
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im), (w, h)
    except PhotoError:
        raise
    except FileNotFoundError:
        raise PhotoError(path, "file not found") from None
    except IsADirectoryError:
        raise PhotoError(path, "a folder, not a photo") from None
    except UnidentifiedImageError:
        raise PhotoError(path, "not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoError(path, f"too many pixels (over {MAX_PIXELS:,}): possible decompression bomb") from None
    except OSError as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise PhotoError(path, "truncated image data") from None
        raise PhotoError(path, f"unreadable image ({msg})") from None
    except Exception as e:  # Pillow raises ValueError, SyntaxError, EOFError, struct.error... for broken files
        raise PhotoError(path, f"corrupt image ({type(e).__name__}: {e})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale the full range down to 8 bits instead of clipping at 255.
        a = np.asarray(im, dtype=np.float32)
        hi = float(a.max()) or 1.0
        a = (a * (255.0 / (65535.0 if hi > 255 else 255.0))).clip(0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent areas become white, as a browser shows them, not black.
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")


def too_small(width: int, height: int, min_side: int) -> str:
    return f"too small ({width}x{height}, short side under {min_side} px)"


@dataclass(frozen=True)
class PhotoCheck:
    """The result of validating one file before training or tagging."""

    path: str
    ok: bool
    reason: str = ""
    width: int = 0
    height: int = 0


def check_photo(path: str | os.PathLike | BinaryIO, min_side: int = MIN_SIDE) -> PhotoCheck:
    """Fully decode `path` once and say whether it is usable, and why not."""
    try:
        im = open_rgb(path)
    except PhotoError as e:
        return PhotoCheck(str(path), False, e.reason)
    w, h = im.size
    if min(w, h) < min_side:
        return PhotoCheck(str(path), False, too_small(w, h, min_side), w, h)
    return PhotoCheck(str(path), True, "", w, h)
