"""`estatelens adapt` as a user would measure it: accuracy on a market's held-apart photos against
the number of labelled photos per class, and the old test sets before and after.

    python benchmarks/adapt.py --model OLD --name exteriors-spb \
        --pool ../shared/data/exteriors-spb:train --test ../shared/data/exteriors-spb:test \
        --rehearse ../shared/data/rooms-web ../shared/data/rooms-places/train ../shared/data/houses/photos.csv
    python benchmarks/adapt.py --model rooms --name portal-rooms-web --degrade portal \
        --pool ../shared/data/rooms-web/train --test ../shared/data/rooms-web/test --unlabelled

DATA:SPLIT takes that split of DATA (the seeded 80/10/10 split where DATA has none, as `train`
makes it). With --degrade portal, pool and test photos are first copied as a European portal's
(benchmarks/perception.py's portal_style: small, half greyscale, watermark, JPEG 35). For each
count N (--counts, 0 = the model as it is), N photos per class are drawn from the pool (seeded) and
`adapt_bundle` fits the head on them (no holdout: the test set is the held-apart part); the adapted
bundle then tags the test photos and the old test sets. `--unlabelled` adds a row where the whole
pool, without its labels, is used for self-training. Results go to
benchmarks/results/adapt-NAME.md and .json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import random
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from perception import portal_style
from tagging_speed import DATA, ROOT, machine, write_report

from estatelens.bundle import load_bundle
from estatelens.data.dataset import load_collection
from estatelens.tagging import tag_photos
from estatelens.training.adapt import adapt_bundle, build_rehearsal

OLD_SETS = {"rooms-web/test": DATA / "rooms-web" / "test", "rooms-places/val": DATA / "rooms-places" / "val"}


def read(spec: str):
    path, _, split = spec.partition(":")
    c = load_collection(path, assign=bool(split), progress=False)
    return c.split(split) if split else c.samples


def degrade(samples, folder: Path):
    folder.mkdir(parents=True)
    out = []
    for i, s in enumerate(samples):
        with Image.open(s.path) as im:
            p = folder / f"{i:05d}.jpg"
            portal_style(ImageOps.exif_transpose(im).convert("RGB"), i).save(p, quality=35)
        out.append(replace(s, path=str(p)))
    return out


def accuracy(bundle, samples) -> float:
    rows = list(tag_photos(bundle, [s.path for s in samples]))
    return float(np.mean([r.room_type == s.label for r, s in zip(rows, samples)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rooms")
    ap.add_argument("--name", required=True)
    ap.add_argument("--pool", nargs="+", required=True, metavar="DATA[:SPLIT]")
    ap.add_argument("--test", nargs="+", required=True, metavar="DATA[:SPLIT]")
    ap.add_argument("--degrade", choices=["none", "portal"], default="none")
    ap.add_argument("--counts", default="0,20,50,100")
    ap.add_argument("--unlabelled", action="store_true", help="also self-train on the pool without labels")
    ap.add_argument("--rehearse", nargs="+", default=[], metavar="DATA", help=(
        "for a bundle without rehearsal.npz: photos of its classes (their test split left out), as "
        "`estatelens adapt --rehearse`"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    pool = [s for spec in args.pool for s in read(spec)]
    test = [s for spec in args.test for s in read(spec)]
    old = {name: load_collection(p, assign=False, progress=False).samples for name, p in OLD_SETS.items()}
    rehearsal = None
    if args.rehearse:
        own = [s for d in args.rehearse for s in load_collection(d, progress=False).samples if s.split != "test"]
        rehearsal = build_rehearsal(bundle, own, seed=args.seed, progress=False)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.degrade == "portal":
            pool, test = degrade(pool, Path(tmp) / "pool"), degrade(test, Path(tmp) / "test")
        by_class = defaultdict(list)
        for s in pool:
            by_class[s.label].append(s)
        rng = random.Random(args.seed)
        for v in by_class.values():
            rng.shuffle(v)

        known = [s for s in test if s.label in bundle.classes]  # the market's photos of classes the model had

        def row(label, b, n):
            r = {"labelled_per_class": n, "how": label, "market": accuracy(b, test),
                 "market_known_classes": accuracy(b, known) if len(known) < len(test) else None,
                 **{name: accuracy(b, samples) for name, samples in old.items()}}
            print(json.dumps(r), flush=True)
            results.append(r)

        runs = [(int(n), False) for n in args.counts.split(",")] + ([(0, True)] if args.unlabelled else [])
        for n, self_train in runs:
            if n == 0 and not self_train:
                row("as shipped", bundle, 0)
                continue
            chosen = [s for v in by_class.values() for s in v[:n]]
            out = Path(tmp) / f"adapted-{n}-{int(self_train)}.estatelens"
            report = adapt_bundle(bundle, chosen, out, holdout=0.0, seed=args.seed, progress=False, rehearsal=rehearsal,
                                  unlabelled=[s.path for s in pool] if self_train else (), log=lambda m: None)
            r_label = "self-training on the pool, no labels" if self_train else "labelled"
            row(r_label, load_bundle(out), n)
            results[-1]["pseudo_labels"] = report["pseudo_labels"]
    write(args, bundle, pool, test, results)


def write(args, bundle, pool, test, results) -> None:
    out = ROOT / "benchmarks" / "results" / f"adapt-{args.name}.md"
    classes = sorted({s.label for s in pool})
    new = sorted(set(classes) - set(bundle.classes))
    lines = [f"# Adapting `{args.model}` to {args.name}", "",
             f"Written by `python benchmarks/adapt.py {' '.join(_argv(args))}` on "
             f"{datetime.date.today().isoformat()}; {machine()}.", "",
             f"Market: {len(pool)} pool photos ({', '.join(classes)}), {len(test)} held-apart test photos"
             f"{' (portal-style copies)' if args.degrade == 'portal' else ''}. Old test sets: "
             + ", ".join(OLD_SETS) + ".", "",
             "| labelled photos per class | how | market test | " + (
                 "market test, photos of classes the model had | " if new else "")
             + " | ".join(OLD_SETS) + " |",
             "|---:|---|---:|" + ("---:|" if new else "") + "---:|" * len(OLD_SETS)]
    for r in results:
        lines.append(f"| {r['labelled_per_class']} | {r['how']} | {100 * r['market']:.1f} % | "
                     + (f"{100 * r['market_known_classes']:.1f} % | " if new else "")
                     + " | ".join(f"{100 * r[n]:.1f} %" for n in OLD_SETS) + " |")
    if new:
        lines += ["", f"Classes the model did not have, which adapting adds: {', '.join(new)}."]
    write_report(out, lines, results)


def _argv(args) -> list[str]:
    parts = ["--model", args.model, "--name", args.name, "--pool", *args.pool, "--test", *args.test]
    if args.degrade != "none":
        parts += ["--degrade", args.degrade]
    if args.unlabelled:
        parts.append("--unlabelled")
    if args.rehearse:
        parts += ["--rehearse", *args.rehearse]
    return parts


if __name__ == "__main__":
    main()
