"""Do listing photos help estimate a house's price? The Houses Dataset, grouped cross-validation.

    python benchmarks/valuation.py        # -> benchmarks/results/valuation.md (+ .json, valuation/report.html)

The 178 houses of ../shared/data/houses (facts: bedrooms, bathrooms, area, zipcode; four photos
each): 5-fold cross-validation grouped by house, repeated with 5 seeds; every model, encoding,
photo projection, blend and interval is fitted on the training folds only (what
`estatelens value report` does). Besides the three models and the blend that `value predict`
uses, the photos alone (their ridge projection onto log price, cross-fitted) say how much price
information the photos hold at all.
"""
from __future__ import annotations

import argparse
import datetime
import time

import numpy as np

from tagging_speed import DATA, ROOT, machine, write_report

from estatelens.bundle import load_bundle
from estatelens.valuation import listing_photo_features, read_listings, read_photos_csv
from estatelens.valuation.model import PhotoScore, metrics
from estatelens.valuation.report import cross_validate, write_report as write_html_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rooms", help="the tagging bundle whose features the photos give")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "valuation.md"))
    args = ap.parse_args()
    houses = DATA / "houses"
    listings = read_listings(houses / "houses.csv")
    refs = read_photos_csv(houses / "photos.csv")
    bundle = load_bundle(args.model)
    photos, rooms = listing_photo_features(bundle, listings.ids, refs)
    t0 = time.time()
    cv = cross_validate(listings, photos, seeds=tuple(range(args.seeds)))
    seconds = time.time() - t0
    report_dir = ROOT / "benchmarks" / "results" / "valuation"
    report = write_html_report(cv, report_dir, title="Price models on the Houses Dataset (178 houses)")

    y = np.log(listings.price)
    features = photos.matrix[:, [j for j, c in enumerate(photos.columns) if not c.endswith("_max")]]
    alone = [metrics(listings.price, np.exp(PhotoScore(random_state=s).fit_transform(features, y)[:, 0]))
             for s in range(args.seeds)]
    photos_alone = {k: float(np.mean([m[k] for m in alone])) for k in alone[0]}
    results = {"metrics": report["metrics"], "differences": report["differences"], "photos_alone": photos_alone,
               "rooms_pooled": rooms, "seconds": seconds, "model": args.model}

    names = {"linear": "facts, linear regression on log price (the Oslo lecture's baseline)",
             "boosted": "facts, gradient boosting", "photos": "facts + photos, gradient boosting",
             "blend": "**the blend `value predict` uses**",
             "blend_facts": "the same blend, photos withheld (facts-only models)"}
    lines = ["# Price estimation: do the photos help?", "",
             f"Written by `python benchmarks/valuation.py` on {datetime.date.today().isoformat()}; {machine()}; "
             f"{seconds / 60:.1f} min.", "",
             f"The {len(cv.ids)} houses of ../shared/data/houses; 5-fold cross-validation grouped by house, "
             f"repeated with {args.seeds} seeds; all fitting (target encoding of zipcodes, the photo projection, "
             "blend weights, interval calibration) inside the training folds. Photo features: the "
             f"`{args.model}` bundle's embedding pooled per house (mean, and mean per room: {', '.join(rooms)}), "
             "mean room-type probabilities, maximum fireplace and balcony probabilities. HTML report with "
             "plots: `benchmarks/results/valuation/report.html`.", "",
             "| model | median APE | mean APE | R² (log price) | 80 % interval coverage |", "|---|---:|---:|---:|---:|"]
    for kind, m in report["metrics"].items():
        lines.append(f"| {names.get(kind, kind)} | {m['median_ape'] * 100:.1f} % (seed sd "
                     f"{m['median_ape_seed_sd'] * 100:.1f}) | {m['mean_ape'] * 100:.1f} % | {m['r2_log']:.3f} | "
                     f"{m['coverage'] * 100:.1f} % |")
    lines.append(f"| photos alone (no facts; ridge on the pooled features) | {photos_alone['median_ape'] * 100:.1f} % "
                 f"| {photos_alone['mean_ape'] * 100:.1f} % | {photos_alone['r2_log']:.3f} | |")
    lines += ["", "Differences in median absolute percentage error (negative: the first is better), 95 % "
              "bootstrap intervals over houses:", "", "| | difference | 95 % interval | |", "|---|---:|---:|---|"]
    for d in report["differences"]:
        lines.append(f"| {d['kind']} - {d['baseline']} | {d['median_ape_difference'] * 100:+.2f} points | "
                     f"[{d['ci95'][0] * 100:+.2f}, {d['ci95'][1] * 100:+.2f}] | "
                     f"{'excludes zero' if d['excludes_zero'] else 'includes zero'} |")
    write_report(args.out, lines, results)


if __name__ == "__main__":
    main()
