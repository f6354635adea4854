"""Room-type models side by side on every held-apart set, in-domain and out of it.

    python benchmarks/perception.py --models rooms,runs/v2/rooms.estatelens   # -> benchmarks/results/perception.md

Each model tags (the shipped int8 path, `tag_photos`) the same photos:
- rooms-web/test and rooms-places/val as published, and the houses test split (by house);
- the held-apart test part of ../shared/data/exteriors-spb (seeded 80/10/10 split, seed 0, the
  same split `estatelens train` uses, so those photos were never trained on): European apartment
  buildings, where the first model called 18-21 % exterior;
- "portal-style" copies of rooms-web/test and rooms-places/val: every photo made to look like a
  European portal's (long side 200 px, half of them greyscale, a repeated diagonal agency
  watermark in a font and words the training augmentation never draws, JPEG quality 35). A
  synthetic stand-in for the portals we do not have, no substitute for them.
- rooms-web/test and rooms-places/val "as checked by eye" (data/labels/test-audit.csv): photos
  seen to show another room type than their folder's scored against that one, photos that show two
  room types or none (a kitchen-diner, a restaurant, a church) left out. The audit covers the
  photos four networks of 2026-12-03 missed and a random sample of the rest, so a new network's
  mistakes on photos nobody checked are counted as mistakes and listed in the JSON
  (`unchecked_mistakes`): check those by eye before comparing networks on these rows.
For each: top-1 accuracy, expected calibration error (15 bins), and per-class recall; for
exteriors-spb the share called exterior. Needs ../shared beside the repository.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from tagging_speed import DATA, ROOT, machine, write_report

from estatelens.bundle import load_bundle
from estatelens.data.dataset import load_collection, load_sources
from estatelens.evaluation.metrics import expected_calibration_error
from estatelens.tagging import tag_photos

AUDIT = ROOT / "data" / "labels" / "test-audit.csv"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"
MARKS = ("Casa Bella Immobiliare", "www.wohnung-finden.de", "Kiinteistömaailma")


def portal_style(im: Image.Image, i: int) -> Image.Image:
    """Deterministic per photo index: small, greyscale for odd i, a diagonal watermark."""
    im = im.copy()
    im.thumbnail((200, 200), Image.BILINEAR)
    if i % 2:
        im = ImageOps.grayscale(im).convert("RGB")
    w, h = im.size
    layer = Image.new("RGBA", (2 * w, 2 * h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    try:
        font = ImageFont.truetype(FONT, max(10, w // 14))
    except OSError:
        font = ImageFont.load_default(size=max(10, w // 14))
    text = MARKS[i % len(MARKS)]
    for row in range(0, 2 * h, max(20, h // 3)):
        draw.text((0, row), text + "   " + text, font=font, fill=(255, 255, 255, 90))
    layer = layer.rotate(25, center=(w, h)).crop((w // 2, h // 2, w // 2 + w, h // 2 + h))
    return Image.alpha_composite(im.convert("RGBA"), layer).convert("RGB")


BUILD_SOURCES = [DATA / "rooms-web", DATA / "rooms-places" / "train", DATA / "houses" / "photos.csv", DATA / "exteriors-spb",
                 ROOT / "data" / "labels" / "places-extra.csv"]  # tools/build_env.sh's SOURCES (the default build)


def build_validation() -> list:
    """The validation split of the default build (same sources, --merge-val, seed 0): what a
    choice between models may be made on, since no test photo was used to choose there."""
    return load_sources(BUILD_SOURCES, merge_val=True, progress=False).split("val")


def held_apart_sets() -> dict[str, list]:
    return {
        "rooms-web/test": load_collection(DATA / "rooms-web" / "test", assign=False, progress=False).samples,
        "rooms-places/val": load_collection(DATA / "rooms-places" / "val", assign=False, progress=False).samples,
        "houses test split": load_collection(DATA / "houses" / "photos.csv", progress=False).split("test"),
        "exteriors-spb test split": load_collection(DATA / "exteriors-spb", progress=False).split("test"),
    }


def checked_by_eye(samples) -> tuple[list[str], list[str], set[str]]:
    """(paths, labels, audited paths) of `samples` as data/labels/test-audit.csv corrects them: a
    photo `seen` as another class gets that label, an `ambiguous` one is left out."""
    with open(AUDIT, newline="", encoding="utf-8") as f:
        seen = {str((AUDIT.parent / r["path"]).resolve()): r["seen"] for r in csv.DictReader(f)}
    paths, labels = [], []
    for s in samples:
        verdict = seen.get(str(Path(s.path).resolve()), "agree")
        if verdict != "ambiguous":
            paths.append(s.path)
            labels.append(s.label if verdict == "agree" else verdict)
    return paths, labels, set(seen)


def degraded_copies(samples, folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    paths = []
    for i, s in enumerate(samples):
        with Image.open(s.path) as im:
            out = portal_style(ImageOps.exif_transpose(im).convert("RGB"), i)
        p = folder / f"{i:05d}.jpg"
        out.save(p, quality=35)
        paths.append(str(p))
    return paths


def score(bundle, paths: list[str], labels: list[str], audited: set[str] | None = None) -> dict:
    """Accuracy, ECE and recall per class; with `audited` (resolved paths checked by eye), also the
    mistakes on photos outside it."""
    classes = bundle.classes
    rows = list(tag_photos(bundle, paths))
    probs = np.array([[r.scores.get(c, 0.0) for c in classes] if r.ok else [np.nan] * len(classes) for r in rows])
    ok = ~np.isnan(probs[:, 0])
    y = np.array([classes.index(lab) for lab in labels])
    pred = probs.argmax(1)
    recall = {c: float(np.mean(pred[ok & (y == k)] == k)) for k, c in enumerate(classes) if np.any(ok & (y == k))}
    ece, _ = expected_calibration_error(y[ok], probs[ok])
    out = {"n": int(ok.sum()), "accuracy": float(np.mean(pred[ok] == y[ok])), "ece": ece, "recall": recall}
    if audited is not None:
        out["unchecked_mistakes"] = [str(Path(p).resolve().relative_to(DATA.resolve())) for p, guess, k, good
                                     in zip(paths, pred, y, ok)
                                     if good and guess != k and str(Path(p).resolve()) not in audited]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="rooms", help="comma-separated bundles (the first is the baseline)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "perception.md"))
    ap.add_argument("--with-val", action="store_true", help="also the default build's validation split (first row)")
    args = ap.parse_args()
    names = args.models.split(",")
    bundles = [load_bundle(n) for n in names]
    sets = ({"default build's validation split": build_validation()} if args.with_val else {}) | held_apart_sets()
    results: dict[str, dict] = {n: {} for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, samples in list(sets.items()):
            paths, labels = [s.path for s in samples], [s.label for s in samples]
            variants = [(set_name, paths, labels, None)]
            if set_name in ("rooms-web/test", "rooms-places/val"):
                variants.append((f"{set_name}, portal-style", degraded_copies(samples, Path(tmp) / set_name.replace("/", "-")),
                                 labels, None))
                variants.append((f"{set_name}, labels checked by eye", *checked_by_eye(samples)))
            for label, ps, labs, audited in variants:
                for n, b in zip(names, bundles):
                    results[n][label] = score(b, ps, labs, audited)
                    print(f"{n}: {label}: {results[n][label]['accuracy']:.3f}", flush=True)
    report(names, results, Path(args.out), " --with-val" if args.with_val else "")


def report(names: list[str], results: dict, out: Path, with_val: str = "") -> None:
    sets = list(results[names[0]])
    lines = ["# Room types on held-apart sets, in and out of the training sources", "",
             f"Written by `python benchmarks/perception.py --models {','.join(names)}{with_val}` on "
             f"{datetime.date.today().isoformat()}; {machine()}.", "",
             "Top-1 accuracy (ECE in brackets); for exteriors-spb, the share called exterior.", "",
             "| held-apart set | photos | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for s in sets:
        cells = [f"{100 * results[n][s]['accuracy']:.1f} % ({results[n][s]['ece']:.3f})" for n in names]
        lines.append(f"| {s} | {results[names[0]][s]['n']} | " + " | ".join(cells) + " |")
    unchecked = {n: sum(len(r.get("unchecked_mistakes", [])) for r in results[n].values()) for n in names}
    lines += ["", "Labels checked by eye: data/labels/test-audit.csv (its README section says how). Mistakes there "
              "on photos nobody checked (listed in the JSON; check them before comparing): "
              + ", ".join(f"`{n}` {unchecked[n]}" for n in names) + "."]
    lines += ["", "Recall per class (the share of each class's photos called that class):", ""]
    for s in sets:
        classes = list(results[names[0]][s]["recall"])
        if len(classes) < 2:
            continue
        lines += [f"**{s}**", "", "| class | " + " | ".join(f"`{n}`" for n in names) + " |",
                  "|---|" + "---:|" * len(names)]
        for c in classes:
            lines.append(f"| {c} | " + " | ".join(f"{100 * results[n][s]['recall'].get(c, float('nan')):.1f} %" for n in names) + " |")
        lines.append("")
    write_report(out, lines, results)


if __name__ == "__main__":
    main()
