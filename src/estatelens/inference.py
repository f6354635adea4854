"""Batched inference with a model bundle, streaming and without torch: photos are decoded in
threads (Pillow releases the GIL) while ONNX Runtime runs the previous batch. The tagger and
evaluation both go through `predict_stream`."""
from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .attributes import EMBEDDING_OUTPUT
from .bundle import ModelBundle
from .data.dataset import Sample
from .data.images import MIN_SIDE, PhotoError, is_image_name, read_photo, too_small
from .data.preprocess import Preprocessing, decode_side, eval_array, eval_pixels


@dataclass
class Prediction:
    """The network's probabilities for one file, or why there are none (`status` is not "ok")."""

    path: str
    status: str
    probs: np.ndarray | None = None
    size: tuple[int, int] | None = None  # (width, height) as a viewer shows the photo
    attributes: dict[str, float] | None = None  # attribute name -> probability, from the same pass
    unusual: float | None = None  # distance from what the bundle learned from (ood.py), where it can tell
    embedding: np.ndarray | None = None  # the network's penultimate features (D,), when asked for
    cues: dict[str, float] | None = None  # open-plan cue probabilities per room type (also.py)
    checks: object = None  # what predict_stream's `inspect` found in the decoded photo (listing checks)


Inspect = Callable[[Image.Image, tuple[int, int]], object]


class Loaded(NamedTuple):
    """One decoded photo, ready for the network: `x` is its input (None where it cannot be used,
    and `status` says why), `size` its full (width, height), `checks` what `inspect` found."""

    x: np.ndarray | None
    size: tuple[int, int] | None
    status: str
    checks: object = None


def load_photo(path: str, pre: Preprocessing, side: int, data: BinaryIO | None = None,
               pixels: bool = False, inspect: Inspect | None = None) -> Loaded:
    """Decode `path` to the network's input, or the reason the file cannot be used.
    `data`: the file's bytes already opened (a remote photo read through fsspec); `path` names it.
    `pixels`: the input as uint8 pixels, still to `normalise` (a quarter of the bytes to send).
    `inspect`: a function of the decoded photo and its full size (the listing checks), run on
    usable photos; its result is `checks`."""
    if not is_image_name(path):
        return Loaded(None, None, "file not found" if data is None and not os.path.exists(path)
                      else f"not an image file (extension '{Path(path).suffix}')")
    try:
        im, size = read_photo(path if data is None else data, side)
    except PhotoError as e:
        return Loaded(None, None, e.reason)
    if min(size) < MIN_SIDE:
        return Loaded(None, size, too_small(*size, MIN_SIDE))
    x = eval_pixels(im, pre) if pixels else eval_array(im, pre)
    return Loaded(x, size, "ok", inspect(im, size) if inspect is not None else None)


def _load_batch(paths: list[str], pre: Preprocessing, side: int, inspect: Inspect | None = None):
    return paths, [load_photo(p, pre, side, inspect=inspect) for p in paths]


def predict_stream(bundle: ModelBundle, paths: Iterable[str], *, batch_size: int = 16,
                   workers: int = 2, attributes: bool = False, embeddings: bool = False,
                   inspect: Inspect | None = None) -> Iterator[Prediction]:
    """A Prediction per path, in order, holding at most workers + 1 batches in memory; with
    `attributes`, each with the bundle's attribute probabilities and its "unusual" score (where the
    bundle has an out-of-distribution check) from the same network pass; with `embeddings`, each
    with the network's embedding too (valuation pools them per listing); with `inspect` (a function
    of the decoded photo and its full size, run in the decoding threads), each with its result as
    `checks` (decoded at a short side of at least `inspect.min_side`, where it has one).
    Batches of 16 ran faster than 32 or 64 on 2 cores (activations stay in cache)."""
    pre, side = bundle.preprocessing, decode_side(bundle.preprocessing)
    # The checks read the photo at their own working size: a small-input model's decode is not enough.
    side = max(side, getattr(inspect, "min_side", 0))
    heads = bundle.attributes if attributes else []
    scorer = bundle.unusual if attributes else None
    cues = bundle.also_heads if attributes else []
    it = iter(paths)
    # The heads and the unusual score are small NumPy products per batch; OpenBLAS threads would
    # spin after each and take the cores from ONNX Runtime and the decoding threads (tagging on 2
    # cores: 80 -> 108 photos/s with one BLAS thread).
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool, \
            threadpool_limits(1, user_api="blas"):
        pending: deque = deque()

        def submit() -> bool:
            chunk = list(islice(it, batch_size))
            if chunk:
                pending.append(pool.submit(_load_batch, chunk, pre, side, inspect))
            return bool(chunk)

        more = True
        while more and len(pending) < max(1, workers) + 1:
            more = submit()
        while pending:
            chunk, loaded = pending.popleft().result()
            if more:
                more = submit()
            yield from predict_loaded(bundle, chunk, loaded, heads, scorer, embeddings, cues)


