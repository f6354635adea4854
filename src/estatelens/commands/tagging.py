"""Tagging commands: tag (the main job), explain (heatmaps), predict (top classes of any bundle).

Each command's parser is declared here beside its handler; cli.py puts them together."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DEFAULT_MODEL, positive_int


def add_parsers(sub) -> None:
    g = sub.add_parser("tag", help="tag listing photos with room type and attributes (the main job)", description=(
        "Tag every photo in PATH... (files, folders searched recursively, or .txt files listing one\n"
        "path per line) with the room type the model sees, its probability, the top-3 classes and\n"
        "the photo's size; for every attribute head in the bundle (fireplace, balcony, ...) the\n"
        "probability and yes/no at the head's shipped threshold, from the same network pass.\n"
        "Unusable files (corrupt, truncated, empty, not images) get a row saying\n"
        "why, and the run goes on. The output format follows the extension of --out: .xlsx (a\n"
        "spreadsheet with a filtering header row), .csv, .json, .jsonl or .parquet (needs pyarrow).\n"
        "An interrupted run (Ctrl-C, crash) loses nothing: rerun the same command to resume."),
        epilog=("examples:\n  estatelens tag listing-photos/ --out tags.xlsx\n"
                "  estatelens tag a.jpg b.jpg --out tags.json\n"
                "  estatelens tag photos/ --out tags.csv --sort-into by-room/ --link --min-confidence 0.6\n"
                "  estatelens tag manifest.csv --engine ray --address ray://head:10001 --out tags.parquet"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("paths", nargs="+", metavar="PATH", help="photo, folder, or .txt list of paths")
    g.add_argument("--out", default="tags.xlsx", help="output file: .xlsx, .csv, .json, .jsonl or .parquet (default tags.xlsx)")
    g.add_argument("--crops", action="store_true", help=(
        "also say whether each photo was cropped: columns cropped_probability, crop_factor and "
        "crop_x0, crop_y0, crop_x1, crop_y1 (the photo's rectangle inside its estimated original "
        "frame, 0 to 1); a second, small network pass per photo"))
    g.add_argument("--crop-model", default="crops", metavar="MODEL", help=(
        "with --crops: a crop bundle from train-crops (default: the bundled crops model)"))
    g.add_argument("--sort-into", metavar="DIR", help=(
        "also place each photo under DIR/<room type>/ (a copy unless --link); a different file of the "
        "same name already there is never overwritten (the new one gets a -2, -3... suffix)"))
    g.add_argument("--link", action="store_const", const="hard", help=(
        "with --sort-into: hard links instead of copies (a copy where the file system cannot link)"))
    g.add_argument("--symlink", dest="link", action="store_const", const="symbolic",
                   help="with --sort-into: symbolic links instead of copies")
    g.add_argument("--min-confidence", type=float, default=0.0, metavar="P", help=(
        "photos whose top probability is below P get room type 'uncertain' (and go to DIR/uncertain), "
        "as do photos the bundle finds unlike all it learned from (the `unusual` column)"))
    g.add_argument("--explain", metavar="DIR", help=(
        "also write heatmap overlays into DIR: where the network looked for the room type and for "
        "every attribute that fires (Grad-CAM; slower: a PyTorch pass per photo, about 12 photos/s on 2 cores); "
        "files are named <photo>-<8 hex of its path>.<room type or attribute>.jpg and listed in the "
        "heatmaps column"))
    chk = add_check_options(g, "columns")
    chk.add_argument("--blur-faces", metavar="DIR", help=(
        "write a copy of every photo with faces into DIR, the faces blurred (column blurred_to); "
        "implies --faces"))
    _add_tagger_options(g)
    g.add_argument("--restart", action="store_true", help="ignore what an interrupted run left and start over")
    ray = g.add_argument_group("on a Ray cluster (--engine ray; the [ray] extra)", (
        "Ray Data decodes in CPU tasks and runs the network in a pool of actors; --out is a folder of\n"
        "Parquet files (one per block, tag's columns plus fingerprint and worker). A rerun skips photos\n"
        "already there with the same fingerprint, so a killed job resumes and no photo is written twice.\n"
        "PATH may also be a CSV or Parquet manifest (a path column) or URLs fsspec reads (s3://, gs://).\n"
        "--threads is per actor here (default 1)."))
    ray.add_argument("--engine", choices=("local", "ray"), default="local", help=(
        "local (default): this machine; ray: a Ray cluster"))
    ray.add_argument("--address", help="a running cluster (ray://host:10001 or host:6379); default: a local Ray instance")
    ray.add_argument("--actors", type=positive_int, help="network actors (default: the cluster's CPUs / (threads + 1))")
    ray.add_argument("--max-in-flight", type=positive_int, default=2, metavar="N", help=(
        "batches queued per actor (default 2): with --batch-size, what bounds a worker's memory"))
    ray.add_argument("--hash", action="store_true", help=(
        "fingerprint photos by a SHA-256 of their bytes instead of size and modification time"))
    ray.add_argument("--object-store-mb", type=int, help="object store size of a local Ray instance (default: Ray's)")
    ray.add_argument("--rows-per-file", type=positive_int, default=256, metavar="N", help=(
        "photos per Parquet file (default 256): what a killed job can lose and retag"))
    g.set_defaults(func=cmd_tag)

    x = sub.add_parser("explain", help="show where the model looked: heatmap overlays per photo",
                       description=(
        "Write heatmap overlays (Grad-CAM on the network's last feature map) for each PHOTO into\n"
        "DIR: one for the room type and one for every attribute that fires (at its shipped\n"
        "threshold), each the size of the photo, named <photo>.<room type or attribute>.jpg. The\n"
        "probabilities printed are the ones `estatelens tag` writes. Needs the bundle's weights.pt."),
        epilog="examples:\n  estatelens explain living-room.jpg --out heatmaps/\n"
               "  estatelens explain photos/*.jpg --out heatmaps/ --every-attribute",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("photos", nargs="+", metavar="PHOTO")
    x.add_argument("--out", required=True, metavar="DIR", help="folder for the overlays (created if missing)")
    x.add_argument("--model", default=DEFAULT_MODEL, help=f"bundle folder or bundled model name (default {DEFAULT_MODEL})")
    x.add_argument("--every-attribute", action="store_true",
                   help="a heatmap for every attribute, also those below their threshold")
    x.set_defaults(func=cmd_explain)

    pr = sub.add_parser("predict", help="print the top classes a model sees in photos", description=(
        "Print the top-K classes for each photo. With --model imagenet-lite0 this is what a ready-"
        "trained ImageNet CNN says about a photo, before any retraining."))
    pr.add_argument("photos", nargs="+")
    pr.add_argument("--model", default="imagenet-lite0")
    pr.add_argument("--top", type=positive_int, default=5)
    pr.set_defaults(func=cmd_predict)



def add_check_options(p: argparse.ArgumentParser, where: str):
    """--checks, --faces, --watermarks and --min-size (tag, index); returns their argument group."""
    chk = p.add_argument_group("listing checks (the [checks] extra)", (
        "What a portal checks before it publishes a photo, measured on the photo the tagger decodes\n"
        "anyway (the thresholds and how they were chosen: docs/checks.md)."))
    chk.add_argument("--checks", action="store_true", help=(
        f"photo quality and duplicates ({where}): sharpness, exposure (stops from middle grey), "
        "clipped_shadows, clipped_highlights, tilt_degrees, colour_cast, quality (pass/fail), "
        "quality_reasons, and duplicate_group (photos that are near copies of each other); "
        "about a quarter slower (docs/checks.md)"))
    chk.add_argument("--min-size", metavar="WxH", help=(
        "with --checks: the portal's minimum photo size, long side x short side (default 640x480)"))
    chk.add_argument("--faces", action="store_true", help=(
        "also count faces (faces, face_boxes: x0 y0 x1 y1 as fractions of the photo; OpenCV's Haar "
        "cascades, frontal faces whose head is a fifth of the photo's short side or more); implies --checks; "
        "about three times slower than plain tagging"))
    chk.add_argument("--watermarks", action="store_true", help=(
        "also look for watermarks, logos and text overlaid on the photo (watermark_probability, "
        "watermark yes/no at the shipped threshold, watermark_box: x0 y0 x1 y1 as fractions; a network "
        "trained on synthetic overlays, scored on real photos labelled by eye: docs/checks.md); "
        "implies --checks; a second network pass per photo, about half as fast as plain tagging"))
    return chk


def min_size_of(args) -> tuple[int, int] | None:
    from ..checks.quality import parse_size

    return parse_size(args.min_size) if args.min_size else None


def _add_tagger_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that runs the tagger over photos (tag, index)."""
    p.add_argument("--model", default=DEFAULT_MODEL, help=(
        f"bundle folder or bundled model name (default {DEFAULT_MODEL}); rooms-attributes: the same room types, "
        "fireplace and balcony from a second network tail (fireplace average precision 0.89 against 0.64; "
        "about 17 %% slower)"))
    p.add_argument("--batch-size", type=positive_int, default=16, help=(
        "photos per network run (default 16: on 2 cores smaller batches keep activations in cache "
        "and ran faster than 32 or 64)"))
    p.add_argument("--workers", type=positive_int, default=2, help="photo decoding threads (default 2)")
    p.add_argument("--threads", type=positive_int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")



def cmd_tag(args) -> int:
    from ..bundle import load_bundle
    from ..tagging import TagJob, run_tagging

    if args.engine == "ray":
        return _tag_on_ray(args)
    if args.link and not args.sort_into:
        raise ValueError("--link and --symlink only make sense with --sort-into DIR")
    min_size = min_size_of(args)
    bundle = load_bundle(args.model)
    bundle.session(args.threads)
    if args.explain:
        from ..explain import unexplained_note

        if note := unexplained_note(bundle):
            print(note, file=sys.stderr)
    job = TagJob(inputs=args.paths, out=args.out, sort_into=args.sort_into, link=args.link,
                 min_confidence=args.min_confidence, batch_size=args.batch_size, workers=args.workers,
                 restart=args.restart, progress=not args.quiet, explain=args.explain,
                 crops=args.crop_model if args.crops else None, threads=args.threads,
                 checks=args.checks, faces=args.faces, blur_faces=args.blur_faces, min_size=min_size,
                 watermarks=args.watermarks)
    s = run_tagging(bundle, job)
    print(f"{s.n_rows} files: {s.n_ok} tagged, {s.n_skipped} skipped"
          + (f" ({s.n_resumed} from the interrupted run)" if s.n_resumed else "")
          + f"; {s.photos_per_second:.0f} photos/s this run")
    if s.per_class:
        print("  " + ", ".join(f"{k} {v}" for k, v in s.per_class.items()))
    if job.checks:
        print("checks: " + (", ".join(f"{k.strip()} {v}" for k, v in s.checks.items() if not k.startswith("  "))
                            or "every photo passed, no faces, no duplicates"))
        reasons = [f"{k.strip()} {v}" for k, v in s.checks.most_common() if k.startswith("  ")]
        if reasons:
            print("  quality fails: " + ", ".join(reasons))
    for path, reason in s.skipped_examples:
        print(f"  skipped {path}: {reason}")
    print(f"output: {s.out}")
    return 0



def _tag_on_ray(args) -> int:
    from ..distributed import tag_dataset

    refused = [o for o, v in (("--sort-into", args.sort_into), ("--explain", args.explain), ("--crops", args.crops),
                              ("--restart", args.restart), ("--checks", args.checks), ("--faces", args.faces),
                              ("--blur-faces", args.blur_faces), ("--watermarks", args.watermarks)) if v]
    if refused:
        raise ValueError(f"{', '.join(refused)}: not with --engine ray (tagging only; delete the output folder to start over)")
    if args.out == "tags.xlsx" or Path(args.out).suffix.lower() in (".xlsx", ".csv", ".json", ".jsonl"):
        raise ValueError("--engine ray writes a folder of Parquet files: give --out DIR.parquet")
    s = tag_dataset(args.paths, args.out, model=args.model, address=args.address, actors=args.actors,
                    threads=args.threads or 1, batch_size=args.batch_size, max_in_flight=args.max_in_flight,
                    content_hash=args.hash, min_confidence=args.min_confidence,
                    object_store_mb=args.object_store_mb, rows_per_file=args.rows_per_file, progress=not args.quiet)
    print(f"{s.n_total} photos: {s.n_tagged} tagged this run, {s.n_before} already in {s.out}; "
          f"{sum(s.failures.values())} could not be tagged; {s.photos_per_second:.0f} photos/s")
    for reason, n in s.failures.most_common():
        print(f"  {n} x {reason}")
    for worker, n in sorted(s.per_worker.items()):
        print(f"  worker {worker}: {n} photos ({n / max(1e-9, s.seconds):.0f} photos/s)")
    print(f"output: {s.out}")
    return 0


def cmd_explain(args) -> int:
    from ..bundle import load_bundle
    from ..data.images import PhotoError
    from ..explain import Explainer, overlay_stem, unexplained_note, write_overlays

    bundle = load_bundle(args.model)
    explainer = Explainer(bundle)
    if note := unexplained_note(bundle):
        print(note, file=sys.stderr)
    stems = [Path(p).stem for p in args.photos]
    status = 0
    for path, stem in zip(args.photos, stems):
        try:
            explanation = explainer.explain(path, every_attribute=args.every_attribute)
            # Two photos of the same name (a/IMG_1.jpg, b/IMG_1.jpg) get their path's hash added.
            files = write_overlays(explanation, args.out, bundle.preprocessing.crop_fraction,
                                   stem=overlay_stem(path, unique=stems.count(stem) > 1))
        except PhotoError as e:
            print(f"{path}: skipped: {e.reason}")
            status = 1
            continue
        print(f"{path}: " + ", ".join(
            f"{hm.label} {hm.probability:.3f}" if hm.target == "room_type" else f"{hm.target} {hm.probability:.3f} ({hm.label})"
            for hm in explanation.heatmaps))
        for f in files:
            print(f"  {f}")
    return status



def cmd_predict(args) -> int:
    import numpy as np

    from ..bundle import load_bundle
    from ..data.images import PhotoError

    if args.model == "imagenet-lite0":
        from ..imagenet import load_imagenet_bundle

        bundle = load_imagenet_bundle()
    else:
        bundle = load_bundle(args.model)
    status = 0
    for path in args.photos:
        try:
            probs = bundle.predict_files([path])[0]
        except PhotoError as e:
            print(f"{path}: skipped: {e.reason}")
            status = 1
            continue
        top = np.argsort(-probs)[: args.top]
        print(f"{path}: " + ", ".join(f"{bundle.classes[i]} {probs[i]:.3f}" for i in top))
    return status

