"""Tagging on Ray against the single-machine tagger: photos/s on this machine.

    python benchmarks/ray_scale.py        # -> benchmarks/results/ray_scale.md (+ .json)

Each run tags every photo of ../shared/data/houses/photos (712) with the bundled model, as a
user runs it, in its own process:
- `estatelens tag PHOTOS --out tags.csv` (the single-machine tagger: decoding threads beside
  ONNX Runtime on all cores);
- `estatelens tag PHOTOS --engine ray --out DIR.parquet --actors N --threads T`, for 1 and 2
  actors (a local Ray instance on all cores; decoding in Ray tasks at half a CPU each).
photos/s counts from the first photo to the last (the tools' own figure), and the wall time
includes starting the process, the model and (for Ray) the Ray instance.
"""
from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tagging_speed import DATA, ROOT, machine, write_report


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(photos/s the tool reports, wall seconds, its output)."""
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.time() - t0
    m = re.search(r"([\d.]+) photos/s", done.stdout)
    return float(m.group(1)) if m else float("nan"), wall, done.stdout


def per_core(photos: list[str]) -> dict:
    """Photos/s on one core for each stage alone: decoding into the network's input, and the
    int8 ONNX graph (noise inputs, batches of 16, one thread): what a cluster plan scales from."""
    from estatelens.bundle import load_bundle
    from estatelens.data.preprocess import decode_side
    from estatelens.inference import load_photo, network_throughput

    bundle = load_bundle("rooms")
    pre = bundle.preprocessing
    t0 = time.perf_counter()
    for p in photos:
        load_photo(p, pre, decode_side(pre))
    decode = len(photos) / (time.perf_counter() - t0)
    network = network_throughput(bundle.onnx_path, pre.size, batch_size=16, threads=1, seconds=10)
    return {"decode_photos_per_second_per_core": decode, "network_photos_per_second_per_core": network,
            "bytes_per_photo": sum(Path(p).stat().st_size for p in photos) / len(photos)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(DATA / "houses" / "photos"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ray_scale.md"))
    args = ap.parse_args()
    n = sum(1 for p in Path(args.photos).iterdir() if p.suffix.lower() == ".jpg")
    exe = [sys.executable, "-m", "estatelens", "tag", args.photos, "--quiet"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["single machine (tag)"] = run(exe + ["--out", f"{tmp}/tags.csv"])[:2]
        for actors, threads in ((1, 1), (2, 1), (1, 2)):
            name = f"ray, {actors} actor{'s' if actors > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
            results[name] = run(exe + ["--engine", "ray", "--out", f"{tmp}/ray-{actors}-{threads}.parquet",
                                       "--actors", str(actors), "--threads", str(threads)])[:2]
    photos = sorted(str(p) for p in Path(args.photos).iterdir() if p.suffix.lower() == ".jpg")
    core = per_core(photos[:300])
    lines = ["# Tagging on Ray against the single-machine tagger", "",
             f"Written by `python benchmarks/ray_scale.py` on {datetime.date.today().isoformat()}; {machine()}.", "",
             f"{n} photos of ../shared/data/houses/photos, the bundled model, each run in its own process.", "",
             "| run | photos/s (tagging) | wall time, start-up included |", "|---|---:|---:|"]
    for name, (rate, wall) in results.items():
        lines.append(f"| {name} | {rate:.0f} | {wall:.0f} s |")
    lines += ["", "Each stage alone on one core (300 of the photos; the network on noise inputs, batches of 16):", "",
              "| stage | photos/s per core |", "|---|---:|",
              f"| decoding (JPEG to the 240 px network input) | {core['decode_photos_per_second_per_core']:.0f} |",
              f"| the int8 ONNX network | {core['network_photos_per_second_per_core']:.0f} |",
              "", f"Mean photo size: {core['bytes_per_photo'] / 1024:.0f} KiB."]
    write_report(args.out, lines, {"runs": {k: {"photos_per_second": v[0], "wall_seconds": v[1]}
                                            for k, v in results.items()}, "per_core": core, "photos": n})


if __name__ == "__main__":
    main()
