"""Batched inference with a model bundle: photos are decoded in loader workers while ONNX Runtime
runs the previous batch."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
from tqdm import tqdm

from .bundle import ModelBundle
from .data.dataset import Sample
from .data.loader import LabelledPhotos, make_loader
from .data.transforms import decode_side


def predict_samples(bundle: ModelBundle, samples: Sequence[Sample], batch_size: int = 32,
                    workers: int = 2, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), ok (N,) bool) in the order of `samples`; rows that failed to decode
    are NaN with ok False."""
    class_to_idx = {c: i for i, c in enumerate(bundle.classes)}
    ds = LabelledPhotos(samples, class_to_idx, bundle.transform(), decode_side(bundle.preprocessing))
    probs = np.full((len(samples), len(bundle.classes)), np.nan, dtype=np.float32)
    ok = np.zeros(len(samples), dtype=bool)
    t0 = time.time()
    with tqdm(total=len(samples), desc="predicting", unit="photo", disable=not progress) as bar:
        for batch in make_loader(ds, batch_size, shuffle=False, workers=workers):
            if batch is None:
                continue
            x, _, idx = batch
            idx = idx.numpy()
            probs[idx] = bundle.predict_batch(x)
            ok[idx] = True
            bar.update(len(idx))
            bar.set_postfix(photos_s=f"{bar.n / max(1e-9, time.time() - t0):.0f}")
    return probs, ok
