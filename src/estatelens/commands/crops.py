"""Crop detection commands: train-crops, crops explain.

Each command's parser is declared here beside its handler; cli.py puts them together."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import positive_int



def add_parsers(sub) -> None:
    tc = sub.add_parser("train-crops", help="train the crop detector (was this photo cropped?) on uncropped photos",
                        description=(
        "Train the crop detector of 'Dissecting Image Crops' on DATA: folders of photos taken to be\n"
        "uncropped. Sources are checked (size, aspect ratio, letterbox bands) and split 75/15/10;\n"
        "each gives samples, half cropped (crop factor drawn from --factor-range, position random)\n"
        "and half not, made so that resampling, the JPEG grid and borders cannot tell them apart.\n"
        "The backbones are ImageNet-pretrained and frozen; the thumbnail branch, the patch branch\n"
        "(each of 16 patches predicts where in the original frame it lies) and the fusion MLP are\n"
        "trained. Also trains the thumbnail branch alone, and scores both on the held-apart test\n"
        "photos against a trivial baseline and a probe on pixel statistics. Writes\n"
        "OUT/crops.estatelens (tag --crops --crop-model OUT/crops.estatelens), OUT/metrics.json and\n"
        "OUT/report.md."), formatter_class=argparse.RawDescriptionHelpFormatter)
    tc.add_argument("data", nargs="+", help="folders (or .txt lists) of uncropped photos")
    tc.add_argument("--out", default="runs/crops", help="output folder (default runs/crops)")
    tc.add_argument("--backbone", default="efficientnet_lite0", help="thumbnail backbone (a registered model with weights)")
    tc.add_argument("--patch-backbone", help="patch backbone (default: the thumbnail's)")
    tc.add_argument("--weights", help="ImageNet weights file for --backbone (torchvision models)")
    tc.add_argument("--patch-weights", help="ImageNet weights file for --patch-backbone")
    tc.add_argument("--size", type=positive_int, default=192, help="the sample's side in pixels (default 192)")
    tc.add_argument("--patch", type=int, default=40, help="patch side (default 40, in cells of size/4)")
    tc.add_argument("--factor-range", default="0.5,0.9", metavar="LOW,HIGH",
                    help="crop factor range, as a fraction of the side (default 0.5,0.9)")
    tc.add_argument("--aspect-jitter", type=float, default=0.0, help=(
        "let a crop's aspect ratio differ from the photo's by up to this fraction (default 0: kept)"))
    tc.add_argument("--blur", type=float, default=1.0, help=(
        "blur every sample (both classes) by a Gaussian of radius drawn from 0 to this many pixels "
        "(default 1.0), so that sharpness, which a synthetic crop of a small photo loses, tells little; 0: none"))
    tc.add_argument("--variants", type=positive_int, default=8, help="samples per training photo, half cropped (default 8)")
    tc.add_argument("--eval-variants", type=positive_int, default=2, help="samples per validation / test photo (default 2)")
    tc.add_argument("--epochs", type=positive_int, default=30)
    tc.add_argument("--lr", type=float, default=5e-4)
    tc.add_argument("--batch-size", type=positive_int, default=256)
    tc.add_argument("--seed", type=int, default=0)
    tc.add_argument("--threads", type=positive_int, help="PyTorch / ONNX Runtime threads (default: all cores)")
    tc.add_argument("--workers", type=positive_int, default=2, help="sample-making threads")
    tc.add_argument("--cache-dir", help="where backbone features are cached (default ~/.cache/estatelens/crop-cache)")
    tc.add_argument("--quiet", action="store_true", help="no progress bars")
    tc.set_defaults(func=cmd_train_crops)

    cr = sub.add_parser("crops", help="crop detector tools: explain")
    crs = cr.add_subparsers(title="crops commands", metavar="COMMAND")
    ce = crs.add_parser("explain", help="draw what the crop detector thinks of photos", description=(
        "For each PHOTO write DIR/<photo>.crop.png: the photo drawn inside the original frame the\n"
        "model estimates (predicted rectangle in red; the true one in green when known), with its\n"
        "cropped probability and crop factor, and the patch-position heatmaps: for each of the 16\n"
        "patches, where in the original frame's 4 x 4 grid the patch network puts it.\n"
        "--simulate F first crops the photo at factor F at a random place, so the truth is known."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ce.add_argument("photos", nargs="+", metavar="PHOTO")
    ce.add_argument("--out", required=True, metavar="DIR", help="folder for the figures (created if missing)")
    ce.add_argument("--model", default="crops", help="crop bundle folder or bundled name (default crops)")
    ce.add_argument("--simulate", type=float, metavar="F", help="crop each photo at factor F first (the truth is then drawn)")
    ce.add_argument("--seed", type=int, default=0, help="where --simulate crops")
    ce.set_defaults(func=cmd_crops_explain)



def cmd_train_crops(args) -> int:
    from ..crops.generator import CropSettings
    from ..crops.train import CropTrainConfig, train_crops

    try:
        low, high = (float(v) for v in args.factor_range.split(","))
    except ValueError:
        raise ValueError(f"--factor-range {args.factor_range!r}: give LOW,HIGH such as 0.5,0.9") from None
    settings = CropSettings(size=args.size, patch=args.patch, factor_range=(low, high), aspect_jitter=args.aspect_jitter,
                            blur=args.blur)
    cfg = CropTrainConfig(backbone=args.backbone, patch_backbone=args.patch_backbone, weights=args.weights,
                          patch_weights=args.patch_weights, variants=args.variants, eval_variants=args.eval_variants,
                          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          threads=args.threads, workers=args.workers, settings=settings)
    m = train_crops(args.data, args.out, cfg, cache_dir=args.cache_dir, progress=not args.quiet)
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    print(f"crop model: {Path(args.out) / 'crops.estatelens'} (estatelens tag PHOTOS --crops --crop-model {Path(args.out) / 'crops.estatelens'})")
    return 0 if m else 1



def cmd_crops_explain(args) -> int:
    from ..crops.explain import explain_crops

    for path, line in explain_crops(args.photos, args.out, model=args.model, simulate=args.simulate, seed=args.seed):
        print(f"{path}: {line}")
    return 0
