"""Photo quality as a portal checks it before publishing (issue 16, item 3): sharpness, exposure,
tilt of the verticals, resolution and colour cast, each a number and a pass/fail at a threshold.

All measures are taken on the photo scaled to a short side of `WORK_SIDE` px (never enlarged), so
that they do not depend on how many pixels the camera had; resolution is judged on the full size.

- sharpness: the variance of the Laplacian of the grey photo, divided by the grey variance's square
  root (so that a low-contrast but sharp photo of a white room is not called blurred); higher is
  sharper.
- exposure: the median brightness (HSV value: a pixel's brightest channel, so that a red wall is
  not "dark") in stops from middle grey (0 is mid-grey, -1 half as bright), with the share of
  clipped shadows (<= 2 %) and highlights (>= 98 %) beside it.

Uniform bars along the edges (letterboxing, frames) are trimmed first: white bars read as blown
highlights otherwise.
- tilt_degrees: how far the photo's near-vertical edges (walls, door frames, corners: the strongest
  tenth of the Sobel gradients, where the edge is within 20 degrees of vertical) lean, as the
  gradient-weighted median. Lenses make verticals converge symmetrically (left ones lean right,
  right ones left), which the median cancels; a turned camera leans them all one way. None when
  fewer than `MIN_VERTICAL_PIXELS` such edge pixels are found (a blank wall): no verdict then.
  (Hough lines were tried first: as accurate on turned copies, five times slower, and without a
  verdict on one photo in six.)
- colour_cast: the chroma (CIE a*, b* distance from grey) of the photo's brightest unclipped
  pixels (white walls, ceilings, frames): a white-patch estimate of a white-balance error. (The
  grey-world estimate, the mean mid-tone colour, was tried first: ROC AUC 0.69 against 0.91 on
  the benchmark's tinted copies; a green lawn or a wood floor is not a cast.)
- resolution: width and height against a portal's minimum (long side, short side).

The thresholds (`Thresholds`) were chosen on held-apart listing photos and degraded copies of them
(blurred, darkened, brightened, turned, tinted) and checked by eye on real photos:
benchmarks/quality.py, benchmarks/results/quality.md. OpenCV (the [checks] extra) does the
filtering; NumPy the rest.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

WORK_SIDE = 256  # short side the measures are taken at (never enlarged): what the tagger decodes anyway
MIN_VERTICAL_PIXELS = 200  # fewest strong near-vertical edge pixels for a tilt verdict
VERTICAL_WINDOW = 20.0  # degrees from vertical that an edge may lean and still count
STRONG_EDGES = 0.1  # the share of pixels with the strongest gradients that tilt reads
BRIGHTEST = 0.03  # the share of (unclipped) pixels colour_cast reads


@dataclass(frozen=True)
class Thresholds:
    """Where a measure fails. Defaults: benchmarks/results/quality.md."""

    min_sharpness: float = 40.0
    min_exposure: float = -1.2  # stops below middle grey (median brightness)
    max_exposure: float = 0.9  # stops above
    max_clipped_shadows: float = 0.25  # share of the photo crushed to black
    max_clipped_highlights: float = 0.35  # share burnt to white (windows are allowed some)
    max_tilt: float = 4.0  # degrees
    max_colour_cast: float = 30.0  # CIE a*b* chroma of the brightest unclipped pixels (not judged on exteriors)
    min_long_side: int = 640  # px; a portal's minimum, e.g. 1024 x 768: --min-size 1024x768
    min_short_side: int = 480


QUALITY_COLUMNS = ["sharpness", "exposure", "clipped_shadows", "clipped_highlights", "tilt_degrees",
                   "colour_cast", "quality", "quality_reasons"]


@dataclass
class Quality:
    sharpness: float
    exposure: float
    clipped_shadows: float
    clipped_highlights: float
    tilt_degrees: float | None
    colour_cast: float
    width: int
    height: int
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def columns(self) -> dict:
        d = {k: (None if v is None else round(float(v), 3)) for k, v in asdict(self).items()
             if k in QUALITY_COLUMNS}
        d["quality"] = "pass" if self.passed else "fail"
        d["quality_reasons"] = "; ".join(self.reasons) or None
        return d


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ImportError("photo checks need OpenCV: pip install 'estatelens[checks]'") from None
    return cv2


def work_image(im: Image.Image, side: int = WORK_SIDE, enlarge: bool = False) -> np.ndarray:
    """The photo as an RGB uint8 array with a short side of at most `side` px (exactly `side` with
    `enlarge`: smaller photos are enlarged to it). Bilinear: the tagger decodes JPEGs at a short
    side of 256 to 511 px (draft mode), so the step down is under 2x, where bilinear misses no
    pixel; area averaging cost four times as much."""
    a = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    h, w = a.shape[:2]
    s = side / min(w, h)
    if s == 1 or (s > 1 and not enlarge):
        return a
    return _cv2().resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=_cv2().INTER_LINEAR)


def measure_image(im: Image.Image) -> np.ndarray:
    """The photo at the working size the measures are taken at. A photo decoded at twice that or
    more (`tag --watermarks` decodes at the watermark network's larger reading size; photos other
    than JPEG are never draft-decoded) is first box-reduced by the factor JPEG draft decoding
    would have used for a plain `--checks` run (2, 4 or 8: the largest that keeps the short side
    at least 256), so that the measures do not depend on the size it was decoded at (before: one
    photo's sharpness 165 with --checks, 311 with --watermarks)."""
    k = 1
    while k < 8 and min(im.size) // (2 * k) >= WORK_SIDE:
        k *= 2
    return work_image(im.reduce(k) if k > 1 else im)


def sharpness(grey: np.ndarray) -> float:
    cv2 = _cv2()
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    return float(lap.var() / max(4.0, float(grey.std())))


def exposure(value: np.ndarray) -> tuple[float, float, float]:
    """(median in stops from middle grey, share <= 2 %, share >= 98 %) of the HSV value channel
    (each pixel's brightest channel): a red or purple wall is a colour, not a dark photo."""
    hist = _cv2().calcHist([np.ascontiguousarray(value)], [0], None, [256], [0, 256]).ravel()
    cum = np.cumsum(hist)
    median = max(int(np.searchsorted(cum, cum[-1] / 2)), 1) / 255
    return float(np.log2(median / 0.46)), float(cum[5] / cum[-1]), float(hist[250:].sum() / cum[-1])


def tilt(grey: np.ndarray) -> float | None:
    """The gradient-weighted median lean of the strongest near-vertical edges, in degrees
    (positive: the tops lean right, as in a photo turned clockwise); None with too few of them."""
    cv2 = _cv2()
    g = grey.astype(np.float32)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    strength = (np.abs(gx) + np.abs(gy)).ravel()
    sample = strength[::7]  # the strongest tenth's bound, read off every 7th pixel: a fifth of the time
    k = int(sample.size * (1 - STRONG_EDGES))
    strong = (strength >= np.partition(sample, k)[k]) & (strength > 0)
    gx, gy, weight = gx.ravel()[strong], gy.ravel()[strong], strength[strong]
    near = (np.abs(gy) <= np.abs(gx) * np.tan(np.radians(VERTICAL_WINDOW))) & (gx != 0)
    if near.sum() < MIN_VERTICAL_PIXELS:
        return None
    lean, weight = np.degrees(np.arctan(gy[near] / gx[near])), weight[near]
    order = np.argsort(lean)
    cum = np.cumsum(weight[order])
    return float(lean[order][np.searchsorted(cum, cum[-1] / 2)])


def colour_cast(rgb: np.ndarray) -> float:
    """Chroma (CIE a*b* distance from grey) of the mean colour of the brightest unclipped pixels
    (the top 3 % of L*, below L* 97): in a listing photo mostly white walls, ceilings and
    window frames, which a white-balance error tints."""
    cv2 = _cv2()
    lab = cv2.cvtColor(np.ascontiguousarray(rgb[::2, ::2]), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    lightness = lab[:, 0]  # L* scaled to 0..255
    unclipped = lightness < int(97 * 255 / 100)
    if unclipped.sum() < 100:
        unclipped[:] = True
    # the brightest 3 % of the unclipped pixels: from the top of their histogram (ties kept together)
    from_top = np.cumsum(np.bincount(lightness[unclipped], minlength=256)[::-1])
    bound = 255 - int(np.searchsorted(from_top, BRIGHTEST * from_top[-1]))
    top = unclipped & (lightness >= bound)
    a, b = lab[top, 1].mean(dtype=np.float64) - 128, lab[top, 2].mean(dtype=np.float64) - 128
    return float(np.hypot(a, b))


def measure(im: Image.Image, size: tuple[int, int] | None = None, thresholds: Thresholds = Thresholds()) -> Quality:
    """Every quality measure of a decoded photo and the reasons it fails. `size`: the photo's
    full (width, height) where `im` was decoded smaller (draft mode)."""
    return measure_array(measure_image(im), size or im.size, thresholds)


def trim_borders(grey: np.ndarray, flat: float = 3.0) -> tuple[slice, slice]:
    """The rows and columns of the photo without uniform bars along its edges (letterboxing, a
    white frame a portal or an exporter added), which would read as clipped highlights and as a
    lack of detail: those whose grey values vary (standard deviation over `flat`). The whole photo
    where the bars would take more than half of either side."""
    cv2 = _cv2()
    g = grey.astype(np.float32)
    sq = g * g
    varies = []
    for axis in (1, 0):  # rows, then columns (OpenCV's reduce: a tenth of NumPy's std here)
        m, m2 = cv2.reduce(g, axis, cv2.REDUCE_AVG).ravel(), cv2.reduce(sq, axis, cv2.REDUCE_AVG).ravel()
        varies.append(np.sqrt(np.maximum(m2 - m * m, 0)) > flat)
    rows, cols = varies
    whole = slice(None), slice(None)
    if not rows.any() or not cols.any():
        return whole
    top, bottom = int(rows.argmax()), len(rows) - int(rows[::-1].argmax())
    left, right = int(cols.argmax()), len(cols) - int(cols[::-1].argmax())
    if (bottom - top) < len(rows) / 2 or (right - left) < len(cols) / 2:
        return whole
    return slice(top, bottom), slice(left, right)


def measure_array(rgb: np.ndarray, size: tuple[int, int], thresholds: Thresholds = Thresholds()) -> Quality:
    """`measure` on an RGB uint8 array already at the working size."""
    cv2 = _cv2()
    rgb = np.ascontiguousarray(rgb)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rows, cols = trim_borders(grey)
    rgb, grey = np.ascontiguousarray(rgb[rows, cols]), np.ascontiguousarray(grey[rows, cols])
    # HSV value, each pixel's brightest channel (np.maximum: 30 times faster than max(axis=2))
    ev, shadows, highlights = exposure(np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]))
    q = Quality(sharpness(grey), ev, shadows, highlights, tilt(grey), colour_cast(rgb), int(size[0]), int(size[1]))
    q.reasons = judge(q, thresholds)
    return q


