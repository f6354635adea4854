"""`estatelens train-crops`: train the crop model on photos taken to be uncropped, and score it.

1. Sources are checked (size, aspect ratio, borders) and split 75/15/10 (generator.py).
2. Each source gives a fixed set of samples, half cropped and half not: `variants` per training
   source, `eval_variants` per validation and test source. The same seed gives the same samples
   on every machine.
3. The backbones are ImageNet-pretrained and frozen (feature extraction, as `train --mode
   features`). They run once per sample through ONNX Runtime, over the thumbnail and the 16
   patches; the features are cached.
4. The heads are trained on the cached features (CropHeads): the full model, and the thumbnail
   branch alone to show what the patch branch adds. The epoch with the lowest validation loss is
   kept.
5. On the held-apart test samples every model is scored: ROC AUC and accuracy for cropped or not,
   mean absolute crop-factor error, mean IoU of the rectangle, patch-position accuracy. The same
   scores are given for two references:
   - a trivial baseline: constants from the training set; each patch assumed to be where it
     appears, as if nothing were cropped;
   - a shortcut probe: a logistic regression on low-level pixel statistics alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..bundle import commit_folder, estatelens_home, staging_folder, write_json
from .detector import CROPS_FILE, HEADS_FILE
from .generator import CropSample, CropSettings, SourceSet, collect_sources, network_input, variants_of
from .model import CropHeads, crop_losses

SPLITS = ("train", "val", "test")
LOW_LEVEL = ("laplacian_mean", "laplacian_median", "high_frequency", "gradient", "blockiness_x", "blockiness_y")


@dataclass
class CropTrainConfig:
    backbone: str = "efficientnet_lite0"
    patch_backbone: str | None = None  # None: the same as backbone
    weights: str | None = None  # local ImageNet weights for backbone (torchvision models)
    patch_weights: str | None = None
    variants: int = 8  # samples per training source (half cropped)
    eval_variants: int = 2  # per validation / test source
    epochs: int = 30
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.1
    dropout: float = 0.6  # the heads overfit the frozen features quickly: best validation epoch 7 of 60 at 0.3
    seed: int = 0
    threads: int | None = None
    workers: int = 2
    settings: CropSettings = field(default_factory=CropSettings)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d


def patch_weights(cfg: CropTrainConfig) -> str | None:
    """The patch backbone's weights file: its own, or the thumbnail's when both are one model."""
    if cfg.patch_weights or (cfg.patch_backbone or cfg.backbone) != cfg.backbone:
        return cfg.patch_weights
    return cfg.weights


# --- backbones and features ------------------------------------------------------------------------

class FrozenBackbone:
    """A registered backbone with ImageNet weights, exported once and run through ONNX Runtime."""

    def __init__(self, name: str, size: int, weights: str | None, threads: int | None):
        from ..models import create_model
        from ..training.prefix_cache import PrefixRunner

        try:
            model = create_model(name, num_classes=1, pretrained=True, weights=weights)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e} (the crop model's backbones are frozen, so they need pretrained weights)") from None
        self.name, self.dim = name, model.num_features
        self.mean, self.std = model.preprocessing.mean, model.preprocessing.std
        self.module = model.backbone.eval()
        self.runner = PrefixRunner(self.module, size, threads or torch.get_num_threads())

    def __call__(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        out = [self.runner(torch.from_numpy(network_input(images[i:i + batch], self.mean, self.std)))
               for i in range(0, len(images), batch)]
        return np.concatenate(out).astype(np.float32)


def low_level_statistics(image: np.ndarray) -> np.ndarray:
    """Pixel statistics a crop could be told by without looking at the content: sharpness,
    high-frequency energy and noise (which resampling changes), and the 8 x 8 JPEG block grid's
    strength across columns and rows."""
    g = image.astype(np.float32).mean(2)
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    blur = (g[:-2, :-2] + g[:-2, 1:-1] + g[:-2, 2:] + g[1:-1, :-2] + g[1:-1, 1:-1] + g[1:-1, 2:]
            + g[2:, :-2] + g[2:, 1:-1] + g[2:, 2:]) / 9
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))

    def blockiness(d: np.ndarray) -> float:  # diff across block edges over diff elsewhere
        edge = (np.arange(d.shape[1]) % 8) == 7
        return float(d[:, edge].mean() / max(1e-6, d[:, ~edge].mean()))

    return np.array([lap.mean(), np.median(lap), np.abs(g[1:-1, 1:-1] - blur).mean(), (dx.mean() + dy.mean()) / 2,
                     blockiness(dx), blockiness(dy.T)], dtype=np.float32)


def _features_for(paths: list[str], keys: dict[str, str], n_variants: int, cfg: CropTrainConfig,
                  thumb: FrozenBackbone, patch: FrozenBackbone, desc: str, progress: bool) -> dict[str, np.ndarray]:
    s = cfg.settings
    g2 = s.grid * s.grid
    n = len(paths) * n_variants
    out = {"thumb": np.zeros((n, thumb.dim), np.float16), "patch": np.zeros((n, g2, patch.dim), np.float16),
           "cropped": np.zeros(n, np.float32), "rect": np.zeros((n, 4), np.float32), "factor": np.zeros(n, np.float32),
           "positions": np.zeros((n, g2), np.int64), "source": np.repeat(np.arange(len(paths)), n_variants),
           "low_level": np.zeros((n, len(LOW_LEVEL)), np.float32)}
    chunk = 16

    def render(path: str) -> list[CropSample]:
        return variants_of(path, s, n_variants, cfg.seed, keys.get(path))

    with ThreadPoolExecutor(max(1, cfg.workers)) as pool, \
            tqdm(total=n, desc=f"features ({desc})", unit="sample", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            batch = [x for group in pool.map(render, paths[start:start + chunk]) for x in group]
            i0 = start * n_variants
            idx = slice(i0, i0 + len(batch))
            out["thumb"][idx] = thumb(np.stack([b.image for b in batch]))
            patches = np.concatenate([b.patches for b in batch])
            out["patch"][idx] = patch(patches, batch=256).reshape(len(batch), g2, -1)
            out["cropped"][idx] = [b.cropped for b in batch]
            out["rect"][idx] = np.stack([b.rect for b in batch])
            out["factor"][idx] = [b.factor for b in batch]
            out["positions"][idx] = np.stack([b.positions for b in batch])
            out["low_level"][idx] = np.stack([low_level_statistics(b.image) for b in batch])
            bar.update(len(batch))
    return out


def _file_id(path: str | None) -> str | None:
    """A weights file as cache keys know it: its absolute path and a hash of its bytes."""
    if not path:
        return None
    return f"{os.path.abspath(path)}:{hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]}"


def split_keys_hash(keys: list[str]) -> str:
    """A hash of the keys of a split's sources: benchmarks check they test on the same photos."""
    return hashlib.sha1("\n".join(sorted(keys)).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _fingerprint(paths: list[str], keys: dict[str, str]) -> str:
    h = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{keys.get(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def cached_features(sources: SourceSet, cfg: CropTrainConfig, cache_dir: Path, progress: bool = True,
                    log=print) -> dict[str, dict[str, np.ndarray]]:
    """Features and targets per split, computed once per (sources, settings, seed, backbones)."""
    patch_name = cfg.patch_backbone or cfg.backbone
    key = hashlib.sha1(json.dumps({
        "sources": {k: _fingerprint(v, sources.keys) for k, v in sources.splits.items()},
        "settings": cfg.settings.to_dict(),
        "seed": cfg.seed, "variants": [cfg.variants, cfg.eval_variants], "backbone": cfg.backbone,
        "patch_backbone": patch_name, "weights": [_file_id(cfg.weights), _file_id(patch_weights(cfg))],
        "estatelens": __version__,
    }, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / key
    files = {sp: folder / f"{sp}.npz" for sp in SPLITS}
    if all(f.is_file() for f in files.values()):
        log(f"crop features from the cache ({folder})")
        return {sp: dict(np.load(f)) for sp, f in files.items()}
    folder.mkdir(parents=True, exist_ok=True)
    s = cfg.settings
    thumb = FrozenBackbone(cfg.backbone, s.size, cfg.weights, cfg.threads)
    patch = FrozenBackbone(patch_name, s.patch, patch_weights(cfg), cfg.threads)  # exported at the patch size
    out = {}
    for sp in SPLITS:
        n_var = cfg.variants if sp == "train" else cfg.eval_variants
        feats = _features_for(sources.splits[sp], sources.keys, n_var, cfg, thumb, patch, sp, progress)
        tmp = folder / f".{sp}.tmp.npz"
        np.savez(tmp, **feats)
        tmp.replace(files[sp])
        out[sp] = feats
    return out


# --- heads -----------------------------------------------------------------------------------------

def as_tensors(feats: dict) -> dict[str, torch.Tensor]:
    """A split's arrays as float32 / int64 tensors, converted once (not per batch)."""
    return {k: torch.from_numpy(v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in feats.items()}


def _tensors(feats: dict, idx, patches: bool) -> tuple:
    return (feats["thumb"][idx], feats["patch"][idx] if patches else None, feats["cropped"][idx], feats["rect"][idx],
            feats["factor"][idx], feats["positions"][idx] if patches else None)


def _predict(heads: CropHeads, feats: dict, batch: int = 1024) -> dict[str, np.ndarray]:
    feats = as_tensors(feats) if isinstance(feats["thumb"], np.ndarray) else feats
    heads.eval()
    outs = {"cropped": [], "rect": [], "factor": [], "positions": []}
    with torch.no_grad():
        for i in range(0, len(feats["cropped"]), batch):
            t, p, *_ = _tensors(feats, slice(i, i + batch), heads.uses_patches)
            logit, rect, factor, pos = heads(t, p)
            outs["cropped"].append(torch.sigmoid(logit).numpy())
            outs["rect"].append(rect.numpy())
            outs["factor"].append(factor.numpy())
            if pos is not None:
                outs["positions"].append(torch.softmax(pos, -1).numpy())
    return {k: np.concatenate(v) for k, v in outs.items() if v}


def _val_loss(heads: CropHeads, feats: dict) -> float:
    heads.eval()
    with torch.no_grad():
        t, p, cropped, rect, factor, positions = _tensors(feats, slice(None), heads.uses_patches)
        return float(crop_losses(heads(t, p), cropped, rect, factor, positions)["total"])


def train_heads(feats: dict[str, dict], cfg: CropTrainConfig, patches: bool, progress: bool = True,
                desc: str = "") -> tuple[CropHeads, dict]:
    """Train CropHeads on cached features; returns (heads at the best validation epoch, history)."""
    torch.manual_seed(cfg.seed)
    train, val = as_tensors(feats["train"]), as_tensors(feats["val"])
    heads = CropHeads(train["thumb"].shape[1], train["patch"].shape[2] if patches else None, cfg.settings.grid,
                      dropout=cfg.dropout)
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train["cropped"])
    steps = cfg.epochs * max(1, -(-n // cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(cfg.seed)
    best, best_state, history = float("inf"), None, []
    for epoch in tqdm(range(cfg.epochs), desc=f"training {desc}", unit="epoch", disable=not progress):
        heads.train()
        order = rng.permutation(n)
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            t, p, cropped, rect, factor, positions = _tensors(train, torch.from_numpy(order[i:i + cfg.batch_size]), patches)
            loss = crop_losses(heads(t, p), cropped, rect, factor, positions)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(cropped)
        v = _val_loss(heads, val)
        history.append({"epoch": epoch + 1, "train_loss": total / n, "val_loss": v})
        if v < best:
            best, best_state = v, {k: x.clone() for k, x in heads.state_dict().items()}
    heads.load_state_dict(best_state)
    return heads.eval(), {"history": history, "best_val_loss": best,
                          "best_epoch": min(history, key=lambda h: h["val_loss"])["epoch"]}


# --- scores ----------------------------------------------------------------------------------------

def rect_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) x0, y0, x1, y1."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(1e-9, area(a) + area(b) - inter)


def score(pred: dict, feats: dict) -> dict:
    """The report's scores for predictions on a split (see the module's docstring)."""
    from sklearn.metrics import roc_auc_score

    y = feats["cropped"].astype(bool)
    p = pred["cropped"]
    out = {"n": int(len(y)), "n_cropped": int(y.sum()),
           "auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
           "accuracy": float(((p >= 0.5) == y).mean())}
    if "factor" in pred:
        err = np.abs(pred["factor"] - feats["factor"])
        iou = rect_iou(pred["rect"], feats["rect"])
        out.update({"factor_mae": float(err.mean()), "factor_mae_cropped": float(err[y].mean()),
                    "iou": float(iou.mean()), "iou_cropped": float(iou[y].mean())})
    if "positions" in pred:
        hit = pred["positions"].argmax(-1) == feats["positions"]
        out.update({"patch_accuracy": float(hit.mean()), "patch_accuracy_cropped": float(hit[y].mean())})
    return out


def trivial_baseline(feats: dict[str, dict], grid: int) -> dict:
    """Constants from the training set: P(cropped) = the training fraction, the median rectangle
    and crop factor (the median minimises the absolute error); each patch where it appears."""
    train, test = feats["train"], feats["test"]
    n = len(test["cropped"])
    pred = {"cropped": np.full(n, train["cropped"].mean(), np.float32),
            "rect": np.tile(np.median(train["rect"], 0), (n, 1)),
            "factor": np.full(n, np.median(train["factor"]), np.float32),
            "positions": np.tile(np.eye(grid * grid, dtype=np.float32), (n, 1, 1))}
    return score(pred, test)


def shortcut_probe(feats: dict[str, dict]) -> dict:
    """Cropped or not from low-level pixel statistics alone (logistic regression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(feats["train"]["low_level"], feats["train"]["cropped"].astype(int))
    return score({"cropped": clf.predict_proba(feats["test"]["low_level"])[:, 1]}, feats["test"])


# --- the whole run ---------------------------------------------------------------------------------

def train_crops(data: list[str], out: str | os.PathLike, cfg: CropTrainConfig, *, cache_dir: str | None = None,
                progress: bool = True, log=print) -> dict:
    """Train and score the crop models; write OUT/crops.estatelens (the full model), OUT/metrics.json
    and OUT/report.md. Returns the metrics."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    sources = collect_sources(data, cfg.settings, cfg.seed, workers=max(2, cfg.workers), progress=progress)
    log(f"sources: {sources.counts()} ({len(sources.skipped)} left out)")
    for sp in SPLITS:
        if not sources.splits[sp]:
            raise ValueError(f"no source photos fell in the {sp} split; give more photos")
    feats = cached_features(sources, cfg, Path(cache_dir) if cache_dir else estatelens_home() / "crop-cache",
                            progress, log)
    t_feat = time.time() - t0
    full, full_hist = train_heads(feats, cfg, patches=True, progress=progress, desc="full model")
    thumb, thumb_hist = train_heads(feats, cfg, patches=False, progress=progress, desc="thumbnail only")
    metrics = {
        "config": cfg.to_dict(), "data": [str(d) for d in data], "sources": sources.counts(),
        "test_keys_hash": split_keys_hash([sources.keys[p] for p in sources.splits["test"]]),
        "left_out": len(sources.skipped), "left_out_reasons": _reasons(sources.skipped),
        "samples": {sp: int(len(feats[sp]["cropped"])) for sp in SPLITS},
        "test": {"full": score(_predict(full, feats["test"]), feats["test"]),
                 "thumbnail_only": score(_predict(thumb, feats["test"]), feats["test"]),
                 "trivial": trivial_baseline(feats, cfg.settings.grid),
                 "shortcut_probe": shortcut_probe(feats)},
        "val": {"full": score(_predict(full, feats["val"]), feats["val"]),
                "thumbnail_only": score(_predict(thumb, feats["val"]), feats["val"])},
        "training": {"full": full_hist, "thumbnail_only": thumb_hist, "feature_seconds": t_feat,
                     "seconds": time.time() - t0},
        "test_by_source": _by_source(full, thumb, feats["test"], sources.splits["test"], data),
    }
    write_json(out / "metrics.json", metrics)
    (out / "report.md").write_text(report_markdown(metrics), encoding="utf-8")
    held_out = {"seed": cfg.seed, "test_keys_hash": metrics["test_keys_hash"], "data": metrics["data"]}
    save_crop_bundle(out / "crops.estatelens", full, cfg, metrics["test"]["full"], held_out)
    save_crop_bundle(out / "crops-thumbnail.estatelens", thumb, cfg, metrics["test"]["thumbnail_only"], held_out)
    return metrics


def _reasons(skipped: list[dict]) -> dict:
    from collections import Counter

    return dict(Counter(s["reason"].split(" (")[0].split(":")[0] for s in skipped).most_common())


def _by_source(full: CropHeads, thumb: CropHeads, test: dict, paths: list[str], data: list[str]) -> dict:
    """Test scores per DATA argument (houses, rooms-web), for the bar's two sources."""
    roots = [os.path.abspath(d) for d in data]
    owner = np.array([next((i for i, r in enumerate(roots) if paths[s].startswith(r + os.sep)), -1)
                      for s in test["source"]])
    out = {}
    for i, root in enumerate(roots):
        mask = owner == i
        if mask.sum() < 4:
            continue
        part = {k: v[mask] for k, v in test.items()}
        out[data[i]] = {"full": score(_predict(full, part), part), "thumbnail_only": score(_predict(thumb, part), part)}
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def report_markdown(m: dict) -> str:
    t = m["test"]
    rows = [("full model (thumbnail + patches)", t["full"]), ("thumbnail only", t["thumbnail_only"]),
            ("trivial baseline", t["trivial"]), ("shortcut probe (pixel statistics)", t["shortcut_probe"])]
    lines = ["# Crop detection", "",
             f"Sources: {m['sources']} ({m['left_out']} left out: {m['left_out_reasons']}); samples "
             f"{m['samples']} (half cropped).", "",
             "| model | ROC AUC | accuracy | crop-factor error | ... on crops | IoU | IoU on crops | patch position |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in rows:
        lines.append(f"| {name} | {s['auc']:.3f} | {_pct(s['accuracy'])} | {_pct(s.get('factor_mae'))} | "
                     f"{_pct(s.get('factor_mae_cropped'))} | {_fmt(s.get('iou'))} | {_fmt(s.get('iou_cropped'))} | "
                     f"{_pct(s.get('patch_accuracy'))} |")
    for src, s in m.get("test_by_source", {}).items():
        lines += ["", f"Test photos from {src}: full model AUC {s['full']['auc']:.3f}, crop-factor error "
                      f"{_pct(s['full']['factor_mae'])}; thumbnail only AUC {s['thumbnail_only']['auc']:.3f}, "
                      f"{_pct(s['thumbnail_only']['factor_mae'])}."]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def save_crop_bundle(path: str | os.PathLike, heads, cfg, test_scores: dict, held_out: dict | None = None) -> Path:
    import torch

    from ..models import create_model

    patch_name = cfg.patch_backbone or cfg.backbone
    norms = {}
    for role, name in (("thumb", cfg.backbone), ("patch", patch_name)):
        pre = create_model(name, num_classes=1).preprocessing
        norms[role] = {"mean": list(pre.mean), "std": list(pre.std)}
    final, tmp = staging_folder(path)
    torch.save(heads.state_dict(), tmp / HEADS_FILE)
    write_json(tmp / CROPS_FILE, {
        "format": 1, "kind": "crops", "estatelens_version": __version__, "settings": cfg.settings.to_dict(),
        "backbone": cfg.backbone, "patch_backbone": patch_name, "weights": _absolute(cfg.weights),
        "patch_weights": _absolute(patch_weights(cfg)), "thumb_dim": heads.thumb[1].in_features,
        "patch_dim": heads.patch[1].in_features if heads.uses_patches else None, "normalise": norms,
        "test": test_scores, "held_out": held_out or {}})
    commit_folder(tmp, final)
    return final


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None