def predict_loaded(bundle: ModelBundle, paths: Sequence[str], loaded: Sequence[Loaded], heads=(), scorer=None,
                   embeddings: bool = False, cues=()) -> list[Prediction]:
    """Predictions for a decoded batch: `loaded` holds `load_photo`'s result per path; `heads` are
    attribute heads and `cues` open-plan cue heads on the embedding.
    The one network pass of every front end (the streaming tagger here, the Ray engine's actors in
    distributed/)."""
    good = [i for i, got in enumerate(loaded) if got.x is not None]
    p_of: dict = {}
    a_of: dict = {}
    u_of: dict = {}
    e_of: dict = {}
    c_of: dict = {}
    if good:
        # Each head reads its own output: the embedding, or an attribute tail's (attributes.py).
        want = [h.embedding for h in (*heads, *cues)] + (
            [EMBEDDING_OUTPUT] if scorer is not None or embeddings else [])
        probs, out = bundle.run_outputs(np.stack([loaded[i].x for i in good]), list(dict.fromkeys(want)))
        emb = out.get(EMBEDDING_OUTPUT)
        if embeddings and emb is None:
            raise ValueError(f"{bundle.onnx_path}: has no embedding output")
        attrs = {h.name: h.probability(out[h.embedding]) for h in heads}
        cue_p = {h.name: h.probability(out[h.embedding]) for h in cues}
        far = scorer.score(emb) if scorer is not None else None
        for j, i in enumerate(good):
            p_of[i] = probs[j]
            a_of[i] = {name: float(p[j]) for name, p in attrs.items()} if heads else None
            u_of[i] = float(far[j]) if far is not None else None
            e_of[i] = emb[j] if embeddings else None
            c_of[i] = {name: float(p[j]) for name, p in cue_p.items()} if cues else None
    return [Prediction(path, got.status, p_of.get(i), got.size, a_of.get(i), u_of.get(i), e_of.get(i), c_of.get(i),
                       got.checks)
            for i, (path, got) in enumerate(zip(paths, loaded))]


def predict_samples(bundle: ModelBundle, samples: Sequence[Sample], batch_size: int = 16,
                    workers: int = 2, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), ok (N,) bool) in the order of `samples`; rows that failed to decode
    are NaN with ok False."""
    probs = np.full((len(samples), len(bundle.classes)), np.nan, dtype=np.float32)
    ok = np.zeros(len(samples), dtype=bool)
    t0 = time.time()
    with tqdm(total=len(samples), desc="predicting", unit="photo", disable=not progress) as bar:
        stream = predict_stream(bundle, (s.path for s in samples), batch_size=batch_size, workers=workers)
        for i, pred in enumerate(stream):
            if pred.probs is not None:
                probs[i], ok[i] = pred.probs, True
            bar.update(1)
            if i % batch_size == 0:
                bar.set_postfix(photos_s=f"{bar.n / max(1e-9, time.time() - t0):.0f}")
    return probs, ok


def network_throughput(onnx_path: str | os.PathLike, size: int, *, batch_size: int = 32, threads: int = 2,
                       seconds: float = 3.0) -> float:
    """Photos per second through the ONNX graph alone (no decoding), batches of `batch_size` on
    `threads` threads: one warm-up batch, then batches until `seconds` have passed (at least 2).
    The input is noise; a convolutional network costs the same whatever the pixels."""
    from .bundle import onnx_session

    sess = onnx_session(onnx_path, threads)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch_size, 3, size, size), dtype=np.float32)
    first = [sess.get_outputs()[0].name]
    sess.run(first, {name: x})
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        sess.run(first, {name: x})
        n += 1
    return n * batch_size / (time.perf_counter() - t0)
