"""Running the watermark network (train.py) on photos: a probability per photo and where.

The bundled network (src/estatelens/bundled/watermark.onnx, with watermark.json) learnt at a short
side of 256 (`side`) and reads photos at `read_side` (384 for the bundled one: a convolutional
network reads any size, and at 384 the small corner marks it missed at 256 are big enough to see;
the size was chosen on half of the labelled photos, benchmarks/watermark.py --set-threshold). It
gives a logit per 8 x 8 cell; the photo's probability is that of its most confident cell, and the
box is the bounding box of the cells above the photo threshold around that cell (as fractions of
the photo). The shipped threshold and how it was chosen are in watermark.json."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

BUNDLED = Path(__file__).resolve().parents[1] / "bundled"
MODEL = BUNDLED / "watermark.onnx"
INFO = BUNDLED / "watermark.json"
WATERMARK_COLUMNS = ["watermark_probability", "watermark", "watermark_box"]


@dataclass
class WatermarkResult:
    probability: float
    box: tuple[float, float, float, float] | None  # x0 y0 x1 y1 as fractions of the photo
    cells: np.ndarray  # (rows, cols) probabilities: the heatmap


def to_input(image) -> np.ndarray:
    """An RGB photo (PIL image or uint8 (H, W, 3) array) -> (3, H, W) float32 in [-1, 1], as the
    network reads it (training and tagging alike)."""
    a = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(a.transpose(2, 0, 1))


@lru_cache(maxsize=4)
def _session(path: str):
    from ..bundle import onnx_session

    return onnx_session(path, threads=1)  # run in the tagger's decoding threads, one core each


class WatermarkDetector:
    def __init__(self, model: str | os.PathLike | None = None, threshold: float | None = None):
        self.model = Path(model) if model else MODEL
        if not self.model.is_file():
            raise FileNotFoundError(f"{self.model}: no watermark network there (estatelens ships one in {MODEL})")
        info_path = self.model.with_suffix(".json")
        self.info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        self.threshold = float(threshold if threshold is not None else self.info.get("threshold", 0.5))
        self.side = int(self.info.get("read_side", self.info.get("side", 256)))  # the short side it reads

    def reading_image(self, im) -> np.ndarray:
        """A decoded photo (PIL) as the network reads it: RGB at a short side of exactly `side`,
        enlarged where the photo is smaller (a small photo's corner mark is a few pixels: on the
        labelled photos reduced to a short side of 240, ROC AUC 0.87 as they are, 0.93 enlarged)."""
        from ..checks.quality import work_image

        return work_image(im, self.side, enlarge=True)

    def detect(self, rgb: np.ndarray) -> WatermarkResult:
        """`rgb`: a uint8 (H, W, 3) photo at the size it reads (short side `self.side`)."""
        cells = _session(str(self.model)).run(None, {"image": to_input(rgb)[None]})[0][0, 0]
        p = 1.0 / (1.0 + np.exp(-cells.astype(np.float64)))
        prob = float(p.max())
        return WatermarkResult(prob, self._box(p) if prob >= self.threshold else None, p)

    def _box(self, p: np.ndarray) -> tuple[float, float, float, float]:
        """The cells above half the threshold that touch the most confident cell (4-connected)."""
        from ..checks.quality import _cv2

        rows, cols = p.shape
        _, labels = _cv2().connectedComponents((p >= self.threshold / 2).astype(np.uint8), connectivity=4)
        rs, cs = np.nonzero(labels == labels.flat[int(p.argmax())])
        return (cs.min() / cols, rs.min() / rows, (cs.max() + 1) / cols, (rs.max() + 1) / rows)

    def score_files(self, paths) -> list[float | None]:
        """Each photo's probability, read as `tag --checks` reads it (None: not a usable photo)."""
        from ..data.images import PhotoError, read_photo

        out: list[float | None] = []
        for p in paths:
            try:
                im, _ = read_photo(str(p), self.side)
            except PhotoError:
                out.append(None)
                continue
            out.append(self.detect(self.reading_image(im)).probability)
        return out

    def columns(self, rgb: np.ndarray) -> dict:
        r = self.detect(rgb)
        return {"watermark_probability": round(r.probability, 4),
                "watermark": "yes" if r.probability >= self.threshold else "no",
                "watermark_box": " ".join(f"{v:.3f}" for v in r.box) if r.box else None}
