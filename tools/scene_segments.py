"""How much of each photo is wall, floor, bed, sofa, ...: ADE20K segment areas, for mining photos to label.

    python tools/scene_segments.py ../shared/data/rooms-web ../shared/data/houses \
        --model ../shared/weights/deeplabv3_mnv2_ade20k_uint8.tflite --out runs/segments.csv

Runs the DeepLabV3-MobileNetV2 ADE20K network of ../shared/weights (input 512 x 512 uint8 RGB, the
photo stretched to it; output the class of every pixel, 31 ADE20K classes plus "other") on every
photo under the folders given and writes one row per photo: its path relative to the folder
../shared/data (or as given when outside it) and the share of the photo's pixels in each class.
Used to find empty rooms to label by eye (tools/mine_empty.py: much floor and wall, no furniture);
tagging never runs this network. About 60 ms a photo on 2 cores; an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from estatelens.data.images import PhotoError, is_image_name, open_rgb  # noqa: E402
from estatelens.tagging.core import iter_input_paths  # noqa: E402

ADE = ["other", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
       "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car",
       "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair"]
SIZE = 512


class Segmenter:
    """The ADE20K network through LiteRT: the share of a photo's pixels in each of the 32 classes."""

    def __init__(self, path: str, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=path, num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]

    def areas(self, path: str) -> np.ndarray:
        im = open_rgb(path).resize((SIZE, SIZE), Image.BILINEAR)
        self.it.set_tensor(self.inp, np.asarray(im, np.uint8)[None])
        self.it.invoke()
        classes = self.it.get_tensor(self.out)[0]
        return np.bincount(classes.ravel(), minlength=len(ADE))[:len(ADE)] / classes.size


def relative(p: Path, data: Path) -> str:
    try:
        return p.resolve().relative_to(data.resolve()).as_posix()
    except ValueError:
        return str(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--model", required=True, help="deeplabv3_mnv2_ade20k_uint8.tflite")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"),
                    help="paths are written relative to this folder (default ../shared/data)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    out, data = Path(args.out), Path(args.data)
    paths = sorted(Path(p) for p in iter_input_paths(args.folders) if is_image_name(p))
    done = set()
    if out.exists():  # resume: keep the rows written, segment the rest
        with open(out, newline="", encoding="utf-8") as f:
            done = {row["path"] for row in csv.DictReader(f)}
    todo = [p for p in paths if relative(p, data) not in done]
    seg = Segmenter(args.model, args.threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if not done:
            w.writerow(["path", *ADE])
        for p in tqdm(todo, desc="segmenting", unit="photo"):
            try:
                a = seg.areas(str(p))
            except PhotoError as e:
                print(f"  skipped {p}: {e}", file=sys.stderr)
                continue
            w.writerow([relative(p, data), *(f"{v:.4f}" for v in a)])
            f.flush()
    print(f"{out}: {len(done) + len(todo)} photos ({len(todo)} segmented now)")


if __name__ == "__main__":
    main()
