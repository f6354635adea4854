"""Faces in listing photos (issue 16, item 2): portals blur them before publishing.

OpenCV's frontal-face Haar cascades (shipped inside opencv-python-headless 4.x, the [checks]
extra; OpenCV 5 no longer ships them), run on the photo at the checks' working size (short side
256 px, enlarged twice), with second cues per candidate (see FaceDetector). A head of a fifth of
the photo's short side or more is found about 98 % of the time, 14 to 20 % about two times in
three, smaller never; faces in profile, turned away or lit orange are missed
(benchmarks/results/faces.md). `blur_faces` writes a copy of a photo with every box blurred, at
the photo's full size.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .quality import _cv2

CASCADE = "haarcascade_frontalface_default.xml"
UPSCALE = 2.0  # the cascade reads the working-size photo enlarged: it missed most faces under a fifth
# of the short side at the working size itself, and found four in five from a seventh when enlarged
MIN_FACE = 48  # px on the enlarged photo (24 at the working size)
NEIGHBOURS = 5  # overlapping detections a face needs (higher: fewer false faces, fewer faces)
SCALE_STEP = 1.3  # 1.2 found no more faces on the constructed photos and took half as long again
SKIN_SHARE = 0.7  # of the box's middle half, in a colour photo
FACE_COLOUR = 20.0  # least colourfulness of that middle half (a beige wall is skin-toned but grey)
GREY_PHOTO = 4.0  # a photo less colourful than this is judged as greyscale


class FaceDetector:
    """Frontal faces: OpenCV's default Haar cascade finds candidates, and each is kept only when
    two more cues agree: the alt2 cascade finds the face again in an enlarged crop, and, in a
    colour photo, the centre of the box is mostly skin-toned (YCrCb) and coloured, or, in a
    greyscale photo, the eye cascade finds an eye in its upper part. On 2,172 held-apart photos
    the cascade alone flagged 124, of which 14 showed a face (windows, frames, tiles otherwise);
    with the cues, 12 flagged, 9 of them faces (benchmarks/results/faces.md)."""

    def __init__(self, cascade: str | os.PathLike | None = None, neighbours: int = NEIGHBOURS):
        cv2 = _cv2()
        folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
        self._cascade = self._load(str(cascade) if cascade else os.path.join(folder, CASCADE))
        self._alt = self._load(os.path.join(folder, "haarcascade_frontalface_alt2.xml"))
        self._eye = self._load(os.path.join(folder, "haarcascade_eye.xml"))
        self.neighbours = neighbours

    @staticmethod
    def _load(path: str):
        cv2 = _cv2()
        if not os.path.isfile(path):
            raise ImportError(f"no face cascade at {path}: faces need opencv-python-headless 4.x "
                              f"(pip install 'estatelens[checks]'), whose wheel ships the Haar cascades")
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise ValueError(f"{path}: not a readable OpenCV cascade")
        return c

    def candidates(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        """The cascade's boxes (x, y, w, h) in pixels of `grey`, before any second cue."""
        cv2 = _cv2()
        big = cv2.resize(grey, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_LINEAR)
        found = self._cascade.detectMultiScale(big, scaleFactor=SCALE_STEP, minNeighbors=self.neighbours,
                                               minSize=(MIN_FACE, MIN_FACE))
        return [tuple(int(round(v / UPSCALE)) for v in b) for b in np.asarray(found).reshape(-1, 4)]

    def detect(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes in an RGB uint8 photo, as fractions of it (x0, y0, x1, y1), largest first."""
        cv2 = _cv2()
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        colour = _colourfulness(rgb[::4, ::4]) >= GREY_PHOTO
        keep = []
        for x, y, bw, bh in self.candidates(grey):
            second = self._skin(rgb, x, y, bw, bh) if colour else self._eyes(grey, x, y, bw, bh)
            if second and self._refound(grey, x, y, bw, bh):
                keep.append((x / w, y / h, (x + bw) / w, (y + bh) / h))
        return sorted(keep, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def _refound(self, grey, x, y, bw, bh) -> bool:
        """The alt2 cascade finds the face again in the box enlarged by half its size each way."""
        cv2 = _cv2()
        px, py = bw // 2, bh // 2
        crop = cv2.resize(grey[max(0, y - py): y + bh + py, max(0, x - px): x + bw + px], None, fx=2, fy=2)
        return len(self._alt.detectMultiScale(crop, 1.1, 3, minSize=(30, 30))) > 0

    @staticmethod
    def _skin(rgb, x, y, bw, bh) -> bool:
        """The middle half of the box mostly skin-toned (YCrCb box rule) and not grey."""
        cv2 = _cv2()
        centre = np.ascontiguousarray(rgb[y + bh // 4: y + bh - bh // 4, x + bw // 4: x + bw - bw // 4])
        if centre.size == 0:
            return False
        ycc = cv2.cvtColor(centre, cv2.COLOR_RGB2YCrCb).reshape(-1, 3).astype(np.int32)
        skin = ((ycc[:, 0] >= 60) & (ycc[:, 1] >= 135) & (ycc[:, 1] <= 180)
                & (ycc[:, 2] >= 85) & (ycc[:, 2] <= 135)).mean()
        return skin >= SKIN_SHARE and _colourfulness(centre) >= FACE_COLOUR

    def _eyes(self, grey, x, y, bw, bh) -> bool:
        """An eye in the upper part of the box (for greyscale photos, where skin tells nothing)."""
        cv2 = _cv2()
        face = cv2.resize(grey[y: y + bh, x: x + bw], (96, 96))
        return len(self._eye.detectMultiScale(face[:60], 1.1, 3, minSize=(12, 12))) > 0


def _colourfulness(rgb: np.ndarray) -> float:
    """Mean distance of the pixels from their own grey (0 for a greyscale photo)."""
    a = rgb.astype(np.int16)
    return float(np.abs(a - a.mean(axis=2, keepdims=True)).mean())


def format_boxes(boxes) -> str | None:
    """'x0 y0 x1 y1;...' in fractions of the photo (3 decimals), or None without faces."""
    return ";".join(" ".join(f"{v:.3f}" for v in b) for b in boxes) or None


def parse_boxes(text: str | None) -> list[tuple[float, ...]]:
    return [tuple(float(v) for v in part.split()) for part in (text or "").split(";") if part.strip()]


def blur_faces(src: str | os.PathLike, dest: str | os.PathLike, boxes, margin: float = 0.2) -> Path:
    """Write `src` to `dest` with every box (fractions of the photo) blurred beyond recognition,
    each grown by `margin` of its size on every side (hair, ears). JPEG at quality 92 for a .jpg
    destination; the photo is stored upright (EXIF orientation applied)."""
    from ..data.images import read_photo

    im, _ = read_photo(src)
    w, h = im.size
    for x0, y0, x1, y1 in boxes:
        mx, my = (x1 - x0) * margin, (y1 - y0) * margin
        box = (max(0, int((x0 - mx) * w)), max(0, int((y0 - my) * h)),
               min(w, int(np.ceil((x1 + mx) * w))), min(h, int(np.ceil((y1 + my) * h))))
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        region = im.crop(box)
        radius = max(4, (box[2] - box[0]) // 6)
        small = region.resize((max(1, region.width // 12), max(1, region.height // 12)), Image.BILINEAR)
        im.paste(small.resize(region.size, Image.BILINEAR).filter(ImageFilter.GaussianBlur(radius)), box)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.writing")
    im.save(tmp, format=Image.registered_extensions().get(dest.suffix.lower(), "JPEG"), quality=92)
    os.replace(tmp, dest)
    return dest
