"""How the bundled model holds up on photos unlike its training data: small, greyscale, recompressed.

    python benchmarks/robustness.py      # writes benchmarks/results/robustness.md

Listing photos from other portals arrive as thumbnails, in black and white, or recompressed. This
takes the held-apart rooms-web/test and houses test-split photos, degrades every one of them in a
temporary folder, and scores estatelens and RoomNet (on the classes both know) on the same
degraded photos. Needs `pip install -e .[bench]` and ../shared beside the repository.
"""
from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tagging_speed import DATA, ROOT, SHARED_CLASSES, machine, roomnet_predict

from estatelens.bundle import load_bundle
from estatelens.data.dataset import load_collection
from estatelens.tagging import tag_photos


def _small(im: Image.Image, side: int) -> Image.Image:
    im = im.copy()
    im.thumbnail((side, side), Image.BILINEAR)
    return im


DEGRADATIONS = {
    "original": lambda im: im,
    "greyscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "small (long side 160 px)": lambda im: _small(im, 160),
    "tiny (long side 96 px)": lambda im: _small(im, 96),
    "JPEG quality 25": lambda im: im,  # saved at quality 25 below
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rooms")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "robustness.md"))
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    samples = (load_collection(DATA / "rooms-web" / "test", assign=False, progress=False).samples
               + load_collection(DATA / "houses" / "photos.csv", progress=False).split("test"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, degrade in DEGRADATIONS.items():
            folder = Path(tmp) / str(len(results))
            folder.mkdir()
            paths = []
            for i, s in enumerate(samples):
                with Image.open(s.path) as im:
                    out = degrade(ImageOps.exif_transpose(im).convert("RGB"))
                p = folder / f"{i:05d}.jpg"
                out.save(p, quality=25 if "quality" in name else 90)
                paths.append(str(p))
            ours = [r.room_type for r in tag_photos(bundle, paths)]
            shared = [i for i, s in enumerate(samples) if s.label in SHARED_CLASSES]
            theirs, _ = roomnet_predict([paths[i] for i in shared], 2)
            results[name] = {
                "n": len(samples), "n_shared": len(shared),
                "estatelens_all": float(np.mean([o == s.label for o, s in zip(ours, samples)])),
                "estatelens_shared": float(np.mean([ours[i] == samples[i].label for i in shared])),
                "roomnet_shared": float(np.mean([t == samples[i].label for t, i in zip(theirs, shared)])),
            }
            print(name, results[name], flush=True)
    lines = ["# Robustness: degraded copies of held-apart photos", "",
             f"Written by `python benchmarks/robustness.py` on {datetime.date.today().isoformat()}; "
             f"{machine()}.", "",
             f"Photos: rooms-web/test and the houses test split ({len(samples)} photos), each degraded as "
             f"the row says; model `{args.model}`.", "",
             "| photos | estatelens, all classes | estatelens, classes RoomNet knows | RoomNet, same photos |",
             "|---|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {100 * r['estatelens_all']:.1f} % | {100 * r['estatelens_shared']:.1f} % "
                     f"| {100 * r['roomnet_shared']:.1f} % |")
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(out.read_text())


if __name__ == "__main__":
    main()
