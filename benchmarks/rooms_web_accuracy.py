"""Accuracy of the training modes on rooms-web: train on train + val, score on the held-apart test.

Runs each command below (skipping runs whose bundle already exists, since `train` resumes), then
writes benchmarks/results/rooms_web_accuracy.md from the runs' metrics.json and bundle.json.

    .venv/bin/python benchmarks/rooms_web_accuracy.py            # train what is missing, then tabulate
    .venv/bin/python benchmarks/rooms_web_accuracy.py --no-train # only tabulate existing runs
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "../shared/data/rooms-web"
RUNS = [
    ("efficientnet_lite0", "features", "runs/final-lite0-features"),
    ("efficientnet_lite0", "finetune", "runs/final-lite0-finetune"),
    ("efficientnet_lite2", "finetune", "runs/rw-ft-lite2"),
]


def command(model: str, mode: str, out: str) -> list[str]:
    return ["estatelens", "train", DATA, "--model", model, "--mode", mode, "--merge-val", "--out", out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-train", action="store_true", help="only tabulate runs that exist")
    args = ap.parse_args()
    rows = []
    for model, mode, out in RUNS:
        cmd = command(model, mode, out)
        run = ROOT / out
        if not args.no_train and not (run / "metrics.json").exists():
            subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
        if not (run / "metrics.json").exists():
            rows.append(f"| `{shlex.join(cmd)}` | not run | | | | |")
            continue
        m = json.loads((run / "metrics.json").read_text())
        t = json.loads((run / "model.estatelens" / "bundle.json").read_text())["training"]
        minutes = (t["train_seconds"] + t.get("prepare_seconds", 0)) / 60
        rows.append(f"| `{shlex.join(cmd)}` | {m['accuracy']:.2%} | {m['top2_accuracy']:.2%} | "
                    f"{m['macro_f1']:.3f} | {m['ece']:.3f} | {minutes:.1f} min |")
    lines = [
        "# rooms-web: train on train + val, score on test (523 photos)",
        "",
        f"- date: {datetime.date.today()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
        "- time: caching the frozen part plus the training loop (photo checks and the final test "
        "scoring, about 30 s, not included)",
        "",
        "| command | test top-1 | top-2 | macro F1 | ECE | training |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]
    out = ROOT / "benchmarks" / "results" / "rooms_web_accuracy.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
