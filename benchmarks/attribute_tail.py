"""`rooms-attributes` against `rooms`: what the attribute tail buys and what it costs.

    python benchmarks/attribute_tail.py      # writes benchmarks/results/attribute_tail.md (+ .json)

- Attributes: each bundle's fireplace and balcony heads as `estatelens train-attribute` scored them
  on the labels' test photos (the same seeded partition for both bundles: rooms-web/test living
  rooms and the houses test split; `unsure` rows left out), read from the heads' JSON.
- Speed: `estatelens tag` (run_tagging, decoding threads, journal, CSV) on every photo of
  ../shared/data/houses/photos, after a warm-up on 64 photos, three runs a bundle in turn, on all
  cores; the median run. photos/s counts the tagging loop, as benchmarks/tagging_speed.py does.
- Room types: the two bundles' rows on those photos compared (room type and probability).
- The houses photos each bundle calls a fireplace (yes at its threshold), and the ones above 0.5.
"""
from __future__ import annotations

import csv
import datetime
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tagging_speed import DATA, ROOT, machine, write_report  # noqa: E402

PHOTOS = DATA / "houses" / "photos"
OUT = ROOT / "benchmarks" / "results" / "attribute_tail.md"
MODELS = ("rooms", "rooms-attributes")
RUNS = 3


def rows_of(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:  # tag writes a BOM for Excel
        return {r["path"]: r for r in csv.DictReader(f)}


def main() -> None:
    from estatelens.bundle import load_bundle
    from estatelens.tagging import TagJob, run_tagging

    bundles = {m: load_bundle(m) for m in MODELS}
    photos = sorted(str(p) for p in PHOTOS.iterdir())
    speeds: dict[str, list[float]] = {m: [] for m in MODELS}
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m, b in bundles.items():
            run_tagging(b, TagJob(photos[:64], str(Path(tmp) / f"w-{m}.csv"), progress=False), log=lambda s: None)
        for run in range(RUNS):
            for m, b in bundles.items():
                out = Path(tmp) / f"{m}-{run}.csv"
                s = run_tagging(b, TagJob([str(PHOTOS)], str(out), progress=False), log=lambda s: None)
                speeds[m].append(s.photos_per_second)
                rows[m] = rows_of(out)
                print(f"run {run + 1}: {m} {s.photos_per_second:.1f} photos/s", flush=True)
    median = {m: statistics.median(v) for m, v in speeds.items()}
    a, b = (rows[m] for m in MODELS)
    same_room = sum(a[p]["room_type"] == b[p]["room_type"] and a[p]["probability"] == b[p]["probability"] for p in a)

    heads = {}
    for m, bundle in bundles.items():
        for h in bundle.attributes:
            t = h.info.get("test", {})
            heads.setdefault(h.name, {})[m] = {
                "embedding": h.embedding, "threshold": h.threshold, "test": {k: t.get(k) for k in (
                    "n", "positives", "average_precision", "roc_auc", "precision", "recall", "tp", "fp")},
                "houses_yes": sum(r.get(h.name) == "yes" for r in rows[m].values()),
                "houses_above_half": sum(float(r.get(f"{h.name}_probability") or 0) > 0.5 for r in rows[m].values())}
    results = {"machine": machine(), "date": str(datetime.date.today()), "photos": len(photos), "runs": speeds,
               "median": median, "slower": 1 - median[MODELS[1]] / median[MODELS[0]],
               "room_rows_identical": same_room, "heads": heads}

    def fmt(x, pct=False):
        return "n/a" if x is None else (f"{100 * x:.0f} %" if pct else f"{x:.3f}")

    lines = ["# The attribute tail: `rooms-attributes` against `rooms`", "",
             f"Written by `python benchmarks/attribute_tail.py` on {results['date']}; {results['machine']}.", "",
             "## Attributes on held-apart photos", "",
             "Each head as `estatelens train-attribute` scored it on the labels' test photos (same partition for "
             "both bundles); precision and recall at the shipped threshold (0.9 precision on validation).", "",
             "| attribute | model | reads | test photos (yes) | average precision | ROC AUC | threshold | precision | recall | "
             "houses photos said yes / above 0.5 |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, per in heads.items():
        for m, h in per.items():
            t = h["test"]
            threshold = "none" if h["threshold"] is None else f"{h['threshold']:.3f}"
            lines.append(f"| {name} | `{m}` | {h['embedding']} | {t['n']} ({t['positives']}) | "
                         f"{fmt(t['average_precision'])} | {fmt(t['roc_auc'])} | {threshold} | "
                         f"{fmt(t['precision'], True)} ({t['tp']} of {(t['tp'] or 0) + (t['fp'] or 0)}) | "
                         f"{fmt(t['recall'], True)} | {h['houses_yes']} / {h['houses_above_half']} |")
    lines += ["", "## Cost", "",
              f"`estatelens tag` on the {len(photos)} houses photos, {RUNS} runs a bundle in turn (median; every run in the JSON):", "",
              "| model | photos/s | runs |", "|---|---:|---|"]
    for m in MODELS:
        lines.append(f"| `{m}` | {median[m]:.1f} | {', '.join(f'{x:.0f}' for x in speeds[m])} |")
    lines += ["", f"`rooms-attributes` is **{100 * results['slower']:.0f} %** slower. Room type and probability "
              f"identical on {same_room} of {len(a)} photos (the room network is the same graph)."]
    write_report(OUT, lines, results)


if __name__ == "__main__":
    main()
