"""What makes fine-tuning EfficientNet-Lite0 fast on a 2-core CPU: forward+backward images/s at
batch 32 for each technique, measured in one run, written to benchmarks/results/train_speed.md.

    .venv/bin/python benchmarks/train_speed.py [--batches 4]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from estatelens.models import create_model
from estatelens.training.prefix_cache import PrefixRunner


def step_rate(module, make_input, batches: int, bf16: bool = False, train_params=None) -> float:
    opt = torch.optim.AdamW(train_params or [p for p in module.parameters() if p.requires_grad], lr=1e-4)
    module.train()
    y = torch.randint(0, 5, (32,))
    times = []
    for i in range(batches + 1):  # the first batch warms up
        x = make_input()
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(module(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return 32 / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed.md"))
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []

    def whole(size, bf16=False, channels_last=False, compiled=False):
        m = create_model("efficientnet_lite0", 5, pretrained=True)
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        mod = torch.compile(m) if compiled else m
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return step_rate(mod, lambda: torch.randn(32, 3, size, size).contiguous(memory_format=fmt),
                         args.batches, bf16)

    rows.append(("whole network, 224 px, fp32", whole(224)))
    rows.append(("whole network, 224 px, bf16 autocast", whole(224, bf16=True)))
    rows.append(("whole network, 224 px, channels-last", whole(224, channels_last=True)))
    rows.append(("whole network, 160 px, fp32", whole(160)))
    try:
        rows.append(("whole network, 224 px, torch.compile", whole(224, compiled=True)))
    except Exception as e:  # no C++ toolchain, or an inductor failure: say so rather than guess
        rows.append((f"whole network, 224 px, torch.compile (failed: {type(e).__name__})", float("nan")))

    model = create_model("efficientnet_lite0", 5, pretrained=True)
    prefix, suffix = model.trunk_split(-6)
    with torch.no_grad():
        cached = prefix.eval()(torch.randn(32, 3, 224, 224))
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(suffix[0].trainable_parameters()) + list(suffix[1].parameters())
    for p in params:
        p.requires_grad_(True)
    rows.append(("last 6 blocks + head on cached block-10 inputs, fp32",
                 step_rate(suffix, lambda: cached, args.batches, False, params)))
    rows.append(("last 6 blocks + head on cached block-10 inputs, bf16 autocast",
                 step_rate(suffix, lambda: cached, args.batches, True, params)))

    # Producing the cache: the frozen prefix through ONNX Runtime vs eager PyTorch (forward only).
    runner = PrefixRunner(prefix, 224, threads=torch.get_num_threads())
    x = torch.randn(32, 3, 224, 224)
    runner(x)
    t = time.perf_counter()
    for _ in range(args.batches):
        runner(x)
    ort_rate = 32 * args.batches / (time.perf_counter() - t)
    with torch.no_grad():
        prefix.eval()(x)
        t = time.perf_counter()
        for _ in range(args.batches):
            prefix(x)
    eager_rate = 32 * args.batches / (time.perf_counter() - t)
    rows.append(("frozen prefix (stem..block 9) forward, ONNX Runtime", ort_rate))
    rows.append(("frozen prefix (stem..block 9) forward, eager PyTorch", eager_rate))

    lines = [
        "# Fine-tuning speed of EfficientNet-Lite0 on this CPU",
        "",
        f"- date: {datetime.date.today()}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads",
        f"- batch 32, median of {args.batches} steps after one warm-up step; training steps are "
        "forward + backward + AdamW",
        f"- command: `.venv/bin/python benchmarks/train_speed.py --batches {args.batches}`",
        "",
        "| what | images/s |",
        "|---|---:|",
    ] + [f"| {name} | {rate:.1f} |" for name, rate in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
