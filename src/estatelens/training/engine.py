"""Transfer learning on a `PhotoCollection`: features, finetune or scratch.

Two ways to feed the trainable part, chosen from the mode and the model:
- frozen prefix (features mode, and finetune of block-structured backbones): the frozen part's
  outputs are cached once per photo and view (see `prefix_cache`), and each epoch trains only the
  suffix on them; this is what makes fine-tuning thousands of photos feasible on 2 CPU cores;
- streaming (scratch, full finetune): photos are decoded and augmented every epoch.

`train_one_epoch` and `evaluate` are plain functions, as in torchvision's references; a
checkpoint is one dict, written every epoch, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..bundle import ModelBundle, save_bundle
from ..data.dataset import PhotoCollection
from ..data.loader import LabelledPhotos, make_loader
from ..data.transforms import AUGMENTATION_VERSION, decode_side, eval_preset, train_preset
from ..models import Classifier, create_model
from . import qat
from .calibration import fit_temperature
from .config import TrainConfig, comparable
from .multitask import (AttributeTargets, MultiTaskOutput, SceneTargets, WithAttributes, attribute_targets,
                        masked_bce, masked_soft_cross_entropy, scene_targets)
from .optim import build_optimizer, build_scheduler
from .prefix_cache import cache_key, cached_views, default_cache_dir, module_fingerprint, photos_fingerprint

AUX_LOSS_WEIGHT = 0.4  # Inception v3's auxiliary classifier, as in its paper


@dataclass
class FitResult:
    bundle: ModelBundle
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float | None
    train_seconds: float
    stopped_by: str  # "epochs" | "early_stopping" | "time_budget"
    model: Classifier = field(repr=False, default=None)


# --- batches --------------------------------------------------------------------------------

class _CachedBatches:
    """Shuffled mini-batches over cached prefix outputs (float16 memmaps -> float32 tensors).

    rows: the usable rows (photos that decoded); training drops a last batch of one, which batch
    norm cannot handle."""

    def __init__(self, arrays: list[np.ndarray], labels: np.ndarray, rows: np.ndarray, batch_size: int,
                 shuffle: bool, seed: int):
        self.arrays, self.labels, self.rows = arrays, torch.as_tensor(labels), torch.as_tensor(rows)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    @property
    def n(self) -> int:
        return len(self.rows)

    def __iter__(self):
        arr = self.arrays[self.epoch % len(self.arrays)]
        order = (self.rows[torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))]
                 if self.shuffle else self.rows)
        for i in range(0, self.n, self.batch_size):
            idx = order[i:i + self.batch_size]
            if self.shuffle and len(idx) == 1 and self.n > 1:
                break
            sel = np.sort(idx.numpy())  # sorted reads are kinder to the memmap
            x = torch.from_numpy(np.asarray(arr[sel], dtype=np.float32))
            yield x, self.labels[sel], torch.from_numpy(sel)


# --- one epoch --------------------------------------------------------------------------------

def _loss(out, y: torch.Tensor, smoothing: float, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(out, MultiTaskOutput):
        return _loss(out.logits, y, smoothing, weight)
    if isinstance(out, tuple):  # (logits, aux logits); aux is None where the photo is too small for it
        logits, aux = out
        loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=smoothing)
        if aux is not None:
            loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(aux, y, weight=weight, label_smoothing=smoothing)
        return loss, logits
    return F.cross_entropy(out, y, weight=weight, label_smoothing=smoothing), out


def class_weights(labels: list[int], n_classes: int, balance: str) -> torch.Tensor | None:
    """Loss weights per class: "none"; "sqrt" (inverse square root of the class frequency) or
    "full" (inverse frequency), scaled so that the average photo keeps weight 1."""
    if balance == "none":
        return None
    counts = torch.bincount(torch.as_tensor(labels), minlength=n_classes).float().clamp(min=1)
    w = (counts.sum() / counts) ** (0.5 if balance == "sqrt" else 1.0)
    return w * counts.sum() / (w * counts).sum()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: KL(teacher || student) on logits softened by `temperature`,
    times temperature^2 so that its gradients keep the scale of the hard-label loss."""
    t = temperature
    return F.kl_div(F.log_softmax(student.float() / t, 1), F.log_softmax(teacher.float() / t, 1),
                    reduction="batchmean", log_target=True) * t * t


