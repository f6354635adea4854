"""How unlike a photo is to what a bundle was trained on: the cosine distance from its embedding to
its k-th nearest neighbour among the bundle's rehearsal embeddings (deep nearest neighbours, Sun et
al. 2022). Needs only NumPy, so the tagger can compute it beside the room type."""
from __future__ import annotations

import numpy as np

K = 10


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_distance(embeddings: np.ndarray, reference: np.ndarray, k: int = K,
                 reference_normalised: bool = False) -> np.ndarray:
    """(N,) cosine distance (0 = a training photo's twin, up to 2) to the k-th nearest reference."""
    ref = reference if reference_normalised else normalise(reference)
    sim = normalise(embeddings) @ ref.T
    k = min(k, ref.shape[0])
    kth = np.partition(-sim, k - 1, axis=1)[:, k - 1]
    return 1.0 + kth  # 1 - similarity of the k-th nearest


class UnusualScorer:
    """A bundle's out-of-distribution check: a photo farther than `threshold` from its k-th nearest
    rehearsal photo is unlike anything the bundle learned from, and the tagger calls it uncertain.
    The threshold is set so that a stated share of in-distribution validation photos pass
    (bundle.json "ood", written by tools/add_rehearsal.py)."""

    def __init__(self, reference: np.ndarray, threshold: float, k: int = K):
        self.reference, self.threshold, self.k = normalise(reference), float(threshold), int(k)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        return knn_distance(embeddings, self.reference, self.k, reference_normalised=True)
