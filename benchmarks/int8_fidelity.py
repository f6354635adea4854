"""How faithfully int8 copies of a network follow their float network, and what that does to accuracy.

    python benchmarks/int8_fidelity.py FLOAT_BUNDLE INT8_BUNDLE [INT8_BUNDLE ...] \
        [--out benchmarks/results/int8_fidelity.md]

On rooms-web/test and rooms-places/val (../shared/data), for the float bundle and each int8 copy:
top-1 accuracy, recall per class, the share of photos whose top class is the float network's
(agreement) and the mean absolute difference of the probabilities from the float network's.
Accuracy alone hides what quantisation does: an int8 copy can score above its float network by
moving a few photos across a boundary, and a class of ~100 photos moves by a point per photo.
Agreement and probability difference say how much of an int8 score is the network and how much is
rounding. Writes the Markdown report and a JSON file beside it.
"""
from __future__ import annotations

import argparse
import datetime

import numpy as np

from tagging_speed import DATA, ROOT, machine, write_report

from estatelens.bundle import load_bundle
from estatelens.data.dataset import load_collection

SETS = ("rooms-web/test", "rooms-places/val")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("float_bundle")
    ap.add_argument("int8_bundles", nargs="+")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "int8_fidelity.md"))
    args = ap.parse_args()
    bundles = [args.float_bundle, *args.int8_bundles]
    results: dict = {"date": datetime.date.today().isoformat(), "machine": machine(), "sets": {}}
    lines = ["# Int8 copies against their float network", "",
             f"Written by `python benchmarks/int8_fidelity.py {' '.join(bundles)}` on {results['date']}; "
             f"{results['machine']}.", ""]
    for name in SETS:
        samples = load_collection(DATA / name, progress=False).samples
        labels = np.array([s.label for s in samples])
        classes_present = sorted(set(labels))
        probs, classes = {}, None
        for b in bundles:
            bundle = load_bundle(b)
            classes = classes or bundle.classes
            if bundle.classes != classes:
                raise SystemExit(f"{b}: classes {bundle.classes} differ from {classes}")
            probs[b] = bundle.predict_files([s.path for s in samples])
        ref = probs[args.float_bundle]
        rows = {}
        for b in bundles:
            pred = np.array(classes)[probs[b].argmax(1)]
            rows[b] = {"accuracy": float((pred == labels).mean()),
                       "agreement": float((probs[b].argmax(1) == ref.argmax(1)).mean()),
                       "mean_abs_diff": float(np.abs(probs[b] - ref).mean()),
                       "recall": {c: float((pred[labels == c] == c).mean()) for c in classes_present}}
        results["sets"][name] = {"photos": len(samples), "bundles": rows}
        lines += [f"## {name} ({len(samples)} photos)", "",
                  "| bundle | top-1 | top class as float's | mean abs. prob. difference | "
                  + " | ".join(classes_present) + " |",
                  "|---|---:|---:|---:|" + "---:|" * len(classes_present)]
        for b, r in rows.items():
            tag = " (float)" if b == args.float_bundle else ""
            lines.append(f"| `{b}`{tag} | {100 * r['accuracy']:.1f} % | {100 * r['agreement']:.1f} % | "
                         f"{r['mean_abs_diff']:.4f} | "
                         + " | ".join(f"{100 * r['recall'][c]:.1f}" for c in classes_present) + " |")
        lines.append("")
    write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