def train_one_epoch(model: nn.Module, batches: Iterable, optimizer, scheduler, *, smoothing: float,
                    bf16: bool, desc: str, total: int, deadline: float | None = None,
                    weight: torch.Tensor | None = None, attributes: AttributeTargets | None = None,
                    attribute_weight: float = 1.0, teacher: nn.Module | None = None,
                    distill_weight: float = 0.5, distill_temperature: float = 2.0,
                    scene: SceneTargets | None = None, scene_weight: float = 0.3) -> dict:
    """One pass over `batches`. With a teacher (a module reading the same inputs), the room-type
    loss is (1 - distill_weight) x the labels' loss + distill_weight x the teacher's soft-target loss;
    with scene targets, scene_weight x their KL divergence is added."""
    model.train()
    seen, loss_sum, correct, t0 = 0, 0.0, 0, time.time()
    attr_sum, scene_sum, n_batches = 0.0, 0.0, 0
    with tqdm(total=total, desc=desc, unit="img", leave=False) as bar:
        for batch in batches:
            if batch is None:
                continue
            x, y, idx = batch
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
                loss, logits = _loss(out, y, smoothing, weight)
                if teacher is not None:
                    with torch.no_grad():
                        soft = teacher(x)
                    loss = ((1 - distill_weight) * loss
                            + distill_weight * distillation_loss(logits, soft, distill_temperature))
            if attributes is not None:
                attr_loss = masked_bce(out.attributes, attributes.values[idx], attributes.pos_weight)
                loss = loss + attribute_weight * attr_loss
                attr_sum += attr_loss.item()
            if scene is not None:
                scene_loss = masked_soft_cross_entropy(out.scene, scene.values[idx])
                loss = loss + scene_weight * scene_loss
                scene_sum += scene_loss.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(y)
            seen, n_batches = seen + n, n_batches + 1
            loss_sum += loss.item() * n
            correct += (logits.argmax(1) == y).sum().item()
            bar.update(n)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen / (time.time() - t0):.0f}")
            if deadline and time.time() > deadline:
                break
    out = {"loss": loss_sum / max(1, seen), "acc": correct / max(1, seen), "seen": seen,
           "seconds": time.time() - t0}
    if attributes is not None:
        out["attribute_loss"] = attr_sum / max(1, n_batches)
    if scene is not None:
        out["scene_loss"] = scene_sum / max(1, n_batches)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, *, bf16: bool = False) -> dict:
    """Loss, accuracy and logits over `batches` (sample order restored)."""
    model.eval()
    logits_all, labels, index, loss_sum = [], [], [], 0.0
    for batch in batches:
        if batch is None:
            continue
        x, y, idx = batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        logits_all.append(logits)
        labels.append(y)
        index.append(idx)
    if not logits_all:
        return {"loss": None, "acc": None, "logits": torch.zeros(0, 0), "labels": torch.zeros(0, dtype=torch.long)}
    order = torch.cat(index).argsort()
    z, y = torch.cat(logits_all)[order], torch.cat(labels)[order]
    return {"loss": loss_sum / len(y), "acc": (z.argmax(1) == y).float().mean().item(),
            "logits": z, "labels": y}


# --- the whole run ----------------------------------------------------------------------------

