"""How well the price models do on listings they were not fitted on: K-fold cross-validation
grouped by listing, repeated over seeds, each fold fitting everything (target encoding, photo
projection, interval calibration) on its training listings only; per-model metrics, bootstrap
confidence intervals of the differences, plots and an HTML page."""
from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .data import Listings
from .model import FOLDS, KINDS, fit_value_model, metrics
from .photos import ListingPhotos

BOOTSTRAP = 2000
SELECTED = "blend"  # what `value predict` gives
FACTS_BLEND = "blend_facts"  # the same blend without the photo model: what the photos add to `value predict`
SELECTED_TEXT = ("what `value predict` gives: the models blended with weights fitted on each fold's inner "
                 "out-of-fold estimates")


@dataclass
class CrossValidation:
    """Out-of-fold estimates: arrays (seeds, listings) per kind, for the listings with a price."""

    ids: list[str]
    price: np.ndarray
    value: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    seeds: list[int]

    def metrics(self) -> dict[str, dict]:
        """Per kind: the metrics of each seed's full pass, then their mean and spread."""
        out = {}
        for kind in self.value:
            per_seed = [metrics(self.price, self.value[kind][s], self.low[kind][s], self.high[kind][s])
                        for s in range(len(self.seeds))]
            out[kind] = {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}
            out[kind]["median_ape_seed_sd"] = float(np.std([m["median_ape"] for m in per_seed]))
        return out

    def ape(self, kind: str) -> np.ndarray:
        """Each listing's absolute percentage error averaged over the seeds."""
        return np.nanmean(np.abs(self.value[kind] - self.price) / self.price, axis=0)

    def difference(self, kind: str, baseline: str, seed: int = 0) -> dict:
        """Median APE of `kind` minus that of `baseline` (negative: `kind` is better) with a 95 %
        bootstrap interval, resampling listings."""
        a, b = self.ape(kind), self.ape(baseline)
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(a), size=(BOOTSTRAP, len(a)))
        diffs = np.median(a[idx], axis=1) - np.median(b[idx], axis=1)
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        return {"kind": kind, "baseline": baseline, "median_ape_difference": float(np.median(a) - np.median(b)),
                "ci95": [float(lo), float(hi)], "excludes_zero": bool(hi < 0 or lo > 0), "n": int(len(a))}


DESCRIPTIONS = {SELECTED: SELECTED_TEXT, FACTS_BLEND: "the same blend given no photos (facts-only models)"}


def cross_validate(listings: Listings, photos: ListingPhotos | None, *, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                   folds: int = FOLDS, kinds: Sequence[str] | None = None, progress: bool = True) -> CrossValidation:
    """Grouped K-fold by listing id, once per seed: every listing is estimated `len(seeds)` times
    by models that never saw it."""
    priced = np.flatnonzero(np.isfinite(listings.price))
    L = listings.subset(priced)
    P = photos.for_ids(L.ids) if photos is not None else None
    kinds = list(kinds or (["linear", "boosted"] + (["photos"] if P is not None else [])))
    shape = (len(seeds), len(L))
    value = {k: np.full(shape, np.nan) for k in kinds + [SELECTED] + ([FACTS_BLEND] if P is not None else [])}
    low = {k: np.full(shape, np.nan) for k in value}
    high = {k: np.full(shape, np.nan) for k in value}
    groups = np.array(L.ids)
    unique = np.unique(groups)
    with tqdm(total=len(seeds) * folds, desc="cross-validation", unit="fold", disable=not progress) as bar:
        for s, seed in enumerate(seeds):
            order = np.random.default_rng(seed).permutation(unique)
            fold_of = {g: i % folds for i, g in enumerate(order)}
            fold = np.array([fold_of[g] for g in groups])
            for f in range(folds):
                tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
                sub = _photo_rows(P, tr)
                model = fit_value_model(L.subset(tr), sub, seed=seed, kinds=kinds)
                test = L.subset(te)
                for name, ph in ((SELECTED, _photo_rows(P, te)), (FACTS_BLEND, None)):
                    if name not in value:
                        continue
                    for e, i in zip(model.predict(test, ph, drivers=0), te):
                        value[name][s, i], low[name][s, i], high[name][s, i] = e.value, e.low, e.high
                X = model.spec.matrix(test, _photo_rows(P, te))
                for kind in kinds:
                    if kind not in model.models:
                        continue
                    Xk = X if kind == "photos" else X[:, :model.spec.n_facts]
                    with threadpool_limits(1):
                        pred = model.models[kind].predict(Xk)
                    q = model.halfwidth[kind]
                    if kind == "photos":  # a test listing without photos is valued on its facts
                        pred = np.where(P.n_photos[te] > 0, pred, np.nan)
                    value[kind][s, te] = np.exp(pred)
                    low[kind][s, te], high[kind][s, te] = np.exp(pred - q), np.exp(pred + q)
                bar.update(1)
    return CrossValidation(L.ids, L.price, value, low, high, list(seeds))


