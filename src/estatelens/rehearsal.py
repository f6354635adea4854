"""A bundle's rehearsal set (`rehearsal.npz`): embeddings of a class-balanced sample of the photos
it was trained on, as its own network computes them. `estatelens adapt` trains on them beside a
new market's photos so that nothing is forgotten, and the tagger measures how unlike them a photo
is (`ood.py`). NumPy only: the tagger reads it without torch."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REHEARSAL_FILE = "rehearsal.npz"


@dataclass
class Rehearsal:
    embeddings: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int, indices into classes
    classes: list[str]
    clean: np.ndarray | None = None  # (N,) bool: the photo as the tagger sees it (not an augmented view)

    def __post_init__(self):
        if self.clean is None:
            self.clean = np.ones(len(self.labels), dtype=bool)


def load_rehearsal(bundle_dir: str | os.PathLike) -> Rehearsal | None:
    path = Path(bundle_dir) / REHEARSAL_FILE
    if not path.is_file():
        return None
    with np.load(path) as z:
        return Rehearsal(z["embeddings"].astype(np.float32), z["labels"].astype(np.int64),
                         [str(c) for c in z["classes"]], z["clean"].astype(bool) if "clean" in z else None)


def save_rehearsal(bundle_dir: str | os.PathLike, r: Rehearsal) -> Path:
    path = Path(bundle_dir) / REHEARSAL_FILE
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, embeddings=r.embeddings.astype(np.float16), labels=r.labels.astype(np.int16),
                        classes=np.array(r.classes), clean=r.clean)
    os.replace(tmp, path)
    return path