def fit(collection: PhotoCollection, out_dir: str | Path, config: TrainConfig,
        log: Callable[[str], None] = print, budget_spans_reruns: bool = False) -> FitResult:
    """Train on the collection's train split, select on val, save the best model as a bundle.

    budget_spans_reruns: `max_minutes` counts the training time of earlier, interrupted attempts
    too, and a run stopped by it is finished rather than continued when rerun."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    classes = collection.classes
    class_to_idx = {c: i for i, c in enumerate(classes)}
    train, val = collection.split("train"), collection.split("val")
    if not train:
        raise ValueError(f"{collection.source}: the train split is empty")
    if len(classes) < 2:
        raise ValueError(f"{collection.source}: a classifier needs at least 2 classes, found {classes}")
    untrained = sorted(set(classes) - {s.label for s in train})
    if untrained:
        log(f"warning: no training photos for {', '.join(untrained)}; the model cannot learn them")
    if not val:
        log("warning: no validation photos; the last epoch is kept and probabilities are not calibrated")

    model = create_model(config.model, len(classes), pretrained=config.mode != "scratch", weights=config.weights)
    if config.init:
        _load_init(model, config.init, classes, log)
    pre = model.preprocessing
    if config.image_size:
        pre = dataclasses.replace(pre, size=config.image_size)

    t_prepare = time.time()
    targets = attribute_targets(train, config.attributes, config.seed, log) if config.attributes else None
    scene = scene_targets(train, config.scene_targets, log) if config.scene_targets else None
    trainable, param_sets, train_batches, val_batches, teacher = _plan(
        model, config, collection, class_to_idx, pre, log, n_attributes=len(targets.names) if targets else 0,
        n_scene=len(scene.names) if scene else 0)
    prepare_seconds = time.time() - t_prepare
    if config.qat:
        log(f"quantisation-aware training: {qat.enable(trainable)} convolutions see int8 rounding")
    optimizer = build_optimizer(param_sets, config.weight_decay)
    steps = len(train_batches) * config.epochs
    scheduler = build_scheduler(optimizer, steps, int(config.warmup_epochs * len(train_batches)), config.schedule)

    weights = class_weights([class_to_idx[s.label] for s in train], len(classes), config.class_balance)
    if weights is not None:
        log("class weights: " + ", ".join(f"{c} {w:.2f}" for c, w in zip(classes, weights.tolist())))
    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    fingerprint = {"classes": classes, "train": [s.path for s in train], "val": [s.path for s in val]}
    state = _resume(ckpt_path, config, fingerprint, model, optimizer, scheduler, log)
    history, best, bad_epochs = state["history"], state["best"], state["bad_epochs"]
    if "attribute_head" in state and isinstance(trainable, WithAttributes):
        trainable.attributes.load_state_dict(state["attribute_head"])
    if "scene_head" in state and isinstance(trainable, WithAttributes):
        trainable.scene.load_state_dict(state["scene_head"])
    # An early-stopped run is finished; one stopped by the time budget goes on when rerun, with a
    # fresh budget, unless the budget spans reruns (compare: a run's budget is its whole life).
    finished = {"early_stopping"} | ({"time_budget"} if budget_spans_reruns else set())
    stopped_by = state.get("stopped_by") if state.get("stopped_by") in finished else "epochs"
    t_start = time.time() - state["seconds"]
    budget_from = t_start if budget_spans_reruns else time.time()
    deadline = budget_from + 60 * config.max_minutes if config.max_minutes else None
    first_epoch = config.epochs + 1 if stopped_by != "epochs" else state["epoch"] + 1

    for epoch in range(first_epoch, config.epochs + 1):
        _set_epoch(train_batches, epoch - 1, config.seed)
        tr = train_one_epoch(trainable, train_batches, optimizer, scheduler, smoothing=config.label_smoothing,
                             weight=weights, attributes=targets, attribute_weight=config.attribute_loss_weight,
                             teacher=teacher, distill_weight=config.distill_weight,
                             distill_temperature=config.distill_temperature,
                             scene=scene, scene_weight=config.scene_loss_weight,
                             bf16=config.bf16, desc=f"epoch {epoch}/{config.epochs}",
                             total=_count(train_batches), deadline=deadline)
        va = evaluate(trainable, val_batches) if val else {"loss": None, "acc": None}
        history.append({"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
                        "val_loss": va["loss"], "val_acc": va["acc"], "seconds": tr["seconds"],
                        "images_per_second": tr["seen"] / max(1e-9, tr["seconds"]),
                        **({"train_attribute_loss": tr["attribute_loss"]} if targets else {}),
                        **({"train_scene_loss": tr["scene_loss"]} if scene else {})})
        improved = best is None or (va["acc"] is not None and va["acc"] > best["val_acc"]) or va["acc"] is None
        if improved:
            best = {"epoch": epoch, "val_acc": va["acc"], "val_loss": va["loss"]}
            _save_atomic(model.state_dict(), best_path)
            bad_epochs = 0
        else:
            bad_epochs += 1
        log(_epoch_line(history[-1], improved))
        if deadline and time.time() > deadline:
            stopped_by = "time_budget"
        elif val and bad_epochs >= config.patience and epoch < config.epochs:
            stopped_by = "early_stopping"
        _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history, "best": best,
                      "bad_epochs": bad_epochs, "config": _resume_key(config), "data": fingerprint,
                      "stopped_by": stopped_by, "rng": torch.get_rng_state(),
                      **({"attribute_head": trainable.attributes.state_dict()} if targets else {}),
                      **({"scene_head": trainable.scene.state_dict()} if scene else {}),
                      "seconds": time.time() - t_start}, ckpt_path)
        if stopped_by != "epochs":
            break

    train_seconds = time.time() - t_start
    model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    model.eval()
    if val:
        scored = evaluate(trainable, val_batches)
        temperature = fit_temperature(scored["logits"], scored["labels"])
    else:
        temperature = 1.0
    log(f"calibration: temperature {temperature:.3f} fitted on {len(val)} validation photos")
    # With qat, the temperature and best_val_accuracy are those of the network as int8 will compute
    # it (the rounding still on); the bundle holds the float network, which `estatelens quantize` rounds.
    qat.disable(trainable)
    bundle = save_bundle(out_dir / "model", model, classes, pre, {
        "model": config.model, "mode": config.mode, "config": config.to_dict(),
        "training": {"best_epoch": best["epoch"], "best_val_accuracy": best["val_acc"],
                     "train_seconds": round(train_seconds, 1), "prepare_seconds": round(prepare_seconds, 1),
                     "stopped_by": stopped_by, "history": history},
        "data": {k: v for k, v in collection.summary().items() if k not in ("skipped", "leakage")},
        **({"multitask": {"attributes": targets.summary, "loss_weight": config.attribute_loss_weight,
                          "labelled": targets.labelled}} if targets else {}),
        **({"distilled_from": {"bundle": str(config.distill), "weight": config.distill_weight,
                               "temperature": config.distill_temperature}} if teacher is not None else {}),
        **({"scene_teacher": {"targets": scene.source, "classes": scene.names, "photos": scene.matched,
                              "loss_weight": config.scene_loss_weight}} if scene else {}),
    }, temperature=temperature)
    return FitResult(bundle, history, best["epoch"], best["val_acc"], train_seconds + prepare_seconds,
                     stopped_by, model)


def _plan(model: Classifier, config: TrainConfig, collection: PhotoCollection, class_to_idx, pre, log,
          n_attributes: int = 0, n_scene: int = 0):
    """Decide what trains and how batches are fed: (trainable module, [(params, lr)], train, val,
    teacher or None). With n_attributes (n_scene), the trainable suffix also outputs that many
    attribute (scene) logits in training; with config.distill, the teacher reads the same inputs as the trainable module."""
    train, val = collection.split("train"), collection.split("val")
    from_block = config.train_from_block
    if config.mode == "finetune" and from_block is None:
        from_block = -6 if hasattr(model.backbone, "split") else 0
    if config.mode == "features":
        prefix, suffix = model.backbone, model.head
    elif config.mode == "finetune" and from_block != 0:
        prefix, suffix = model.trunk_split(from_block)
    elif n_attributes or n_scene:
        raise ValueError(f"multi-task training needs a network that fine-tunes from a given block "
                         f"(EfficientNet-Lite and the other block-structured ones), not {config.model} "
                         f"with --train-from-block {from_block}")
    else:  # streaming: the whole network learns from freshly augmented photos
        side = decode_side(pre)
        train_loader = make_loader(LabelledPhotos(train, class_to_idx, train_preset(pre), side),
                                   config.batch_size, True, config.workers, config.seed, drop_last=True)
        val_loader = make_loader(LabelledPhotos(val, class_to_idx, eval_preset(pre), side),
                                 config.batch_size, False, config.workers)
        log(f"training the whole {config.model} ({config.mode}) on {len(train)} photos, streaming")
        teacher = _teacher(config, collection.classes, None, 0, log) if config.distill else None
        return model, _lr_groups(model, list(model.parameters()), config), train_loader, val_loader, teacher

    for p in model.parameters():
        p.requires_grad_(False)
    trainable_params = list(_own_parameters(suffix))
    extra_head = []
    if n_attributes or n_scene:
        body, head = suffix
        suffix = WithAttributes(body, head, model.num_features, n_attributes, model.head[0].p, n_scene)
        extra_head = [p for m in (suffix.attributes, suffix.scene) if m is not None for p in m.parameters()]
        trainable_params += extra_head
    for p in trainable_params:
        p.requires_grad_(True)
    key_parts = dict(model=config.model, weights=config.weights, block=from_block, mode=config.mode,
                     prefix=module_fingerprint(_own_parameters(prefix)),
                     pre=pre.to_dict(), seed=config.seed, augmentation=AUGMENTATION_VERSION)
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    batches = {}
    for name, samples, n_views in (("train", train, config.views), ("val", val, 0)):
        if not samples:
            continue
        key = cache_key(split=name, photos=photos_fingerprint(samples), **key_parts)
        views, ok = cached_views(prefix, samples, class_to_idx, pre, n_views, key, cache_dir, config.seed,
                                 config.threads or torch.get_num_threads(), config.workers)
        labels = np.array([class_to_idx[s.label] for s in samples])
        if name == "train":  # epoch e trains on augmented view e (cycling), the clean view last
            batches[name] = _CachedBatches(views[1:] + views[:1], labels, np.flatnonzero(ok),
                                           config.batch_size, True, config.seed)
        else:
            batches[name] = _CachedBatches(views[:1], labels, np.flatnonzero(ok), 128, False, 0)
    n_train = sum(p.numel() for p in trainable_params)
    log(f"training {n_train / 1e6:.2f} M of {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
        f"parameters of {config.model} ({config.mode}) on cached frozen-prefix outputs")
    teacher = _teacher(config, collection.classes, prefix, from_block, log) if config.distill else None
    return (suffix, _lr_groups(model, trainable_params, config, extra_head), batches["train"],
            batches.get("val", []), teacher)


def _teacher(config: TrainConfig, classes: list[str], prefix: nn.Module | None, from_block: int, log) -> nn.Module:
    """The distillation teacher: config.distill's network, cut where the student is, so that it reads
    the same (cached) inputs. Its frozen part must be the student's, or its outputs on those inputs
    would mean nothing."""
    from ..bundle import load_bundle

    bundle = load_bundle(config.distill)
    if bundle.classes != classes:
        raise ValueError(f"{bundle.path}: a teacher must have the student's classes ({', '.join(classes)}), "
                         f"not {', '.join(bundle.classes)}")
    name = bundle.info.get("model", config.model)
    if name != config.model:
        raise ValueError(f"{bundle.path}: is a {name} bundle; the teacher must be a {config.model} like the student")
    net = create_model(name, len(classes), pretrained=False)
    net.load_state_dict(bundle.weights("to distil from"))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if prefix is None:
        teacher = net
    else:
        own_prefix, teacher = net.trunk_split(from_block)
        # an int8 bundle keeps its weights in float16: equal up to that rounding
        if not all(torch.allclose(a, b, rtol=2e-3, atol=1e-4)
                   for a, b in zip(_own_parameters(prefix), _own_parameters(own_prefix), strict=True)):
            raise ValueError(f"{bundle.path}: its frozen blocks differ from the student's; the teacher must "
                             f"share them to read the cached frozen-prefix outputs")
    log(f"distilling from {bundle.path} (weight {config.distill_weight}, temperature {config.distill_temperature})")
    return teacher.eval()


def _lr_groups(model: Classifier, params: list, config: TrainConfig, extra_head=()) -> list[tuple[list, float]]:
    """The heads at lr; pretrained layers at lr x backbone_lr_scale (all at lr from scratch)."""
    head_ids = {id(p) for p in model.head.parameters()} | {id(p) for p in extra_head}
    scale = 1.0 if config.mode == "scratch" else config.backbone_lr_scale
    return [([p for p in params if id(p) not in head_ids], config.lr * scale),
            ([p for p in params if id(p) in head_ids], config.lr)]


def _own_parameters(module: nn.Module):
    """Parameters a module trains; split parts of a network name theirs explicitly, since they
    hold the whole network as a submodule."""
    if hasattr(module, "trainable_parameters"):
        yield from module.trainable_parameters()
    elif isinstance(module, nn.Sequential):
        for child in module:
            yield from _own_parameters(child)
    else:
        yield from module.parameters()


def _count(batches) -> int:
    return batches.n if hasattr(batches, "n") else len(batches.dataset)


# Settings that change how a run computes nothing, so a resumed run may differ in them.
_OPERATIONAL = ("workers", "threads", "cache_dir", "max_minutes")


def _resume_key(config: TrainConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in _OPERATIONAL}


def _load_init(model, init: str, classes: list[str], log) -> None:
    """Start from a bundle's weights: all of them when its classes are ours, else all but the head."""
    from ..bundle import load_bundle

    bundle = load_bundle(init)
    state = bundle.weights("to start from")
    if bundle.info.get("model") and bundle.info["model"] != model.name:
        raise ValueError(f"{bundle.path}: is a {bundle.info['model']} bundle, not {model.name}")
    if bundle.classes != classes:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        log(f"starting from {bundle.path} (backbone only: its classes differ)")
    else:
        log(f"starting from {bundle.path}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("head.")] + list(unexpected)
    if bad:
        raise ValueError(f"{bundle.path / 'weights.pt'}: does not fit {model.name} ({', '.join(bad[:5])}...)")


def _resume(path: Path, config: TrainConfig, fingerprint: dict, model, optimizer, scheduler, log) -> dict:
    """The saved state of an interrupted run with the same settings and the same photos."""
    fresh = {"epoch": 0, "history": [], "best": None, "bad_epochs": 0, "seconds": 0.0}
    if not path.exists():
        return fresh
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a checkpoint from an older version, or a damaged file
        log(f"{path}: unreadable checkpoint ({type(e).__name__}); starting afresh")
        return fresh
    if comparable(ckpt.get("config") or {}) != comparable(_resume_key(config)) or ckpt.get("data") != fingerprint:
        log(f"{path}: checkpoint was made with other settings or photos; starting afresh")
        return fresh
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"])
    log(f"resuming from {path} after epoch {ckpt['epoch']}")
    return ckpt


def _save_atomic(obj, path: Path) -> None:
    """An interrupted save leaves the previous file intact, never a truncated one."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _set_epoch(batches, epoch: int, seed: int) -> None:
    """Each epoch its own shuffle and augmentation draw, the same on a resumed run."""
    if isinstance(batches, _CachedBatches):
        batches.epoch = epoch
    else:
        batches.generator.manual_seed(seed + epoch)


def _epoch_line(h: dict, improved: bool) -> str:
    val = (f"val loss {h['val_loss']:.3f} acc {h['val_acc']:.3f}" if h["val_acc"] is not None else "no val split")
    attr = f" attributes {h['train_attribute_loss']:.3f}" if "train_attribute_loss" in h else ""
    attr += f" scene {h['train_scene_loss']:.3f}" if "train_scene_loss" in h else ""
    return (f"epoch {h['epoch']:3d}  train loss {h['train_loss']:.3f}{attr} acc {h['train_acc']:.3f}  {val}  "
            f"{h['images_per_second']:.0f} img/s{'  *best' if improved else ''}")
