"""How well does a bundle know what it does not know? Out-of-distribution scores compared.

    python benchmarks/ood.py --model rooms      # -> benchmarks/results/ood.md

In-distribution: the held-apart room photos (rooms-web/test, rooms-places/val, the houses and
exteriors-spb test splits). Out of it: photos a listing tagger should not call a room with
confidence, none of them trained on: the rooms-places/extra "entrance_hall" photos (mostly
churches, museums, stations and palace halls), the extra "dining_room" photos that
data/labels/places-extra.csv left out (restaurants, banquet halls), and drawn floor plans and text
cards (benchmarks/ood.py makes them: every portal has them, none of the data does).
Scores, higher meaning "more unusual":
- msp: 1 - the top calibrated probability (what --min-confidence thresholds);
- energy: -logsumexp of the head's logits (Liu et al. 2020);
- knn: cosine distance from the photo's embedding to its 10th nearest neighbour in the bundle's
  rehearsal set (Sun et al. 2022), the training photos the bundle carries.
For each: ROC AUC (in vs out) and the share of out-of-distribution photos still passed when the
threshold passes 95 % of the in-distribution ones (FPR at 95 % TPR; lower is better).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sklearn.metrics import roc_auc_score

from perception import held_apart_sets
from tagging_speed import DATA, ROOT, machine, write_report

from estatelens.bundle import load_bundle
from estatelens.ood import knn_distance
from estatelens.rehearsal import load_rehearsal
from estatelens.training.adapt import old_head


def drawn_photos(folder: Path, n: int = 60, seed: int = 0) -> list[str]:
    """Floor plans (rooms as rectangles, doors, labels, dimensions) and agency text cards."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    font = ImageFont.load_default(size=18)
    for i in range(n):
        im = Image.new("RGB", (800, 600), "white")
        d = ImageDraw.Draw(im)
        if i % 2 == 0:  # a floor plan
            x0, y0, x1, y1 = 60, 60, 740, 540
            d.rectangle((x0, y0, x1, y1), outline="black", width=6)
            for _ in range(rng.integers(3, 7)):
                if rng.random() < 0.5:
                    x = int(rng.integers(x0 + 80, x1 - 80))
                    d.line((x, y0, x, y1), fill="black", width=4)
                else:
                    y = int(rng.integers(y0 + 80, y1 - 80))
                    d.line((x0, y, x1, y), fill="black", width=4)
            for _ in range(5):
                x, y = int(rng.integers(x0 + 20, x1 - 120)), int(rng.integers(y0 + 20, y1 - 40))
                d.text((x, y), str(rng.choice(["Kitchen", "Bedroom", "Living", "Bath", "Hall", "WC"])), fill="black", font=font)
                d.text((x, y + 20), f"{rng.integers(5, 30)}.{rng.integers(0, 9)} m²", fill="black", font=font)
        else:  # a text card
            d.rectangle((0, 0, 800, 600), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
            for row in range(4):
                d.text((60, 120 + 90 * row), str(rng.choice(["FOR SALE", "Open house Sunday", "Call 555 0199",
                                                             "www.agency.example", "3 rooms · 72 m²"])),
                       fill="white", font=ImageFont.load_default(size=40))
        p = folder / f"drawn-{i:03d}.png"
        im.save(p)
        paths.append(str(p))
    return paths


def held_apart() -> list[str]:
    return [s.path for samples in held_apart_sets().values() for s in samples]


def unlike_photos(tmp: Path) -> dict[str, list[str]]:
    extra = DATA / "rooms-places" / "extra"
    chosen = set()
    with open(ROOT / "data" / "labels" / "places-extra.csv", newline="") as f:
        for r in csv.DictReader(f):
            chosen.add((ROOT / "data" / "labels" / r["path"]).resolve().name)
    return {
        "public halls (extra entrance_hall)": sorted(str(p) for p in (extra / "entrance_hall").glob("*.jpg")),
        "restaurants (extra dining_room left out)": sorted(str(p) for p in (extra / "dining_room").glob("*.jpg")
                                                           if p.name not in chosen),
        "floor plans and text cards (drawn)": drawn_photos(tmp / "drawn"),
    }


def scores(bundle, paths, w, b, rehearsal) -> dict[str, np.ndarray]:
    probs, embs = [], []
    for pred, emb in _with_embeddings(bundle, paths):
        probs.append(pred)
        embs.append(emb)
    p, e = np.array(probs), np.array(embs)
    logits = e @ w.T + b
    m = logits.max(1, keepdims=True)
    energy = -(m[:, 0] + np.log(np.exp(logits - m).sum(1)))
    return {"msp": 1 - p.max(1), "energy": energy, "knn": knn_distance(e, rehearsal)}


def _with_embeddings(bundle, paths):
    import numpy as np  # noqa: F811

    from estatelens.data.preprocess import decode_side
    from estatelens.inference import load_photo

    side = decode_side(bundle.preprocessing)
    for start in range(0, len(paths), 32):
        xs = [load_photo(p, bundle.preprocessing, side).x for p in paths[start:start + 32]]
        xs = [x for x in xs if x is not None]
        probs, emb = bundle.run_batch(np.stack(xs))
        yield from zip(probs, emb)


def outside_results(results: dict) -> dict:
    return {k: v for k, v in results.items() if k != "shipped_threshold"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rooms")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ood.md"))
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    rehearsal = load_rehearsal(bundle.path)
    w, b, _ = old_head(bundle)
    with tempfile.TemporaryDirectory() as tmp:
        reference = rehearsal.embeddings[rehearsal.clean]  # as the tagger measures
        inside = scores(bundle, held_apart(), w, b, reference)
        outside = {name: scores(bundle, ps, w, b, reference) for name, ps in unlike_photos(Path(tmp)).items()}
    results = {}
    for name, out in outside.items():
        results[name] = {}
        for kind in ("msp", "energy", "knn"):
            y = np.r_[np.zeros(len(inside[kind])), np.ones(len(out[kind]))]
            s = np.r_[inside[kind], out[kind]]
            threshold = np.quantile(inside[kind], 0.95)
            results[name][kind] = {"auc": float(roc_auc_score(y, s)), "fpr95": float(np.mean(out[kind] <= threshold)),
                                   "n": int(len(out[kind])), "lowest": float(out[kind].min())}
    shipped = bundle.info.get("ood", {}).get("threshold")
    flagged = None
    if shipped is not None:
        flagged = {"held-apart room photos": float(np.mean(inside["knn"] > shipped)),
                   **{name: float(np.mean(out["knn"] > shipped)) for name, out in outside.items()}}
        results["shipped_threshold"] = {"threshold": shipped, "called_uncertain": flagged}
    lines = ["# Out-of-distribution scores", "",
             f"Written by `python benchmarks/ood.py --model {args.model}` on {datetime.date.today().isoformat()}; "
             f"{machine()}.", "", f"In-distribution: {len(inside['msp'])} held-apart room photos.", "",
             "| out of distribution | photos | msp AUC | msp FPR95 | energy AUC | energy FPR95 | knn AUC | knn FPR95 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in outside_results(results).items():
        lines.append(f"| {name} | {r['msp']['n']} | " + " | ".join(
            f"{r[k]['auc']:.3f} | {100 * r[k]['fpr95']:.0f} %" for k in ("msp", "energy", "knn")) + " |")
    if flagged:
        lines += ["", f"With the bundle's shipped threshold ({shipped}, chosen on validation photos, not these), "
                  "the share that `estatelens tag` calls `uncertain` for being unusual:", "",
                  "| photos | called uncertain |", "|---|---:|"]
        lines += [f"| {name} | {100 * v:.1f} % |" for name, v in flagged.items()]
        lines += ["", "The margin: the lowest `unusual` score of each set against that threshold: "
                  + "; ".join(f"{name} {r['knn']['lowest']:.3f}" for name, r in outside_results(results).items())
                  + f" (the highest of the held-apart room photos: {float(inside['knn'].max()):.3f})."]
    write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
