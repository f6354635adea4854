"""Multi-task fine-tuning: attributes (fireplace, balcony, ...) learnt with the room-type network.

While the last blocks fine-tune for room type, one linear output per attribute reads the same
embedding, and a masked binary loss (a photo without a yes/no label for an attribute counts for
nothing there) pulls the shared features towards what the attribute needs. The shipped attribute
heads are still the logistic regressions that `train-attribute` fits afterwards on the frozen
embedding, with their cross-validated calibration and threshold (training/attributes.py); what
multi-task training changes is the embedding they read.

Only the labels of an attribute's train and val splits are used here: its test split is never
seen by the network, so the attribute's test figures stay held apart.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..attributes import YES
from ..data.attribute_labels import read_attribute_label_sources


@dataclass
class AttributeTargets:
    names: list[str]
    values: torch.Tensor      # (N, A) 1.0 / 0.0 per training photo, NaN where not labelled
    pos_weight: torch.Tensor  # (A,) sqrt(no / yes): a rare "yes" weighs more, as class_balance="sqrt"
    summary: dict             # name -> {"yes", "no", "test_left_out"} among the training photos
    labelled: dict            # name -> sorted photo_key of every photo whose label the loss used


def photo_key(path: str) -> str:
    """A short, stable key of a photo file (its real path), as the bundle records the photos whose
    attribute labels the network learnt from: `train-attribute` calibrates on the others."""
    return hashlib.sha1(os.path.realpath(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]


class MultiTaskOutput:
    """What a multi-task network returns in training mode (not a tuple: `_loss` reads tuples as
    Inception's (logits, aux_logits))."""

    def __init__(self, logits: torch.Tensor, attributes: torch.Tensor):
        self.logits, self.attributes = logits, attributes


class WithAttributes(nn.Module):
    """body -> embedding -> (room head, attribute head); in eval mode only the room logits, so
    evaluation, calibration and export are unchanged."""

    def __init__(self, body: nn.Module, head: nn.Module, num_features: int, n_attributes: int, dropout: float):
        super().__init__()
        self.body, self.head = body, head
        self.attributes = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, n_attributes))

    def forward(self, x: torch.Tensor):
        feats = self.body(x)
        logits = self.head(feats)
        return MultiTaskOutput(logits, self.attributes(feats)) if self.training else logits


def attribute_targets(samples: Sequence, attributes: dict[str, list[str]], seed: int,
                      log: Callable[[str], None] = print) -> AttributeTargets:
    """Targets for the training photos `samples` (in their order) from each attribute's sources
    (CSVs or folders, as `train-attribute` reads them)."""
    row = {os.path.realpath(s.path): i for i, s in enumerate(samples)}
    names = list(attributes)
    values = torch.full((len(samples), len(names)), float("nan"))
    summary, labelled = {}, {}
    for j, name in enumerate(names):
        labels = read_attribute_label_sources(attributes[name], name, seed=seed)
        yes = no = held = 0
        for s in labels.samples:
            i = row.get(os.path.realpath(s.path))
            if i is None:
                continue
            if s.split == "test":  # the attribute's test photos stay unseen by this loss
                held += 1
                continue
            values[i, j] = 1.0 if s.label == YES else 0.0
            yes, no = yes + (s.label == YES), no + (s.label != YES)
            labelled.setdefault(name, []).append(photo_key(s.path))
        if yes == 0 or no == 0:
            raise ValueError(f"attribute {name}: the training photos include {yes} labelled yes and {no} "
                             f"labelled no in {', '.join(map(str, attributes[name]))}; multi-task training needs both")
        summary[name] = {"yes": yes, "no": no, "test_left_out": held}
        log(f"attribute {name}: {yes} yes and {no} no among the training photos "
            f"({held} of its test photos left out of the loss)")
    pos = torch.tensor([summary[n]["yes"] for n in names], dtype=torch.float32)
    neg = torch.tensor([summary[n]["no"] for n in names], dtype=torch.float32)
    return AttributeTargets(names, values, (neg / pos).sqrt(), summary,
                            {n: sorted(set(labelled.get(n, []))) for n in names})


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the labelled (not NaN) entries; 0 (with a gradient path)
    when the batch has none."""
    mask = ~torch.isnan(targets)
    if not mask.any():
        return logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits.float(), torch.nan_to_num(targets), pos_weight=pos_weight,
                                              reduction="none")
    return (loss * mask).sum() / mask.sum()
