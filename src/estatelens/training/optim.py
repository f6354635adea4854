"""AdamW with decoupled weight decay, and a per-step schedule: linear warm-up, then cosine or
exponential decay."""
from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(params, lr: float, weight_decay: float) -> list[dict]:
    """No weight decay on biases and norm weights (1-d tensors), as is usual for AdamW."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0}]


def build_optimizer(groups: list[tuple[list[nn.Parameter], float]], weight_decay: float) -> torch.optim.AdamW:
    """groups: (parameters, learning rate) pairs, e.g. backbone at a lower rate than the head."""
    all_groups = []
    for params, lr in groups:
        all_groups += param_groups(params, lr, weight_decay)
    return torch.optim.AdamW([g for g in all_groups if g["params"]])


def build_scheduler(optimizer, total_steps: int, warmup_steps: int, kind: str = "cosine",
                    final_fraction: float = 0.01) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "cosine":
            return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t))
        return final_fraction ** t  # exponential decay down to final_fraction

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
