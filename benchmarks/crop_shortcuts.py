"""Can crops be told from whole photos by pixel statistics alone? The check behind the crop
generator's shortcut closing (estatelens/crops/generator.py).

    python benchmarks/crop_shortcuts.py      # writes benchmarks/results/crop_shortcuts.md (+ .json)

For 700 training-split sources of houses and rooms-web (the train-crops source filter), two samples
each (one cropped, one not) are made by the generator under several settings. A logistic
regression on six pixel statistics (crops/train.py: low_level_statistics) is fitted on half the
sources and scored (ROC AUC) on the other half. About 6 minutes on 2 cores.

- 192 px without blur: what resampling leaves when the sources are small. A crop of a 416 px photo
  is reduced by about 1, the whole photo by about 2.
- 64 px without blur: every sample is reduced by three or more, so only the scene's own scale can
  be left. A crop zooms in, and a real crop shares that.
- 192 px with the default blur (U(0, 1) px on both classes): what train-crops uses.
"""
from __future__ import annotations

import datetime
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tagging_speed import DATA, ROOT, machine

CONFIGS = [("192 px, no blur", 192, 40, 0.0), ("64 px, no blur", 64, 12, 0.0), ("192 px, blur 1.0 (default)", 192, 40, 1.0)]
N_SOURCES = 700


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from estatelens.crops.generator import CropSettings, check_source, source_key, split_of, variants_of
    from estatelens.crops.train import LOW_LEVEL, low_level_statistics
    from estatelens.tagging.core import iter_input_paths

    base = CropSettings()
    candidates = []
    for root in (DATA / "houses" / "photos", DATA / "rooms-web"):
        candidates += [(p, source_key(os.path.abspath(p), root)) for p in iter_input_paths([root])]
    random.Random(0).shuffle(candidates)
    sources = [(p, k) for p, k in candidates if split_of(k) == "train" and check_source(p, base) == "ok"][:N_SOURCES]
    results = []
    for name, size, patch, blur in CONFIGS:
        s = CropSettings(size=size, patch=patch, blur=blur)

        def stats(item):
            return [(v.cropped, low_level_statistics(v.image)) for v in variants_of(item[0], s, 2, 0, item[1])]

        with ThreadPoolExecutor(2) as pool:
            rows = [r for group in pool.map(stats, sources) for r in group]
        y = np.array([r[0] for r in rows])
        X = np.stack([r[1] for r in rows])
        half = len(y) // 2  # two samples per source: the halves never share a source
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[:half], y[:half])
        auc = float(roc_auc_score(y[half:], clf.predict_proba(X[half:])[:, 1]))
        single = {n: float(max(a, 1 - a)) for n, a in
                  ((n, roc_auc_score(y, X[:, i])) for i, n in enumerate(LOW_LEVEL))}
        results.append({"setting": name, "probe_auc": auc, "single_statistic_auc": single})
        print(f"{name}: probe AUC {auc:.3f}", flush=True)
    r = {"date": datetime.date.today().isoformat(), "machine": machine(), "sources": len(sources), "results": results}
    out = ROOT / "benchmarks" / "results" / "crop_shortcuts"
    out.with_suffix(".json").write_text(json.dumps(r, indent=2))
    lines = ["# Crops against whole photos, by pixel statistics alone", "",
             f"Written by `python benchmarks/crop_shortcuts.py` on {r['date']}. Machine: {r['machine']}.", "",
             f"{r['sources']} training-split sources of houses and rooms-web, one cropped and one whole sample "
             "each; a logistic regression on six pixel statistics, fitted on half the sources, scored on the other half.",
             "", "| samples | probe ROC AUC | best single statistic (AUC either way) |", "|---|---:|---|"]
    for x in results:
        best = max(x["single_statistic_auc"].items(), key=lambda kv: kv[1])
        lines.append(f"| {x['setting']} | **{x['probe_auc']:.3f}** | {best[0]} {best[1]:.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
