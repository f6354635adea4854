"""The bundled crop model on plain photos, the way `tag --crops` sees them.

    python benchmarks/crop_detection.py        # writes benchmarks/results/crop_detection.md (+ .json)

`train-crops` scores on samples from its own generator (blurred, re-encoded). This asks whether
that transfers to photos as they are. Each held-apart test source of `train-crops` is used: the
houses photos and rooms-web, with the same split and the same source filter. The source photo, as
published, is the uncropped case. The same photo cropped at factor f, at a random position, and
not re-encoded, is the cropped case. Both go through CropDetector.predict_photo, as in tagging.
Reported: ROC AUC and accuracy of cropped vs not, and the crop-factor error, for f drawn from the
training range and for each fixed f from 0.5 to 0.9. Also photos/s of the detector alone. About 3
minutes on 2 cores.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tagging_speed import DATA, ROOT, machine

FACTORS = (None, 0.5, 0.6, 0.7, 0.8, 0.9)  # None: drawn from the training range


def test_sources(settings) -> list[tuple[str, str]]:
    from estatelens.crops.generator import check_source, source_key, split_of
    from estatelens.tagging.core import iter_input_paths

    out = []
    for root in (DATA / "houses" / "photos", DATA / "rooms-web"):
        for p in iter_input_paths([root]):
            if split_of(source_key(os.path.abspath(p), root)) == "test" and check_source(p, settings) == "ok":
                out.append((root.name if root.name != "photos" else "houses", p))
    return out


def main() -> None:
    from dataclasses import replace

    from sklearn.metrics import roc_auc_score

    from estatelens.crops.detector import CropDetector
    from estatelens.crops.generator import sample_rect, stable_seed
    from estatelens.data.images import read_photo

    if not (DATA / "houses").is_dir():
        sys.exit(f"needs {DATA}")
    det = CropDetector("crops")
    sources = test_sources(det.settings)
    from estatelens.crops.generator import source_key
    from estatelens.crops.train import split_keys_hash

    roots = {"houses": DATA / "houses" / "photos", "rooms-web": DATA / "rooms-web"}
    got = split_keys_hash([source_key(os.path.abspath(p), roots[o]) for o, p in sources])
    want = det.info.get("held_out", {}).get("test_keys_hash")
    if got != want:
        sys.exit(f"the bundled model's held-out photos ({want}) are not the ones found here ({got}): "
                 f"it was trained on other data or another split, so this would test on training photos")
    rows = []
    t_pred, n_pred = 0.0, 0
    for origin, path in sources:
        photo, _ = read_photo(path)
        t0 = time.perf_counter()
        whole = det.predict_photo(photo)
        t_pred += time.perf_counter() - t0
        n_pred += 1
        rows.append({"origin": origin, "factor": None, "cropped": 0, "true_factor": 1.0,
                     "p": whole.cropped_probability, "pred_factor": whole.factor})
        for f in FACTORS:
            s = det.settings if f is None else replace(det.settings, factor_range=(f, f))
            rng = np.random.default_rng(stable_seed(7, Path(path).name, f))
            x0, y0, x1, y1 = sample_rect(photo.width, photo.height, rng, s)
            pred = det.predict_photo(photo.crop((x0, y0, x1, y1)))
            rows.append({"origin": origin, "factor": f, "cropped": 1,
                         "true_factor": float(np.sqrt((x1 - x0) * (y1 - y0) / (photo.width * photo.height))),
                         "p": pred.cropped_probability, "pred_factor": pred.factor})

    def scores(subset: list[dict], factor) -> dict:
        part = [r for r in subset if r["cropped"] == 0 or r["factor"] == factor]
        y = np.array([r["cropped"] for r in part])
        p = np.array([r["p"] for r in part])
        err = np.array([abs(r["pred_factor"] - r["true_factor"]) for r in part])
        return {"n": len(part), "auc": float(roc_auc_score(y, p)), "accuracy": float(((p >= 0.5) == y).mean()),
                "factor_mae": float(err.mean()), "factor_mae_cropped": float(err[y == 1].mean())}

    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "model": str(det.path.name),
              "sources": {o: sum(1 for x, _ in sources if x == o) for o in ("houses", "rooms-web")},
              "photos_per_second": n_pred / t_pred, "by_factor": {}, "by_origin": {}}
    for f in FACTORS:
        result["by_factor"]["0.5-0.9 (drawn)" if f is None else f"{f}"] = scores(rows, f)
    for o in ("houses", "rooms-web"):
        result["by_origin"][o] = scores([r for r in rows if r["origin"] == o], None)
    out = ROOT / "benchmarks" / "results" / "crop_detection"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = ["# Crop detection on plain photos", "",
             f"Written by `python benchmarks/crop_detection.py` on {result['date']}. Machine: {result['machine']}.", "",
             f"Bundled model `{result['model']}`; held-apart test photos of train-crops: "
             f"{result['sources']['houses']} houses, {result['sources']['rooms-web']} rooms-web. Each photo as "
             "published (uncropped) against the same photo cropped at factor f (not re-encoded).", "",
             "| crop factor | pairs | ROC AUC | accuracy | crop-factor error | ... on crops |", "|---|---:|---:|---:|---:|---:|"]
    for k, s in result["by_factor"].items():
        lines.append(f"| {k} | {s['n'] // 2} | {s['auc']:.3f} | {100 * s['accuracy']:.1f} % | "
                     f"{100 * s['factor_mae']:.1f} % | {100 * s['factor_mae_cropped']:.1f} % |")
    lines += ["", "By source (factor drawn from 0.5-0.9):", "", "| photos | pairs | ROC AUC | crop-factor error |",
              "|---|---:|---:|---:|"]
    for k, s in result["by_origin"].items():
        lines.append(f"| {k} | {s['n'] // 2} | {s['auc']:.3f} | {100 * s['factor_mae']:.1f} % |")
    lines += ["", f"Detector alone (decoded photo in, prediction out, one at a time): "
                  f"{result['photos_per_second']:.0f} photos/s.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
