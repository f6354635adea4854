"""Training configuration: plain values with defaults; an unknown key is an error."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

MODES = ("features", "finetune", "scratch")

# Per-mode defaults, used where the user leaves a value unset (None).
_MODE_DEFAULTS = {
    "features": {"epochs": 30, "lr": 2e-3, "views": 4, "patience": 8},
    "finetune": {"epochs": 12, "lr": 1e-3, "views": 6, "patience": 5},
    "scratch": {"epochs": 40, "lr": 3e-3, "views": 0, "patience": 10},
}


# Left out when a saved run's settings are compared with a new run's (training/engine.py resume,
# compare.py finished runs): settings that change only the rounding of a run's arithmetic, which a
# run's machine may choose, and settings added after runs were saved, at the value that means "as
# before". An upgrade, or a move to a CPU without bfloat16, does not restart anything.
_ROUNDING_ONLY = ("bf16",)
_ADDED_LATER = {"qat": False, "scene_targets": None, "scene_loss_weight": 0.3}


def comparable(settings: dict) -> dict:
    """`settings` (TrainConfig.to_dict(), or one saved earlier) as runs are matched on."""
    return {k: v for k, v in settings.items()
            if k not in _ROUNDING_ONLY and not (k in _ADDED_LATER and v == _ADDED_LATER[k])}


def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX). Without it PyTorch
    emulates bfloat16 and autocast makes training slower, not faster: on a 2-core AVX2 AMD EPYC
    the distilled multi-task fine-tuning ran at 2.3 photos/s against 27 in float32 (2026-12-02)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers, not promised to stay
        return False


@dataclass
class TrainConfig:
    model: str = "efficientnet_lite0"
    mode: str = "finetune"
    epochs: int | None = None
    batch_size: int = 32
    lr: float | None = None            # head learning rate; the backbone gets lr * backbone_lr_scale
    backbone_lr_scale: float = 0.3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    class_balance: str = "none"        # none | sqrt | full: loss weights against class imbalance
    warmup_epochs: float = 1.0
    schedule: str = "cosine"           # cosine | exponential
    patience: int | None = None        # early stopping: epochs without a better val accuracy
    seed: int = 0
    image_size: int | None = None      # None: the model's own input size
    train_from_block: int | None = None  # finetune: first trainable block; None: -6 where supported
    views: int | None = None           # augmented views cached per photo for frozen-prefix training
    weights: str | None = None         # local ImageNet weights file for pretrained modes
    init: str | None = None            # start from this bundle's weights.pt (train further)
    workers: int = 2
    threads: int | None = None
    bf16: bool | None = None           # bfloat16 autocast for the trainable part; None: where the CPU has it
    max_minutes: float | None = None   # time budget for the training loop
    cache_dir: str | None = None       # where frozen-prefix outputs are cached
    attributes: dict | None = None     # multi-task: attribute name -> [label CSVs or folders]
    attribute_loss_weight: float = 1.0  # weight of the attributes' masked loss beside room type's
    distill: str | None = None         # teacher bundle: its room-type probabilities are soft targets
    distill_weight: float = 0.5        # share of the teacher's loss in the room-type loss
    distill_temperature: float = 2.0   # softening of both networks' logits for that loss
    qat: bool = False                  # trainable convolutions see int8 rounding (training/qat.py)
    scene_targets: str | None = None   # CSV of per-photo scene distributions (a teacher's): soft targets
    scene_loss_weight: float = 0.3     # weight of their KL divergence beside room type's loss

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.class_balance not in ("none", "sqrt", "full"):
            raise ValueError(f"class_balance must be none, sqrt or full, got {self.class_balance!r}")
        if self.schedule not in ("cosine", "exponential"):
            raise ValueError(f"schedule must be 'cosine' or 'exponential', got {self.schedule!r}")
        if self.mode == "scratch" and self.weights:
            raise ValueError("weights are for the pretrained modes (features, finetune); scratch starts "
                             "from random initialisation")
        for key, value in _MODE_DEFAULTS[self.mode].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.qat and self.mode == "features":
            raise ValueError("qat rounds the convolutions being trained; --mode features trains none")
        if self.qat and self.bf16:
            raise ValueError("qat needs float32 arithmetic: bfloat16 would move the rounded values off the int8 grid")
        if self.bf16 is None:
            self.bf16 = False if self.qat else native_bf16()
        if self.attributes and self.mode != "finetune":
            raise ValueError("attributes (multi-task training) shape the embedding while fine-tuning; "
                             "use --mode finetune, or train-attribute for a head on a frozen embedding")
        if self.scene_targets and self.mode != "finetune":
            raise ValueError("scene targets shape the embedding while fine-tuning; use --mode finetune")
        if self.distill and self.mode != "finetune":
            raise ValueError("distillation (distill) learns from a teacher's outputs on the cached frozen-prefix "
                             "outputs; use --mode finetune")
        if not 0.0 <= self.distill_weight <= 1.0 or self.distill_temperature <= 0:
            raise ValueError("distill_weight must be between 0 and 1 and distill_temperature above 0")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be at least 1")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
