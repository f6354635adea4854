"""Does averaging several views of each photo (test-time augmentation) or several networks raise
room-type accuracy? Measured before offering either as an opt-in slower mode.

    python benchmarks/test_time_views.py --models rooms,runs/scene-kd/rooms.estatelens   # -> benchmarks/results/test_time_views.md

Each network (the int8 graph `tag` runs, through `ModelBundle.run_outputs`) sees four views of
every photo, each decoded as `tag` decodes: the centre square `tag` reads, the same mirrored,
the whole photo squeezed to a square (the same as the centre on square photos), and the centre
zoomed in (crop fraction 0.875, ImageNet's).
Probabilities are averaged over views, then over networks. Sets: rooms-web/test, rooms-places/val
and their portal-style copies (perception.py's), and with --with-val first the default build's
validation split, the only set a choice may be made on. Each view costs a full network pass, so
k views or k networks cost about k times `tag`'s network time (not timed here).
"""
from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from perception import build_validation, degraded_copies, held_apart_sets
from tagging_speed import ROOT, machine, write_report

from estatelens.bundle import load_bundle
from estatelens.data.images import PhotoError, read_photo
from estatelens.data.preprocess import Preprocessing, decode_side, eval_array, normalise

VIEWS = {"centre": "the centre square (what `tag` reads)", "mirrored": "the centre, mirrored",
         "squeezed": "the whole photo squeezed to a square", "zoomed": "the centre at crop fraction 0.875"}
VIEW_SETS = [("centre",), ("mirrored",), ("squeezed",), ("zoomed",), ("centre", "mirrored"),
             ("centre", "squeezed"), ("centre", "mirrored", "squeezed", "zoomed")]


def views(path: str, pre: Preprocessing) -> dict[str, np.ndarray] | None:
    """The four views of one photo, each decoded as `tag` would decode for it (None: unreadable)."""
    zoom = Preprocessing(pre.size, pre.mean, pre.std, 0.875)
    try:
        im, _ = read_photo(path, decode_side(pre))
        im_zoom, _ = read_photo(path, decode_side(zoom))
    except PhotoError:
        return None
    centre = eval_array(im, pre)
    return {"centre": centre, "mirrored": np.ascontiguousarray(centre[:, :, ::-1]),
            "squeezed": normalise(np.asarray(im.resize((pre.size, pre.size), Image.BILINEAR)), pre),
            "zoomed": eval_array(im_zoom, zoom)}


def decoded_views(pre: Preprocessing, paths: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({view: (n_ok, 3, S, S) inputs}, ok (N,) bool)."""
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda p: views(p, pre), paths))
    ok = np.array([g is not None for g in got])
    if not ok.any():
        raise SystemExit(f"none of the {len(paths)} photos could be read")
    return {v: np.stack([g[v] for g in got if g is not None]) for v in VIEWS}, ok


def view_probabilities(bundle, paths: list[str], decoded=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({view: (N, C) probabilities}, ok (N,) bool): rows of photos that cannot be read are NaN.
    `decoded`: `decoded_views`' result for the bundle's preprocessing, when already made."""
    inputs, ok = decoded or decoded_views(bundle.preprocessing, paths)
    out = {}
    for v, x in inputs.items():
        probs = np.full((len(paths), len(bundle.classes)), np.nan, dtype=np.float32)
        probs[ok] = np.concatenate([bundle.run_outputs(x[i:i + 32])[0] for i in range(0, len(x), 32)])
        out[v] = probs
    return out, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="rooms", help="comma-separated bundles (the first is the baseline)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "test_time_views.md"))
    ap.add_argument("--with-val", action="store_true", help="also the default build's validation split (first row)")
    args = ap.parse_args()
    names = args.models.split(",")
    bundles = [load_bundle(n) for n in names]
    classes = bundles[0].classes
    if any(b.classes != classes for b in bundles):
        raise SystemExit("the models' room types differ: their probabilities cannot be averaged")
    held = held_apart_sets()
    sets = {"default build's validation split": build_validation()} if args.with_val else {}
    sets |= {k: held[k] for k in ("rooms-web/test", "rooms-places/val")}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, samples in list(sets.items()):
            y = np.array([classes.index(s.label) for s in samples])
            variants = [(set_name, [s.path for s in samples])]
            if set_name in held:
                variants.append((f"{set_name}, portal-style",
                                 degraded_copies(samples, Path(tmp) / set_name.replace("/", "-"))))
            for label, paths in variants:
                probs, ok, decoded = {}, np.ones(len(paths), dtype=bool), {}
                for n, b in zip(names, bundles):  # each preprocessing's views decoded once
                    key = json.dumps(b.preprocessing.to_dict())
                    decoded[key] = decoded.get(key) or decoded_views(b.preprocessing, paths)
                    probs[n], good = view_probabilities(b, paths, decoded[key])
                    ok &= good
                rows = {}
                for n in names:
                    for vs in VIEW_SETS:
                        rows[f"{n}: {' + '.join(vs)}"] = np.mean([probs[n][v] for v in vs], 0)
                if len(names) > 1:
                    for vs in VIEW_SETS[:1] + VIEW_SETS[4:5]:
                        rows[f"all {len(names)} networks: {' + '.join(vs)}"] = np.mean(
                            [probs[n][v] for n in names for v in vs], 0)
                results[label] = {"n": int(ok.sum()), "accuracy": {
                    k: float(np.mean(p[ok].argmax(1) == y[ok])) for k, p in rows.items()}}
                print(label, {k: round(a, 4) for k, a in results[label]["accuracy"].items()}, flush=True)
    report(names, results, Path(args.out), " --with-val" if args.with_val else "")


def report(names: list[str], results: dict, out: Path, with_val: str) -> None:
    sets = list(results)
    rows = list(results[sets[0]]["accuracy"])
    lines = ["# Several views or several networks per photo", "",
             f"Written by `python benchmarks/test_time_views.py --models {','.join(names)}{with_val}` on "
             f"{datetime.date.today().isoformat()}; {machine()}.", "",
             "Top-1 accuracy with the probabilities averaged over the views (and networks) named. Views: "
             + "; ".join(f"{k}: {v}" for k, v in VIEWS.items()) + ".", "",
             "| network: views | " + " | ".join(f"{s} ({results[s]['n']})" for s in sets) + " |",
             "|---|" + "---:|" * len(sets)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(f"{100 * results[s]['accuracy'][r]:.1f} %" for s in sets) + " |")
    write_report(out, lines, results)


if __name__ == "__main__":
    main()