def judge(q: Quality, t: Thresholds) -> list[str]:
    """Why `q` fails `t` (empty: it passes), in words a listing editor reads."""
    reasons = []
    if max(q.width, q.height) < t.min_long_side or min(q.width, q.height) < t.min_short_side:
        reasons.append(f"too small ({q.width}x{q.height}, minimum {t.min_long_side}x{t.min_short_side})")
    if q.sharpness < t.min_sharpness:
        reasons.append(f"blurred (sharpness {q.sharpness:.1f} < {t.min_sharpness:g})")
    if q.exposure < t.min_exposure or q.clipped_shadows > t.max_clipped_shadows:
        reasons.append(f"too dark ({q.exposure:+.1f} stops, {100 * q.clipped_shadows:.0f} % black)")
    if q.exposure > t.max_exposure or q.clipped_highlights > t.max_clipped_highlights:
        reasons.append(f"overexposed ({q.exposure:+.1f} stops, {100 * q.clipped_highlights:.0f} % white)")
    if q.tilt_degrees is not None and abs(q.tilt_degrees) > t.max_tilt:
        reasons.append(f"tilted ({q.tilt_degrees:+.1f} degrees)")
    if q.colour_cast > t.max_colour_cast:
        reasons.append(f"colour cast ({q.colour_cast:.0f})")
    return reasons


def parse_size(text: str) -> tuple[int, int]:
    """'1024x768' -> (1024, 768): a minimum as long side x short side."""
    try:
        a, b = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise ValueError(f"--min-size: expected WIDTHxHEIGHT such as 1024x768, not {text!r}") from None
    if a <= 0 or b <= 0:
        raise ValueError(f"--min-size: both sides must be positive, not {text!r}")
    return max(a, b), min(a, b)
