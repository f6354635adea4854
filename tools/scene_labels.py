"""Pseudo-labels from a COCO object detector, for the open-plan cue heads (src/estatelens/also.py).

    python tools/scene_labels.py ../shared/data --detector ../shared/weights/yolox_nano_coco.onnx \
        --out data/labels/objects.csv

Runs YOLOX-Nano (../shared/weights/README.md: input 416 px BGR 0-255 letterboxed top-left with
114, raw output decoded on the 8/16/32 grid) on every photo under the folders given, leaving out
held-apart photos (any path with a test/ or val/ folder of rooms-web or rooms-places: the
open-plan labels by eye are scored there), and writes one column per cue: the detector's best
score for that cue's COCO classes, as yes (>= 0.5), no (< 0.15) or unsure (between: left out of
training). The detector is needed only here, to build the cue heads; tagging never runs it.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from estatelens.data.images import is_image_name  # noqa: E402

COCO = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
        "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
        "scissors", "teddy bear", "hair drier", "toothbrush"]
# cue column -> the COCO classes that show it (the room type each cue stands for is in also.py)
CUES = {"dining_table": ["dining table"], "kitchen_appliance": ["oven", "refrigerator", "microwave", "sink"],
        "couch": ["couch"]}
YES_AT, NO_BELOW = 0.5, 0.15
SIZE = 416
HELD_APART = ("/test/", "/rooms-web/val/", "/rooms-places/val/")


class YoloX:
    """YOLOX-Nano through ONNX Runtime: the best score per COCO class for a photo."""

    def __init__(self, path: str, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.n_anchors = sum((SIZE // stride) ** 2 for stride in (8, 16, 32))  # 52x52 + 26x26 + 13x13 cells

    def class_scores(self, path: str) -> np.ndarray:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            r = min(SIZE / im.width, SIZE / im.height)
            im = im.resize((max(1, int(im.width * r)), max(1, int(im.height * r))), Image.BILINEAR)
        canvas = np.full((SIZE, SIZE, 3), 114, np.float32)
        a = np.asarray(im, np.float32)[:, :, ::-1]  # RGB -> BGR
        canvas[:a.shape[0], :a.shape[1]] = a
        out = self.session.run(None, {"images": canvas.transpose(2, 0, 1)[None]})[0][0]
        if out.shape != (self.n_anchors, 85):
            raise ValueError(f"unexpected detector output {out.shape}")
        return (out[:, 4:5] * out[:, 5:]).max(axis=0)  # objectness x class probability, best box


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--detector", required=True, help="yolox_nano_coco.onnx")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    paths = sorted(str(p) for f in args.folders for p in Path(f).rglob("*")
                   if p.is_file() and is_image_name(p.name) and not any(h in str(p) for h in HELD_APART))
    det = YoloX(args.detector)
    index = {c: i for i, c in enumerate(COCO)}
    counts = {c: {"yes": 0, "no": 0, "unsure": 0} for c in CUES}
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", *CUES])
        for p in tqdm(paths, desc="detecting", unit="photo"):
            try:
                s = det.class_scores(p)
            except (OSError, ValueError) as e:
                print(f"  skipped {p}: {e}", file=sys.stderr)
                continue
            row = []
            for cue, classes in CUES.items():
                v = max(float(s[index[c]]) for c in classes)
                label = "yes" if v >= YES_AT else "no" if v < NO_BELOW else "unsure"
                counts[cue][label] += 1
                row.append(label)
            w.writerow([Path(os.path.relpath(Path(p).resolve(), out.parent.resolve())).as_posix(), *row])
    tmp.replace(out)
    print(f"{out}: {len(paths)} photos; {counts}")


if __name__ == "__main__":
    main()
