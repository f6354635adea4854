"""Choose the rooms-places/extra photos the default model trains on, and write them as a CSV.

../shared/data/rooms-places/extra is Places365 at its noisiest (see the data README): its
"entrance_hall" photos are mostly churches, museums, stations and palace halls, and a third of its
"dining_room" photos are restaurants, banquet halls or kitchens. So:
- bathroom, bedroom, kitchen, living_room: every photo (the label noise there is the usual kind);
- dining_room: only photos to which the model given by --model (the shipped one by default) gives
  dining_room at least --min-probability: a restaurant looks like a restaurant to it;
- entrance_hall: none (a home's hall is the exception there, and the model would learn churches).
Every row gets split=train: these photos only ever train; validation comes from the other sources.

    python tools/select_places_extra.py ../shared/data/rooms-places/extra --out data/labels/places-extra.csv

The committed data/labels/places-extra.csv was made so on 2026-12-01 with the model shipped then
(Lite1, trained without these photos); tools/build_default_model.sh reads that file, so rebuilding
the default model never depends on which model happens to be installed. Paths in the CSV are
relative to its folder.
"""
from __future__ import annotations

import argparse
import csv
import os
from collections import Counter
from pathlib import Path

from estatelens.bundle import load_bundle
from estatelens.data.dataset import read_folder
from estatelens.tagging.core import tag_photos

TAKE_ALL = ("bathroom", "bedroom", "kitchen", "living_room")
FILTERED = ("dining_room",)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("extra", help="the rooms-places/extra folder (class subfolders)")
    p.add_argument("--out", required=True, help="CSV to write: path,label,split")
    p.add_argument("--model", default="rooms", help="bundle that filters dining_room (default: the shipped rooms)")
    p.add_argument("--min-probability", type=float, default=0.5)
    args = p.parse_args()

    samples, _ = read_folder(Path(args.extra))
    chosen = [s for s in samples if s.label in TAKE_ALL]
    check = [s for s in samples if s.label in FILTERED]
    bundle = load_bundle(args.model)
    for s, row in zip(check, tag_photos(bundle, [s.path for s in check])):
        if row.ok and row.scores.get(s.label, 0.0) >= args.min_probability:
            chosen.append(s)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for s in chosen:
            w.writerow([os.path.relpath(Path(s.path).resolve(), out.parent.resolve()), s.label, "train"])
    kept, had = Counter(s.label for s in chosen), Counter(s.label for s in samples)
    print(", ".join(f"{c} {kept[c]}/{had[c]}" for c in sorted(had)), f"-> {out}")


if __name__ == "__main__":
    main()
