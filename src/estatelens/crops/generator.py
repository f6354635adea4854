"""Self-supervised crop data, after "Dissecting Image Crops" (Van Hoorick and Vondrick, ICCV 2021).

Any folder of photos taken to be uncropped is a source. A sample is made from a source photo of
W x H pixels:

- **cropped**: a rectangle of side fraction f ~ U(factor_range) (0.5 to 0.9 by default), the aspect
  ratio kept (or changed by up to `aspect_jitter`), at a random position, resized to size x size;
- **uncropped**: the whole photo, resized to size x size.

The target is the rectangle the sample shows, in the coordinates of the original frame normalised
to [0, 1] (x0, y0, x1, y1; (0, 0, 1, 1) when uncropped), and the crop factor: the side fraction of a
square of the same area, sqrt(w h / W H) (1 when uncropped).

Shortcuts a real cropped listing photo would not share, and what is done about each:

- **Resampling traces.** A 0.5 crop of a 416 px photo is resized by 1.1 to 192 px; the whole photo
  by 2.2. Sharpness and noise would then tell crops apart with no look at the content. Uncropped
  samples are therefore first shrunk by a factor g drawn like f, so that the last resize has the
  same distribution of scale factors in both classes. Nothing is ever enlarged: sources are
  filtered so that the smallest crop still covers `size` pixels.
- **JPEG block grid.** A crop at a random offset shifts the source's 8 x 8 block grid. A crop's
  top-left corner is placed on multiples of 8 source pixels (its size rounded so that it can
  still reach the right and bottom edges), and every sample (both classes) is
  re-encoded as JPEG at a random quality (75 to 95), as a portal's re-encoding would, so a fresh grid
  lies over both.
- **Sharpness.** Even so, a crop of a small photo is reduced less than the whole photo (by f),
  so it keeps more of the source's own softness per pixel; a real crop of a large original is
  reduced by two or more either way, and shows no such difference. Every sample, of both
  classes, is therefore blurred by a Gaussian of radius U(0, `blur`) px, so that sharpness tells
  little (`benchmarks/crop_shortcuts.py` measures how much pixel statistics alone can tell).
- **Borders.** A letterboxed photo (uniform bands at an edge) is uncropped in a way a crop never
  is; such sources are left out (`check_source`).

`benchmarks`-style proof that these work: `train-crops` also fits a logistic regression on
low-level pixel statistics alone (sharpness, noise, blockiness) and reports its AUC next to the
networks'; near 0.5 means the cues above are gone.

Patches: the size x size sample is cut into a 4 x 4 grid of cells; from each cell a patch of
`patch` pixels is taken at a random offset within the cell (centred at inference). Its position
target is the cell of the *original* frame that holds the patch's centre: the patch network must
tell from its content alone where in the original photo it lies, which is what reveals a crop.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from ..data.images import PhotoError, is_image_name, read_photo

SPLIT_FRACTIONS = (0.75, 0.15, 0.10)  # as the seed does
BORDER_STD = 4.0  # a row or column this uniform (grey levels) at an edge is a border
BORDER_FRACTION = 0.02  # of the side: a band this deep is a letterbox, not a dark wall


@dataclass(frozen=True)
class CropSettings:
    size: int = 192  # the sample's side: the thumbnail network's input
    patch: int = 40  # patch side, cut from the sample's 4 x 4 cells (48 px at size 192)
    grid: int = 4
    factor_range: tuple[float, float] = (0.5, 0.9)
    aspect_jitter: float = 0.0  # 0 keeps the aspect ratio; 0.2 lets width/height change by up to 20 %
    snap: int = 8  # crop corners on the source's JPEG block grid
    jpeg_quality: tuple[int, int] | None = (75, 95)  # None: no re-encoding
    match_resampling: bool = True  # shrink uncropped samples like crops (see the module's docstring)
    aspect_range: tuple[float, float] = (0.5, 2.0)  # width / height of usable sources
    blur: float = 1.0  # blur every sample by a Gaussian of radius U(0, blur) px (sharpness then tells little)

    def __post_init__(self):
        lo, hi = self.factor_range
        if not 0.05 <= lo <= hi < 1.0:
            raise ValueError(f"crop factor range must satisfy 0.05 <= low <= high < 1, got {self.factor_range}")
        cell = self.size // self.grid
        if self.size % self.grid or not 8 <= self.patch <= cell:
            raise ValueError(f"size {self.size} must split into {self.grid} cells of at least the patch size "
                             f"{self.patch} (and patches must be 8 px or more)")

    @property
    def min_side(self) -> int:
        """Sources must be at least this on their short side, so that no crop is ever enlarged."""
        return int(np.ceil(self.size / self.factor_range[0]))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CropSettings":
        d = dict(d)
        for k in ("factor_range", "jpeg_quality", "aspect_range"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass
class CropSample:
    image: np.ndarray  # (size, size, 3) uint8
    patches: np.ndarray  # (grid*grid, patch, patch, 3) uint8, cells in row-major order
    cropped: bool
    rect: np.ndarray  # (4,) float32: x0, y0, x1, y1 of the view in the original frame, in [0, 1]
    factor: float
    positions: np.ndarray  # (grid*grid,) int64: the original-frame cell of each patch's centre
    offsets: np.ndarray = field(default=None)  # (grid*grid, 2) int: each patch's top-left in the sample


# --- sources ---------------------------------------------------------------------------------------

def check_source(path: str | os.PathLike, settings: CropSettings) -> str:
    """"ok", or why the photo cannot serve as an uncropped source (too small, odd aspect, borders,
    unreadable)."""
    if not is_image_name(path):
        return f"not an image file (extension '{Path(path).suffix}')"
    try:
        im, (w, h) = read_photo(path, 128)
    except PhotoError as e:
        return e.reason
    if min(w, h) < settings.min_side:
        return f"too small ({w}x{h}): crops of {settings.factor_range[0]} would need enlarging to {settings.size} px"
    lo, hi = settings.aspect_range
    if not lo <= w / h <= hi:
        return f"aspect ratio {w / h:.2f} outside {lo}..{hi}"
    side = border_side(np.asarray(im.convert("L"), dtype=np.float32))
    if side:
        return f"uniform band at the {side} edge (letterbox or frame): a crop would always remove it"
    return "ok"


def border_side(grey: np.ndarray) -> str | None:
    """The first edge ("top", "bottom", "left", "right") with a uniform band at least
    BORDER_FRACTION of the side deep, or None."""
    h, w = grey.shape
    for side, lines, depth in (("top", grey, h), ("bottom", grey[::-1], h),
                               ("left", grey.T, w), ("right", grey.T[::-1], w)):
        need = max(2, int(np.ceil(BORDER_FRACTION * depth)))
        if all(lines[i].std() < BORDER_STD for i in range(need)):
            return side
    return None


def source_key(path: str, root: str | os.PathLike | None = None) -> str:
    """What names a source across machines: its path relative to the folder above the DATA
    argument it was found under (rooms-web/test/kitchen/x.jpg, photos/3_kitchen.jpg), so that a
    checkout elsewhere splits and crops it the same way."""
    if root is not None and Path(root).is_dir():  # both sides resolved: links and ../ spell one key
        return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve().parent)).as_posix()
    return Path(path).name


def split_of(key: str, seed: int = 0, fractions: Sequence[float] = SPLIT_FRACTIONS) -> str:
    """"train", "val" or "test" for a source, from a hash of its key (`source_key`): stable across
    runs and machines, the same photo always in the same split."""
    key = hashlib.sha1(f"{seed}:{key}".encode("utf-8", "surrogateescape")).digest()
    u = int.from_bytes(key[:8], "big") / 2**64
    return "train" if u < fractions[0] else ("val" if u < fractions[0] + fractions[1] else "test")


def stable_seed(*parts) -> list[int]:
    """A NumPy seed sequence from any parts (paths included), the same on every machine."""
    h = hashlib.sha1("\0".join(map(str, parts)).encode("utf-8", "surrogateescape")).digest()
    return [int.from_bytes(h[i:i + 4], "big") for i in range(0, 16, 4)]


# --- one sample ------------------------------------------------------------------------------------

def sample_rect(width: int, height: int, rng: np.random.Generator, settings: CropSettings) -> tuple[int, int, int, int]:
    """A crop rectangle (x0, y0, x1, y1) in source pixels: side fraction from the factor range,
    aspect kept or jittered, position uniform over the JPEG grid's positions. The size is
    rounded up (by less than the grid step) so that the free space is a whole number of steps:
    the crop can then touch the right and bottom edges as often as the left and top ones."""
    f = rng.uniform(*settings.factor_range)
    a = np.exp(rng.uniform(-1, 1) * np.log1p(settings.aspect_jitter)) if settings.aspect_jitter else 1.0
    fw, fh = min(0.98, f * np.sqrt(a)), min(0.98, f / np.sqrt(a))
    s = max(1, settings.snap)
    box = []
    for side, frac in ((width, fw), (height, fh)):
        size = min(side, max(settings.size, int(round(frac * side))))
        free = (side - size) // s  # whole grid steps of free space
        start = int(rng.integers(0, free + 1)) * s
        box.append((start, side - free * s))  # (start, the size rounded up to fill whole steps)
    (x0, cw), (y0, ch) = box
    return x0, y0, x0 + cw, y0 + ch


def render_sample(photo: Image.Image, rng: np.random.Generator, settings: CropSettings, cropped: bool,
                  rect: tuple[int, int, int, int] | None = None, jitter: bool = True) -> CropSample:
    """One sample from an upright RGB source photo (see the module's docstring). `rect` forces the
    crop rectangle (source pixels); `jitter=False` takes patches centred in their cells."""
    W, H = photo.size
    R = settings.size
    if cropped:
        x0, y0, x1, y1 = rect if rect is not None else sample_rect(W, H, rng, settings)
        image = photo.resize((R, R), Image.LANCZOS, box=(x0, y0, x1, y1))
        norm = np.array([x0 / W, y0 / H, x1 / W, y1 / H], dtype=np.float32)
        factor = float(np.sqrt((x1 - x0) * (y1 - y0) / (W * H)))
    else:
        src = photo
        if settings.match_resampling:
            g = rng.uniform(*settings.factor_range)
            # Never below the output size: the last resize must stay a reduction.
            gw, gh = max(R, int(round(g * W))), max(R, int(round(g * H)))
            src = photo.resize((gw, gh), Image.LANCZOS)
        image = src.resize((R, R), Image.LANCZOS)
        norm = np.array([0, 0, 1, 1], dtype=np.float32)
        factor = 1.0
    if settings.blur:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, settings.blur))))
    if settings.jpeg_quality:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1)))
        buf.seek(0)
        image = Image.open(buf).convert("RGB")
    arr = np.asarray(image, dtype=np.uint8)
    patches, offsets = cut_patches(arr, settings, rng if jitter else None)
    return CropSample(arr, patches, cropped, norm, factor, patch_positions(offsets, norm, settings), offsets)


def cut_patches(image: np.ndarray, settings: CropSettings,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(patches (grid*grid, P, P, 3), their top-left offsets (grid*grid, 2) as (x, y)) from a
    size x size image: one per cell, at a random place in the cell (centred without `rng`)."""
    cell, P, g = settings.size // settings.grid, settings.patch, settings.grid
    slack = cell - P
    offsets = np.zeros((g * g, 2), dtype=np.int64)
    patches = np.empty((g * g, P, P, 3), dtype=np.uint8)
    for r in range(g):
        for c in range(g):
            dx, dy = (rng.integers(0, slack + 1, size=2) if rng is not None and slack else (slack // 2, slack // 2))
            x, y = c * cell + int(dx), r * cell + int(dy)
            offsets[r * g + c] = (x, y)
            patches[r * g + c] = image[y:y + P, x:x + P]
    return patches, offsets


def patch_positions(offsets: np.ndarray, rect: np.ndarray, settings: CropSettings) -> np.ndarray:
    """The original-frame cell (row-major, grid x grid) of each patch's centre, given the sample's
    rectangle in the original frame."""
    R, P, g = settings.size, settings.patch, settings.grid
    u = (offsets[:, 0] + P / 2) / R
    v = (offsets[:, 1] + P / 2) / R
    x = rect[0] + u * (rect[2] - rect[0])
    y = rect[1] + v * (rect[3] - rect[1])
    col = np.clip((x * g).astype(np.int64), 0, g - 1)
    row = np.clip((y * g).astype(np.int64), 0, g - 1)
    return row * g + col


def network_input(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, normalised as the backbone was trained. Training
    (frozen features) and the detector (tag --crops) both go through it."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]


# --- many samples ----------------------------------------------------------------------------------

@dataclass
class SourceSet:
    """Usable sources by split, and what was left out and why."""

    splits: dict[str, list[str]]
    skipped: list[dict]
    keys: dict[str, str] = field(default_factory=dict)  # path -> source_key

    def counts(self) -> dict:
        return {k: len(v) for k, v in self.splits.items()}


def collect_sources(inputs: Iterable[str | os.PathLike], settings: CropSettings, seed: int = 0,
                    workers: int = 4, progress: bool = True) -> SourceSet:
    """Every photo under `inputs` (folders searched recursively), checked and split 75/15/10."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from ..tagging.core import iter_input_paths

    keys: dict[str, str] = {}
    for item in inputs:
        for p in iter_input_paths([item]):
            keys.setdefault(os.path.abspath(p), source_key(os.path.abspath(p), item))
    paths = list(keys)
    if not paths:
        raise FileNotFoundError(f"no files found in {', '.join(map(str, inputs))}")
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    skipped = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        verdicts = pool.map(lambda p: check_source(p, settings), paths)
        for path, verdict in tqdm(zip(paths, verdicts), total=len(paths), desc="checking sources",
                                  unit="photo", disable=not progress):
            if verdict == "ok":
                splits[split_of(keys[path], seed)].append(path)
            else:
                skipped.append({"path": path, "reason": verdict})
    if not splits["train"]:
        raise ValueError(f"no usable source photos in {', '.join(map(str, inputs))} "
                         f"({len(skipped)} left out; e.g. {skipped[0]['reason'] if skipped else '-'})")
    return SourceSet(splits, skipped, keys)


def variants_of(path: str, settings: CropSettings, n: int, seed: int, key: str | None = None,
                jitter: bool = True) -> list[CropSample]:
    """`n` samples of one source, half cropped and half not (alternating), from a random stream
    fixed by (seed, the source's key, settings): the same samples on every run and machine."""
    photo, _ = read_photo(path)
    rng = np.random.default_rng(stable_seed(seed, key or source_key(path), sorted(settings.to_dict().items())))
    return [render_sample(photo, rng, settings, cropped=(k % 2 == 0), jitter=jitter) for k in range(n)]
