"""The embedding half of the duplicate rule (checks/duplicates.py): each photo's pooled embedding
from the tagger's network, which confirms pairs whose hashes are near but not near enough. Apart
from duplicates.py so that the hashes alone (which the data layer uses to find copies across
splits) do not pull in the network."""
from __future__ import annotations

from typing import Sequence

from .duplicates import Photo


def embed(photos: Sequence[Photo], model: str = "rooms", batch_size: int = 16, progress: bool = False) -> None:
    """Fill each usable photo's embedding from the tagger's network (one pass per photo)."""
    from tqdm import tqdm

    from ..bundle import load_bundle
    from ..inference import predict_stream

    bundle = load_bundle(model)
    todo = [p for p in photos if p.status == "ok"]
    stream = predict_stream(bundle, [p.path for p in todo], batch_size=batch_size, embeddings=True)
    for p, pred in zip(todo, tqdm(stream, total=len(todo), desc="embedding", unit="photo", disable=not progress)):
        if pred.embedding is None:
            p.status = pred.status
        else:
            p.embedding = pred.embedding
