"""The checks `tag --checks` runs on every photo, on the image the tagger has just decoded (no
second decode): quality (quality.py), perceptual hashes for duplicate groups (duplicates.py), with `faces` face boxes (faces.py) and
with `watermarks` the watermark network's probability and box (watermarks/detector.py).
`PhotoChecker` is called in the decoding threads."""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from ..watermarks.detector import WATERMARK_COLUMNS, WatermarkDetector
from .quality import QUALITY_COLUMNS, WORK_SIDE, Thresholds, _cv2, measure_array, measure_image, work_image

FACE_COLUMNS = ["faces", "face_boxes"]
HASHES = "_hashes"  # a row's key for its pHashes (hex), kept in the journal, not in the output


def check_columns(faces: bool = False, watermarks: bool = False) -> list[str]:
    """The output columns the checks add, in order (duplicate_group is filled in at the end)."""
    return (QUALITY_COLUMNS + (WATERMARK_COLUMNS if watermarks else []) + (FACE_COLUMNS if faces else [])
            + ["duplicate_group"])


NOT_JUDGED = {"exterior": ("colour cast",)}  # room type -> reasons that do not apply to it


def for_room(checks: dict | None, room: str | None) -> dict | None:
    """The check columns as they apply to a photo of `room`: an exterior's brightest part is the
    sky, so its colour cast is not judged (the number stays)."""
    skip = NOT_JUDGED.get(room or "", ())
    if not checks or not skip or not checks.get("quality_reasons"):
        return checks
    reasons = [r for r in checks["quality_reasons"].split("; ") if not r.startswith(skip)]
    return {**checks, "quality": "fail" if reasons else "pass", "quality_reasons": "; ".join(reasons) or None}


def make_checker(checks: bool, faces: bool = False, min_size: tuple[int, int] | None = None,
                 watermarks: bool = False) -> "PhotoChecker | None":
    """The checker `--checks [--faces] [--watermarks] [--min-size WxH]` ask for (faces and
    watermarks imply checks), or None."""
    if not (checks or faces or watermarks):
        return None
    t = Thresholds() if not min_size else Thresholds(min_long_side=min_size[0], min_short_side=min_size[1])
    return PhotoChecker(t, faces=faces, watermarks=watermarks)


@dataclass
class PhotoChecker:
    thresholds: Thresholds = Thresholds()
    faces: bool = False
    watermarks: bool = False

    def __post_init__(self):
        from .duplicates import _imagehash

        _imagehash()  # fail now, with the install hint, not in a decoding thread
        # The checks run in the tagger's decoding threads beside ONNX Runtime: OpenCV's own thread
        # pool would only fight them for the cores (tag --checks on 2 cores: measured faster).
        _cv2().setNumThreads(1)
        self._watermarks = WatermarkDetector() if self.watermarks else None
        self._detector = None
        if self.faces:
            from .faces import FaceDetector

            self._detector = FaceDetector()

    @property
    def min_side(self) -> int:
        """The short side the tagger decodes photos at, at least, for the checks: the working
        size, or the watermark network's reading size where that is larger."""
        return max(WORK_SIDE, self._watermarks.side if self._watermarks is not None else 0)

    def __call__(self, im: Image.Image, size: tuple[int, int]) -> dict:
        """The check columns of one decoded photo (`size`: its full width and height)."""
        from .duplicates import HASH_SIDE, image_hashes
        from .faces import format_boxes

        try:
            rgb = measure_image(im)
            out = measure_array(rgb, size, self.thresholds).columns()
            if self._watermarks is not None:
                out.update(self._watermarks.columns(self._watermarks.reading_image(im)))
            if self._detector is not None:
                boxes = self._detector.detect(rgb)
                out["faces"], out["face_boxes"] = len(boxes), format_boxes(boxes)
            out[HASHES] = [f"{h:016x}" for h in image_hashes(Image.fromarray(work_image(Image.fromarray(rgb), HASH_SIDE)))]
        except Exception as e:  # noqa: BLE001 -- one odd photo must not stop a run of thousands
            return {"quality_reasons": f"checks failed: {type(e).__name__}: {e}"}
        return out
