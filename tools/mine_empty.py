"""Photos likely to show an empty (unfurnished) room, to label by eye for the `empty` attribute.

    python tools/mine_empty.py runs/segments.csv --labels data/labels/empty.csv --top 200 --out candidates.csv
    python tools/contact_sheets.py candidates.csv --out sheets/ --grid 5x4 --cell 320

Reads the segment areas of tools/scene_segments.py and ranks the photos of rooms that are furnished
when lived in (bedrooms, living rooms, dining rooms: bathrooms, kitchens and exteriors look
the same empty or not, and halls are bare either way: data/labels/README.md calls them unsure) by how bare they are: the share of wall, floor, ceiling,
window and door, less three times the share of movable things (bed, table, chair, sofa, armchair,
shelf, rug, plant, painting, person). A photo needs some floor in view (8 %), which leaves out
close-ups. Photos already in --labels are left out. With --near-labelled the ranking is instead by
likeness to the empty rooms labelled so far: the mean cosine, in the `rooms` network's embedding,
to the three nearest photos labelled `yes` in --labels. With --random N it writes N photos drawn
at random (--seed) instead: with --rooms bathroom,kitchen,exterior, the negatives of other room
types that a head needs besides (a bathroom has no movable furniture either).
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ROOMS = {"bedroom", "living_room", "dining_room"}
STRUCTURE = ["wall", "floor", "ceiling", "windowpane", "door"]
MOVABLE = ["bed", "table", "chair", "sofa", "armchair", "shelf", "rug", "plant", "painting", "person"]
MIN_FLOOR = 0.08
sys.path.insert(0, str(ROOT / "src"))


def room_of(path: str) -> str:
    """The room type a shared photo is filed under: its folder, or the name's suffix for houses."""
    p = Path(path)
    if p.parts[0] == "houses":
        return p.stem.split("_", 1)[1].replace("frontal", "exterior")
    return p.parent.name


def labels_key(path: str) -> str:
    """A shared-data path as data/labels/*.csv write it (relative to data/labels/)."""
    return f"../../../shared/data/{path}"


def near_labelled(paths: list[str], yes: list[str], k: int = 3) -> np.ndarray:
    """Each photo's mean cosine to its k nearest `yes` photos, in the `rooms` network's embedding."""
    from estatelens.bundle import load_bundle
    from estatelens.inference import predict_stream

    bundle = load_bundle("rooms")

    def embed(files: list[str]) -> np.ndarray:
        preds = list(predict_stream(bundle, files, batch_size=32, embeddings=True))
        size = next(p.embedding.shape for p in preds if p.embedding is not None)
        for p in preds:
            if p.embedding is None:
                print(f"  left out {p.path}: {p.status}", file=sys.stderr)
        e = np.stack([p.embedding if p.embedding is not None else np.full(size, np.nan) for p in preds])
        return e / np.linalg.norm(e, axis=1, keepdims=True)  # a photo left out: NaN, ranked last

    cos = embed([str(DATA / p) for p in paths]) @ embed(yes).T
    return np.sort(cos, axis=1)[:, -k:].mean(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("segments", help="CSV of tools/scene_segments.py")
    ap.add_argument("--labels", default=str(ROOT / "data" / "labels" / "empty.csv"),
                    help="photos already labelled, left out")
    ap.add_argument("--top", type=int, default=200)
    ap.add_argument("--near-labelled", action="store_true",
                    help="rank by the rooms embedding's likeness to the photos labelled yes (needs the [train] extra)")
    ap.add_argument("--random", type=int, default=0, help="draw this many photos at random instead")
    ap.add_argument("--rooms", default=",".join(sorted(ROOMS)), help="room types (folders) to draw from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    labels = {}
    if Path(args.labels).exists():
        with open(args.labels, newline="", encoding="utf-8") as f:
            labels = {r["path"]: r["empty"] for r in csv.DictReader(f)}
    rows, rooms = [], set(args.rooms.split(","))
    with open(args.segments, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if room_of(r["path"]) not in rooms or labels_key(r["path"]) in labels:
                continue
            structure = sum(float(r[c]) for c in STRUCTURE)
            movable = sum(float(r[c]) for c in MOVABLE)
            rows.append((r["path"], structure - 3 * movable, structure, movable, float(r["floor"])))
    if args.random:
        picked = random.Random(args.seed).sample(rows, min(args.random, len(rows)))
    elif args.near_labelled:
        yes = [p for p, v in labels.items() if v == "yes"]
        likeness = near_labelled([r[0] for r in rows], [str((Path(args.labels).parent / p).resolve()) for p in yes])
        picked = [rows[i] for i in np.argsort(-likeness)[:args.top]]
    else:
        picked = sorted((r for r in rows if r[4] >= MIN_FLOOR), key=lambda r: -r[1])[:args.top]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label_path", "room", "bare", "structure", "movable"])
        for path, bare, structure, movable, _ in picked:
            w.writerow([str(DATA / path), labels_key(path), room_of(path),
                        f"{bare:.3f}", f"{structure:.3f}", f"{movable:.3f}"])
    print(f"{args.out}: {len(picked)} of {len(rows)} photos")


if __name__ == "__main__":
    main()