def _photo_rows(P: ListingPhotos | None, rows) -> ListingPhotos | None:
    return P.take(rows) if P is not None else None


def write_report(cv: CrossValidation, out: str | os.PathLike, *, title: str, notes: Sequence[str] = ()) -> dict:
    """report.json, predicted-vs-actual and residual PNGs, and report.html under `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = cv.metrics()
    diffs = []
    if "photos" in cv.value:
        diffs.append(cv.difference("photos", "boosted"))
        diffs.append(cv.difference("photos", "linear"))
    if "boosted" in cv.value and "linear" in cv.value:
        diffs.append(cv.difference("boosted", "linear"))
    if "boosted" in cv.value:
        diffs.append(cv.difference(SELECTED, "boosted"))
    if FACTS_BLEND in cv.value:
        diffs.append(cv.difference(SELECTED, FACTS_BLEND))
    result = {"title": title, "listings": len(cv.ids), "seeds": cv.seeds, "folds": FOLDS, "metrics": m,
              "differences": diffs, "notes": list(notes)}
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")

    kinds = list(cv.value)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        v = np.nanmean(cv.value[kind], axis=0)
        ax.loglog(cv.price, v, ".", alpha=0.6)
        lim = [np.nanmin([cv.price.min(), np.nanmin(v)]), np.nanmax([cv.price.max(), np.nanmax(v)])]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set(title=f"{kind}: median APE {m[kind]['median_ape'] * 100:.1f} %", xlabel="actual price",
               ylabel="estimate (out of fold)")
    fig.tight_layout()
    fig.savefig(out / "predicted_vs_actual.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        v = np.nanmean(cv.value[kind], axis=0)
        ax.semilogx(v, np.log(cv.price) - np.log(v), ".", alpha=0.6)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(title=kind, xlabel="estimate", ylabel="log(actual / estimate)")
    fig.tight_layout()
    fig.savefig(out / "residuals.png", dpi=110)
    plt.close(fig)
    (out / "report.html").write_text(_html(result, out))
    return result


def _img(path: Path) -> str:
    return f'<img alt="{path.stem}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def _html(r: dict, out: Path) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(KINDS.get(k, DESCRIPTIONS.get(k, '')))}</td>"
        f"<td>{v['median_ape'] * 100:.1f} %</td><td>{v['mean_ape'] * 100:.1f} %</td><td>{v['r2_log']:.3f}</td>"
        f"<td>{v.get('coverage', float('nan')) * 100:.1f} %</td></tr>" for k, v in r["metrics"].items())
    diffs = "".join(
        f"<li>{html.escape(d['kind'])} minus {html.escape(d['baseline'])}: median APE "
        f"{d['median_ape_difference'] * 100:+.2f} points, 95 % interval [{d['ci95'][0] * 100:+.2f}, "
        f"{d['ci95'][1] * 100:+.2f}] ({'excludes' if d['excludes_zero'] else 'includes'} zero)</li>"
        for d in r["differences"])
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in r["notes"])
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(r['title'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:4px 10px;text-align:right}}
td:first-child,td:nth-child(2){{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(r['title'])}</h1>
<p>{r['listings']} listings; {r['folds']}-fold cross-validation grouped by listing, repeated with seeds
{', '.join(map(str, r['seeds']))}; every figure is on listings the model was not fitted on.</p>
<table><tr><th>model</th><th></th><th>median APE</th><th>mean APE</th><th>R² (log price)</th>
<th>80 % interval coverage</th></tr>{rows}</table>
<h2>Differences (bootstrap over listings)</h2><ul>{diffs}</ul>{notes}
<h2>Estimates against prices</h2>{_img(out / 'predicted_vs_actual.png')}
<h2>Residuals</h2>{_img(out / 'residuals.png')}
</body></html>
"""
