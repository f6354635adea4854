"""Multi-task fine-tuning: attributes (fireplace, balcony, ...) learnt with the room-type network.

While the last blocks fine-tune for room type, one linear output per attribute reads the same
embedding, and a masked binary loss (a photo without a yes/no label for an attribute counts for
nothing there) pulls the shared features towards what the attribute needs. The shipped attribute
heads are still the logistic regressions that `train-attribute` fits afterwards on the frozen
embedding, with their cross-validated calibration and threshold (training/attributes.py); what
multi-task training changes is the embedding they read.

Only the labels of an attribute's train and val splits are used here: its test split is never
seen by the network, so the attribute's test figures stay held apart.

A scene teacher works the same way: a CSV of per-photo distributions (the share of each photo's
pixels in each ADE20K class, from the segmentation network of ../shared/weights,
tools/scene_segments.py) becomes a soft target for another linear output on the embedding, so the
network is pulled towards seeing beds, sofas, cabinets, floor and sky while it learns room types,
and tagging never runs the teacher.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
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


@dataclass
class SceneTargets:
    names: list[str]
    values: torch.Tensor  # (N, K) a distribution over the K columns per training photo; NaN where none
    source: str
    matched: int


class MultiTaskOutput:
    """What a multi-task network returns in training mode (not a tuple: `_loss` reads tuples as
    Inception's (logits, aux_logits))."""

    def __init__(self, logits: torch.Tensor, attributes: torch.Tensor | None, scene: torch.Tensor | None = None):
        self.logits, self.attributes, self.scene = logits, attributes, scene


class WithAttributes(nn.Module):
    """body -> embedding -> (room head, attribute head, scene head); in eval mode only the room
    logits, so evaluation, calibration and export are unchanged."""

    def __init__(self, body: nn.Module, head: nn.Module, num_features: int, n_attributes: int, dropout: float,
                 n_scene: int = 0):
        super().__init__()
        self.body, self.head = body, head
        self.attributes = (nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, n_attributes))
                           if n_attributes else None)
        self.scene = nn.Linear(num_features, n_scene) if n_scene else None

    def forward(self, x: torch.Tensor):
        feats = self.body(x)
        logits = self.head(feats)
        if not self.training:
            return logits
        return MultiTaskOutput(logits, self.attributes(feats) if self.attributes is not None else None,
                               self.scene(feats) if self.scene is not None else None)


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


def scene_targets(samples: Sequence, source: str | os.PathLike, log: Callable[[str], None] = print) -> SceneTargets:
    """Soft targets for the training photos `samples` (in their order) from a CSV with a `path`
    column and one numeric column per scene class (tools/scene_segments.py writes one). A row's
    path is absolute or relative to any folder above the photo (`houses/photos/1_kitchen.jpg`
    matches .../shared/data/houses/photos/1_kitchen.jpg); a path that matches several training
    photos is left out. Rows are normalised to sum 1; photos without a row count for nothing."""
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0] != "path" or len(header) < 3:
            raise ValueError(f"{source}: expected a header `path,<class>,<class>,...`, got {header}")
        rows = list(reader)
    names = header[1:]
    real = [os.path.realpath(s.path) for s in samples]
    exact = {r: i for i, r in enumerate(real)}
    by_depth: dict[int, dict[str, list[int]]] = {}
    values = torch.full((len(samples), len(names)), float("nan"))
    matched = ambiguous = bad = 0
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        try:
            v = [float(x) for x in row[1:]]
        except ValueError:
            v = []
        if len(v) != len(names) or not all(math.isfinite(x) and x >= 0 for x in v) or sum(v) <= 0:
            bad += 1
            continue
        p = Path(row[0])
        if p.is_absolute():
            hits = [exact[r]] if (r := os.path.realpath(p)) in exact else []
        else:
            k = len(p.parts)
            if k not in by_depth:
                index: dict[str, list[int]] = {}
                for i, r in enumerate(real):
                    index.setdefault("/".join(Path(r).parts[-k:]), []).append(i)
                by_depth[k] = index
            hits = by_depth[k].get("/".join(p.parts), [])
        if len(hits) > 1:
            ambiguous += 1
            continue
        if hits:
            values[hits[0]] = torch.tensor(v) / sum(v)
            matched += 1
    if not matched:
        raise ValueError(f"{source}: none of its {len(rows)} rows names a training photo")
    log(f"scene teacher: {matched} of {len(samples)} training photos have targets over {len(names)} classes "
        f"in {source}" + (f" ({bad} rows unreadable, {ambiguous} ambiguous paths left out)" if bad or ambiguous else ""))
    return SceneTargets(names, values, str(source), matched)


def masked_soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean KL(target || softmax(logits)) over the rows with a target (not NaN); 0 (with a gradient
    path) when the batch has none."""
    mask = ~torch.isnan(targets[:, 0])
    if not mask.any():
        return logits.sum() * 0.0
    return F.kl_div(F.log_softmax(logits[mask].float(), dim=1), targets[mask], reduction="batchmean")
