"""Training the watermark network on synthetic overlays (generator.py) over clean photos.

    python -m estatelens.watermarks.train CLEAN_FOLDER... --val FOLDER... --out runs/watermark [--epochs 12]

CLEAN_FOLDER: photos taken to carry no watermark (web photos often do: see `--drop` and
`write_drop_list`). Photos listed in data/labels/watermark.csv (the real, eye-labelled evaluation set)
are never used. Half of the samples get an overlay; the dense target is the overlay's mask pooled
to the network's 8 x 8 cells, and the photo target whether any cell is covered. The network's
ImageNet trunk is frozen, so each photo gives one sample whose trunk features are computed once;
the head then trains over them for --epochs. A synthetic validation set (fixed seeds) is drawn
from `--val` folders; the best epoch by its ROC AUC is exported to ONNX (dynamic height and
width) as OUT/watermark.onnx with OUT/watermark.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from ..data.images import is_image_name
from ..tagging.core import iter_input_paths
from .detector import to_input
from .generator import make_sample
from .model import STRIDE

SIDE = 256  # the network's short side: the listing checks' working size
LABELS = Path(__file__).resolve().parents[3] / "data" / "labels" / "watermark.csv"


def list_photos(folders: list[str], exclude: set[str]) -> list[str]:
    """The photos in `folders` (walked as `tag` walks them), but those whose real path is in `exclude`."""
    return sorted({p for p in iter_input_paths(folders) if is_image_name(p) and os.path.realpath(p) not in exclude})


def labelled_paths(labels: Path = LABELS) -> set[str]:
    """Real paths of the eye-labelled photos (kept out of training), resolved against ../shared/data."""
    if not labels.is_file():
        return set()
    data = labels.parents[2].parent / "shared" / "data"
    with open(labels, newline="", encoding="utf-8") as f:
        return {os.path.realpath(data / r["path"]) for r in csv.DictReader(f)}


def cell_targets(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool mask -> (H/8, W/8) float: 1 where any pixel of the cell is covered."""
    h, w = (mask.shape[0] // STRIDE) * STRIDE, (mask.shape[1] // STRIDE) * STRIDE
    m = mask[:h, :w].reshape(h // STRIDE, STRIDE, w // STRIDE, STRIDE)
    return m.any(axis=(1, 3)).astype(np.float32)


def sample_arrays(path: str, seed: int, clean: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """(input, cell targets, kind) of one training sample: a square part of the photo at a random
    place (so that a batch has one size; the overlay is drawn on that square, corners and all),
    with or without an overlay (a coin flip from `seed`; never with `clean`), SIDE x SIDE."""
    from PIL import Image

    rng = random.Random(seed)
    with Image.open(path) as im:
        im.draft("RGB", (SIDE * 2, SIDE * 2))
        photo = im.convert("RGB")
    side = min(photo.size)
    x, y = rng.randint(0, photo.width - side), rng.randint(0, photo.height - side)
    marked = rng.random() < 0.5 and not clean
    s = make_sample(photo.crop((x, y, x + side, y + side)), rng, SIDE, marked=marked)
    target = cell_targets(s.mask)
    return to_input(s.image), target, s.kind if target.any() else "clean"


class SyntheticSet:
    """A torch map-style dataset: sample i is photo i with seed (seed, i); from index `clean_from`
    on, samples never get an overlay (the scene-text photos of --scene-text)."""

    def __init__(self, paths: list[str], seed: int, clean_from: int | None = None):
        self.paths, self.seed = paths, seed
        self.clean_from = len(paths) if clean_from is None else clean_from

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        x, t, kind = sample_arrays(self.paths[i], hash((self.seed, i)) & 0xFFFFFFFF, clean=i >= self.clean_from)
        return torch.from_numpy(x), torch.from_numpy(t)[None], kind


def trunk_features(trunk, paths: list[str], seed: int, workers: int, desc: str, clean_from: int | None = None):
    """The frozen trunk's features (float16) of one synthetic sample per photo, their cell
    targets and kinds: computed once, so that the head trains over them for many epochs."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    feats, targets, kinds = [], [], []
    loader = DataLoader(SyntheticSet(paths, seed, clean_from), batch_size=64, num_workers=workers)
    with torch.no_grad():
        for x, t, kind in tqdm(loader, desc=desc, unit="batch", leave=False):
            feats.append(trunk(x).half())
            targets.append(t)
            kinds += list(kind)
    return torch.cat(feats), torch.cat(targets), kinds


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def evaluate(head, feats, targets, kinds) -> dict:
    import torch

    from .model import photo_logit

    head.eval()
    with torch.no_grad():
        s = torch.cat([torch.sigmoid(photo_logit(head(feats[i:i + 128].float()))) for i in range(0, len(feats), 128)]).numpy()
    head.train()
    y = (targets.flatten(1).amax(1) > 0).numpy().astype(int)
    clean = s[y == 0]
    at = float(np.quantile(clean, 0.98)) if len(clean) else 0.5
    recall = {k: float(np.mean(s[[i for i, kk in enumerate(kinds) if kk == k]] > at))
              for k in sorted(set(kinds)) if k != "clean"}
    return {"auc": roc_auc(y, s), "threshold_2pct_clean": at, "recall_at_2pct": recall, "n": len(y)}


def export_onnx(net, path: Path) -> None:
    import torch

    from ..bundle import torchscript_onnx_export

    with torch.no_grad():
        torchscript_onnx_export(net.eval(), (torch.zeros(1, 3, SIDE, SIDE * 3 // 2),), path, ["image"], ["cells"],
                                {"image": {2: "height", 3: "width"}, "cells": {2: "rows", 3: "cols"}})


def write_drop_list(model: str, folders: list[str], out: str, above: float = 0.5, keep: str = "exteriors-spb") -> int:
    """The training photos a first network scores `above` or more (web photos that carry real
    watermarks of their own, which would teach the next network to call marks clean), written to
    `out` for --drop; photos whose path contains `keep` stay (street fronts: scene-text negatives).
    Returns how many."""
    from .detector import WatermarkDetector

    paths = [p for p in list_photos(folders, labelled_paths()) if not (keep and keep in p)]
    scores = WatermarkDetector(model).score_files(paths)
    dropped = [p for p, s in zip(paths, scores) if s is not None and s >= above]
    Path(out).write_text("".join(p + "\n" for p in dropped), encoding="utf-8")
    return len(dropped)


def main(argv: list[str] | None = None) -> None:
    import torch
    from tqdm import tqdm

    from .model import Head, Trunk, WatermarkNet, photo_logit

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clean", nargs="+", help="folders of photos without watermarks")
    ap.add_argument("--val", nargs="+", required=True, help="folders for the synthetic validation set")
    ap.add_argument("--out", default="runs/watermark")
    ap.add_argument("--epochs", type=int, default=12, help="passes of the head over the cached features")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--limit", type=int, default=0, help="use at most this many training photos (0: all)")
    ap.add_argument("--val-photos", type=int, default=400)
    ap.add_argument("--drop", help="a file of photo paths to leave out (e.g. the clean photos a first model scored highest)")
    ap.add_argument("--workers", type=int, default=1, help="processes drawing the synthetic samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scene-text", nargs="+", default=[],
                    help="folders of photos whose text is part of the scene (shop signs): besides their samples "
                         "among the clean photos, --scene-text-samples more of each, never with an overlay")
    ap.add_argument("--scene-text-samples", type=int, default=4)
    ap.add_argument("--samples", type=int, default=1,
                    help="synthetic samples drawn from each training photo (each its own crop, overlay and seed)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    exclude = labelled_paths()
    dropped = set()
    if args.drop:
        dropped = {os.path.realpath(p.strip()) for p in open(args.drop, encoding="utf-8") if p.strip()}
        exclude |= dropped
    train = list_photos(args.clean, exclude)
    val = list_photos(args.val, exclude)
    rng = random.Random(args.seed)
    rng.shuffle(train)
    rng.shuffle(val)
    train, val = train[:args.limit or None], val[:args.val_photos]
    print(f"{len(train)} training photos, {len(val)} validation photos ({len(exclude)} left out: labelled "
          f"by eye or --drop); {args.samples} synthetic sample(s) of each training photo, one of each "
          "validation photo", flush=True)
    n_photos = len(train)
    train = train * args.samples  # sample i draws with seed (seed, i): every copy its own crop and overlay
    clean_from = len(train)
    scene_text = list_photos(args.scene_text, exclude) if args.scene_text else []
    train += scene_text * args.scene_text_samples
    if scene_text:
        print(f"{len(scene_text)} scene-text photos, {args.scene_text_samples} more clean samples of each", flush=True)
    t0 = time.time()
    trunk = Trunk().eval()
    f_train, t_train, _ = trunk_features(trunk, train, args.seed, args.workers, "training samples", clean_from)
    f_val, t_val, k_val = trunk_features(trunk, val, args.seed + 1, args.workers, "validation samples")
    y_train = (t_train.flatten(1).amax(1) > 0).float()
    print(f"features in {time.time() - t0:.0f} s; {100 * float(y_train.mean()):.0f} % of training samples marked", flush=True)
    head = Head(args.width)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=1e-4)
    per_epoch = len(f_train) // args.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * per_epoch, pct_start=0.1)
    dense_loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0))
    photo_loss = torch.nn.BCEWithLogitsLoss()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best, history = -1.0, []
    for epoch in range(args.epochs):
        t0, total = time.time(), 0.0
        order = torch.randperm(len(f_train))
        for k in tqdm(range(per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=False):
            idx = order[k * args.batch_size:(k + 1) * args.batch_size]
            logits = head(f_train[idx].float())
            t = t_train[idx]
            loss = dense_loss(logits, t) + photo_loss(photo_logit(logits), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        metrics = evaluate(head, f_val, t_val, k_val)
        history.append({"epoch": epoch + 1, "loss": total / max(per_epoch, 1), "seconds": time.time() - t0, **metrics})
        print(json.dumps(history[-1]), flush=True)
        if metrics["auc"] > best:
            best = metrics["auc"]
            torch.save(head.state_dict(), out / "head.pt")
    net = WatermarkNet(args.width)
    net.trunk = trunk
    net.head.load_state_dict(torch.load(out / "head.pt"))
    export_onnx(net, out / "watermark.onnx")
    info = {"network": "EfficientNet-Lite0 stem and blocks 0-4 (ImageNet, frozen) + head", "width": args.width,
            "side": SIDE, "stride": STRIDE, "input": "RGB, short side 256, (x / 127.5 - 1)",
            "trained_on": [os.path.relpath(p) for p in args.clean], "validated_on": [os.path.relpath(p) for p in args.val],
            "training_photos": n_photos, "dropped": len(dropped),
            "samples_per_photo": args.samples,
            "scene_text": [os.path.relpath(p) for p in args.scene_text],
            "scene_text_samples": args.scene_text_samples if scene_text else 0,
            "epochs": args.epochs, "history": history, "best_validation_auc": best}
    (out / "watermark.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    print(f"best synthetic validation AUC {best:.4f}; wrote {out / 'watermark.onnx'}")


if __name__ == "__main__":
    main()
