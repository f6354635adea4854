"""Add the open-plan cue heads (`also`, src/estatelens/also.py) to a bundle.

    python tools/add_also.py BUNDLE --cues data/labels/objects.csv --labels data/labels/also.csv

1. One logistic head per open-plan room type on the bundle's embedding, trained like an attribute
   head (`estatelens train-attribute`) on the detector's pseudo-labels in --cues
   (tools/scene_labels.py): dining_room from dining_table, kitchen from kitchen_appliance,
   living_room from couch.
2. One threshold for all of them, set on the photos labelled by eye in --labels (path, room_type,
   shown yes/no: does the photo show that room type?), which the cue heads never saw: each photo
   whose own room type is open-plan proposes the other open-plan room with the highest cue
   probability; where a label says whether the photo shows that room, the pair is a calibration
   point. The threshold is the lowest at which `also` is right at --precision or better with at
   least 5 right (training/attributes.choose_threshold); without one, no `also` heads are added.
3. Writes BUNDLE/also/<room>.json and prints what was measured (also kept in each head's info).

A new network proposes other pairs than the one the labels were made for. `--propose OUT.csv
--photos DIR...` lists the held-apart photos' proposals that no label answers yet, the surest
first (--top), for labelling by eye (tools/contact_sheets.py OUT.csv): the threshold is decided by
the surest proposals, so those are the ones to label. The bundle is left unchanged then.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from estatelens.also import ALSO_DIR, proposals  # noqa: E402
from estatelens.attributes import save_attribute_head  # noqa: E402
from estatelens.bundle import load_bundle  # noqa: E402
from estatelens.data.attribute_labels import read_attribute_labels  # noqa: E402
from estatelens.inference import predict_stream  # noqa: E402
from estatelens.training.attributes import choose_threshold, train_attribute  # noqa: E402

CUE_OF = {"dining_room": "dining_table", "kitchen": "kitchen_appliance", "living_room": "couch"}


def read_eye_labels(path: Path) -> dict[tuple[str, str], bool]:
    """(resolved photo path, room type) -> shown; a pair labelled twice must agree."""
    out: dict[tuple[str, str], bool] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for r in csv.DictReader(f):
            p = Path(r["path"])
            key = (str((path.parent / p).resolve() if not p.is_absolute() else p), r["room_type"])
            shown = r["shown"].strip().lower() == "yes"
            if key in out and out[key] != shown:
                raise ValueError(f"{path}: {r['path']} is labelled both ways for {r['room_type']}")
            out[key] = shown
    return out


def score(bundle, heads: dict, photos: list[str]) -> list[tuple[str, str | None, float]]:
    """(photo, proposed room or None, its cue probability) for each photo that decodes."""
    rooms, embs, kept = [], [], []
    for pred in predict_stream(bundle, photos, embeddings=True):
        if pred.probs is None:
            print(f"  skipped {pred.path}: {pred.status}")
            continue
        rooms.append(bundle.classes[int(np.argmax(pred.probs))])
        embs.append(pred.embedding)
        kept.append(str(pred.path))
    if not kept:
        return []
    cue_p = {room: head.probability(np.stack(embs)) for room, head in heads.items()}
    return [(photo, room, prob) for photo, (room, prob) in zip(kept, proposals(rooms, cue_p, list(heads)))]


def calibrate(bundle, heads: dict, labels: dict[tuple[str, str], bool], precision: float) -> dict:
    photos = sorted({p for p, _ in labels})
    y, p = [], []
    for photo, room, prob in score(bundle, heads, photos):
        if room is not None and (photo, room) in labels:
            y.append(int(labels[(photo, room)]))
            p.append(prob)
    y_arr, p_arr = np.array(y), np.array(p)
    threshold = choose_threshold(y_arr, p_arr, precision)
    said = p_arr >= threshold if threshold is not None else np.zeros(len(p_arr), dtype=bool)
    return {"labelled_photos": len(photos), "calibration_pairs": len(y), "shown": int(y_arr.sum()),
            "threshold": threshold, "target_precision": precision,
            "said_also": int(said.sum()), "right": int((said & (y_arr == 1)).sum()),
            "precision": round(float(y_arr[said].mean()), 4) if said.any() else None,
            "by_threshold": {f"{t:.1f}": {"said": int((p_arr >= t).sum()), "right": int(((p_arr >= t) & (y_arr == 1)).sum())}
                             for t in np.arange(0.3, 1.0, 0.1)}}


def write_proposals(bundle, heads: dict, labels: dict, folders: list[str], out: Path, top: int) -> None:
    from estatelens.tagging.core import iter_input_paths

    photos = sorted(str(Path(p).resolve()) for p in iter_input_paths(folders))
    todo = sorted(((prob, photo, room) for photo, room, prob in score(bundle, heads, photos)
                   if room is not None and (photo, room) not in labels), reverse=True)[:top]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "room_type", "probability"])
        w.writerows([photo, room, f"{prob:.4f}"] for prob, photo, room in todo)
    print(f"wrote {len(todo)} unlabelled proposals (probability {todo[-1][0]:.3f} to {todo[0][0]:.3f}) "
          f"to {out}" if todo else f"no unlabelled proposals: {out} is empty")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--cues", required=True, help="pseudo-labels from tools/scene_labels.py")
    ap.add_argument("--labels", required=True, help="open-plan labels by eye (data/labels/also.csv)")
    ap.add_argument("--precision", type=float, default=0.8,
                    help="precision `also` must reach on the labelled photos (default 0.8)")
    ap.add_argument("--propose", metavar="OUT_CSV", help=(
        "instead of adding the heads, list the unlabelled proposals on --photos for labelling by eye"))
    ap.add_argument("--photos", nargs="+", default=[], help="held-apart photo folders for --propose")
    ap.add_argument("--top", type=int, default=60, help="how many proposals --propose lists (default 60)")
    args = ap.parse_args()
    if args.propose and not args.photos:
        ap.error("--propose needs --photos")
    bundle = load_bundle(args.bundle)
    eye = read_eye_labels(Path(args.labels))  # before the minutes of training: a bad file fails now
    heads = {}
    for room, cue in CUE_OF.items():
        if room not in bundle.classes:
            continue
        fit = train_attribute(bundle, read_attribute_labels(args.cues, cue), target_precision=0.8, views=0,
                              progress=False, log=lambda m: print("  " + m))
        head = fit.head
        head.name = room
        head.info = {"cue": cue, "trained": head.info.get("trained"),
                     "test_against_the_detector": head.info.get("test")}
        heads[room] = head
    if len(heads) < 2:
        raise SystemExit(f"{args.bundle}: needs at least two of {', '.join(CUE_OF)} among its room types")
    if args.propose:
        write_proposals(bundle, heads, eye, args.photos, Path(args.propose), args.top)
        return
    report = calibrate(bundle, heads, eye, args.precision)
    print(json.dumps(report, indent=1))
    shutil.rmtree(bundle.path / ALSO_DIR, ignore_errors=True)
    if report["threshold"] is None:
        print(f"no threshold reaches precision {args.precision} with 5 right: no `also` heads added")
        return
    for head in heads.values():
        head.threshold = float(report["threshold"])
        head.target_precision = args.precision
        head.info["calibration"] = report
        save_attribute_head(bundle.path, head, ALSO_DIR)
    print(f"added {', '.join(heads)} cue heads to {bundle.path / ALSO_DIR} (threshold {report['threshold']:.3f})")


if __name__ == "__main__":
    main()
