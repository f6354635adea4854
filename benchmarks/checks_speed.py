"""What the listing checks cost: `estatelens tag` on the houses photos with and without them.

    python benchmarks/checks_speed.py        # writes benchmarks/results/checks_speed.md (+ .json)

Each setting tags every photo of ../shared/data/houses/photos (712) with the default bundled model,
as `estatelens tag` does (decoding threads, the network, the journal, the CSV), after a warm-up on
64 photos, on all cores; three runs each, in turn (plain, --checks, --watermarks, --faces, plain,
...), so that a machine that slows down mid-way slows every setting alike. photos/s counts the tagging loop, as
benchmarks/tagging_speed.py does; the median run is reported. Bar (issue 16): `tag --checks` at
100 photos/s or more on 2 cores; checks on by default only if they cost under 20 %.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tagging_speed import DATA, ROOT, machine, write_report  # noqa: E402

PHOTOS = DATA / "houses" / "photos"
OUT = ROOT / "benchmarks" / "results" / "checks_speed.md"
SETTINGS = {"plain": {}, "--checks": {"checks": True}, "--watermarks": {"watermarks": True}, "--faces": {"faces": True}}
RUNS = 3


def main() -> None:
    from estatelens.bundle import load_bundle
    from estatelens.tagging import TagJob, run_tagging

    bundle = load_bundle("rooms")
    photos = sorted(str(p) for p in PHOTOS.iterdir())
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in SETTINGS.items():  # warm-up: ONNX Runtime's first runs, OpenCV's cascades
            run_tagging(bundle, TagJob(photos[:64], str(Path(tmp) / f"w{len(name)}.csv"), progress=False, **kw),
                        log=lambda m: None)
    speeds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for run in range(RUNS):
        for name, kw in SETTINGS.items():
            with tempfile.TemporaryDirectory() as tmp:
                s = run_tagging(bundle, TagJob([str(PHOTOS)], str(Path(tmp) / "tags.csv"), progress=False, **kw),
                                log=lambda m: None)
            speeds[name].append(s.photos_per_second)
            print(f"run {run + 1}: {name} {s.photos_per_second:.1f} photos/s", flush=True)
    plain = statistics.median(speeds["plain"])
    results = {"machine": machine(), "photos": len(photos), "runs": speeds,
               "median": {k: statistics.median(v) for k, v in speeds.items()},
               "cost": {k: 1 - statistics.median(v) / plain for k, v in speeds.items()}}
    import datetime

    lines = ["# What the listing checks cost in `estatelens tag`", "",
             f"Written by `python benchmarks/checks_speed.py` on {datetime.date.today()}; {results['machine']}.", "",
             f"{len(photos)} photos of houses/, the default bundled model, {RUNS} runs a setting in turn; "
             "photos/s of the tagging loop (median run; every run in the JSON).", "",
             "| setting | photos/s | runs | slower than plain |", "|---|---:|---|---:|"]
    for k, v in speeds.items():
        lines.append(f"| `tag {k}` | {results['median'][k]:.1f} | {', '.join(f'{x:.0f}' for x in v)} | "
                     f"{100 * results['cost'][k]:.0f} % |")
    write_report(OUT, lines, results)


if __name__ == "__main__":
    main()
