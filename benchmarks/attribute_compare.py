"""Attribute heads of several bundles on the same held-apart photos.

    python benchmarks/attribute_compare.py --models OLD,NEW      # -> benchmarks/results/attribute_compare.md

The test split of the fireplace labels (../shared/data/attributes.csv and data/labels/fireplace.csv,
split as `train-attribute` splits them, seed 0; no bundle's head was fitted or calibrated on these
photos) and of the balcony labels, tagged by each bundle; average precision, and precision and
recall at each head's own shipped threshold, overall and per group of photos (rooms-web living
rooms, houses interiors, other).
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from tagging_speed import DATA, ROOT, machine, write_report

from estatelens.bundle import load_bundle
from estatelens.data.attribute_labels import read_attribute_label_sources
from estatelens.tagging import tag_photos

SOURCES = {"fireplace": [DATA / "attributes.csv", ROOT / "data" / "labels" / "fireplace.csv"],
           "balcony": [DATA / "attributes.csv", ROOT / "data" / "labels" / "balcony.csv"]}
# Label sets heads were trained on before: a photo one of them put in train or val is left out of
# the test photos, so that a head trained on the older set is never scored on its own training photos.
EARLIER_SOURCES = {"balcony": [[DATA / "attributes.csv"]]}


def group(path: str) -> str:
    if "/rooms-web/" in path:
        return "rooms-web"
    if "/houses/" in path:
        return "houses exteriors" if Path(path).stem.endswith(("frontal", "exterior")) else "houses interiors"
    return "rooms-places"


def scores(y: np.ndarray, p: np.ndarray, threshold: float | None) -> dict:
    out = {"n": int(len(y)), "yes": int(y.sum()),
           "ap": float(average_precision_score(y, p)) if 0 < y.sum() < len(y) else None}
    if threshold is not None:
        said = p >= threshold
        out.update(said_yes=int(said.sum()), precision=float(y[said].mean()) if said.any() else None,
                   recall=float(said[y == 1].mean()) if y.any() else None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma-separated bundles")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attribute_compare.md"))
    ap.add_argument("--attributes", default=",".join(SOURCES), help="comma-separated (default: all)")
    args = ap.parse_args()
    names = args.models.split(",")
    results: dict = {}
    for attr in args.attributes.split(","):
        sources = SOURCES[attr]
        test = [s for s in read_attribute_label_sources(sources, attr).samples if s.split == "test"]
        for earlier in EARLIER_SOURCES.get(attr, []):
            seen = {s.path for s in read_attribute_label_sources(earlier, attr).samples if s.split != "test"}
            test = [s for s in test if s.path not in seen]
        y = np.array([s.label == "yes" for s in test], dtype=int)
        groups = np.array([group(s.path) for s in test])
        for name in names:
            bundle = load_bundle(name)
            head = next(h for h in bundle.attributes if h.name == attr)
            p = np.array([r.attributes[attr] if r.ok else np.nan for r in tag_photos(bundle, [s.path for s in test])])
            results.setdefault(attr, {})[name] = {
                "threshold": head.threshold, "all": scores(y, p, head.threshold),
                **{g: scores(y[groups == g], p[groups == g], head.threshold) for g in sorted(set(groups))}}
    write(names, results, Path(args.out))


def write(names, results, out: Path) -> None:
    pct = lambda v: "–" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    num = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["# Attribute heads on the same held-apart photos", "",
             f"Written by `python benchmarks/attribute_compare.py --models {','.join(names)}` on "
             f"{datetime.date.today().isoformat()}; {machine()}.", ""]
    for attr, by_model in results.items():
        lines += [f"## {attr}", "", "| photos | yes / all | " + " | ".join(
            f"`{Path(n).name}` AP | precision / recall at its threshold (said yes)" for n in names) + " |",
            "|---|---:|" + "---:|---|" * len(names)]
        for g in by_model[names[0]]:
            if g == "threshold":
                continue
            first = by_model[names[0]][g]
            cells = []
            for n in names:
                s = by_model[n][g]
                at = (f"{pct(s.get('precision'))} / {pct(s.get('recall'))} ({s.get('said_yes')})"
                      if by_model[n]["threshold"] is not None else "no threshold")
                cells += [num(s["ap"]), at]
            lines.append(f"| {g} | {first['yes']} / {first['n']} | " + " | ".join(cells) + " |")
        lines.append("")
    write_report(out, lines, results)


if __name__ == "__main__":
    main()
