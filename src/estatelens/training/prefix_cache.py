"""Frozen-prefix caching: run the frozen part of a network once per photo and view, keep the output.

Feature extraction caches the pooled embedding; fast fine-tuning caches the output of the frozen
early blocks. Each photo gets a clean (eval preset) view and `views` augmented ones, so the
trainable part still sees augmentation. The frozen part runs through ONNX Runtime, several times
faster than eager PyTorch on a CPU. Outputs are stored as float16 .npy files under a key that
names the model, weights, split point, preprocessing and photos, so reruns and other heads reuse
them.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..bundle import estatelens_home, export_onnx, onnx_session
from ..data.dataset import Sample
from ..data.loader import LabelledPhotos, make_loader
from ..data.transforms import Preprocessing, decode_side, eval_preset, train_preset


def default_cache_dir() -> Path:
    return estatelens_home() / "prefix-cache"


def cache_key(**parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def module_fingerprint(params: Iterable[torch.Tensor]) -> str:
    """Identifies a frozen part by its weights: a run started from another bundle (train --init)
    whose early blocks were trained differs from ImageNet's there, and must not read its outputs."""
    h = hashlib.sha1()
    for p in params:
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def photos_fingerprint(samples: Sequence[Sample]) -> str:
    """The photos by real path, size and time: `../shared/data/x.jpg` and `/work/shared/data/x.jpg`
    are the same photo (a build script and a hand-typed command name them differently)."""
    h = hashlib.sha1()
    for s in samples:
        st = os.stat(s.path)
        h.update(f"{os.path.realpath(s.path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class PrefixRunner:
    """Runs a frozen module through ONNX Runtime (exported once)."""

    def __init__(self, prefix: nn.Module, size: int, threads: int):
        self._dir = tempfile.TemporaryDirectory(prefix="estatelens-prefix-")
        path = export_onnx(prefix, size, Path(self._dir.name) / "prefix.onnx", softmax=False)
        self.session = onnx_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {self.input_name: x.numpy()})[0]


def cached_views(prefix: nn.Module, samples: Sequence[Sample], class_to_idx: dict[str, int],
                 pre: Preprocessing, n_views: int, key: str, cache_dir: Path, seed: int,
                 threads: int, workers: int, batch_size: int = 64) -> tuple[list[np.ndarray], np.ndarray]:
    """([clean view, augmented view 1..n] as float16 arrays (N, ...), memory-mapped;
    ok (N,) bool: False for photos that failed to decode in any view, whose rows are empty)."""
    cache_dir = Path(cache_dir) / key
    cache_dir.mkdir(parents=True, exist_ok=True)
    files = [cache_dir / f"view{v}.npy" for v in range(n_views + 1)]
    missing = [v for v, f in enumerate(files) if not (f.exists() and _ok_file(f).exists())]
    if missing:
        runner = PrefixRunner(prefix.eval(), pre.size, threads)
        for v in missing:
            transform = eval_preset(pre) if v == 0 else train_preset(pre)
            # A private RNG stream, so the training run's randomness does not depend on cache hits.
            with torch.random.fork_rng():
                _compute_view(runner, samples, class_to_idx, transform, decode_side(pre), files[v],
                              seed * 1000 + v, workers, batch_size, f"view {v}/{n_views}" if v else "clean view")
    ok = np.ones(len(samples), dtype=bool)
    for f in files:
        ok &= np.load(_ok_file(f))
    return [np.load(f, mmap_mode="r") for f in files], ok


def _ok_file(view_file: Path) -> Path:
    return view_file.with_name(view_file.stem + ".ok.npy")


def _compute_view(runner: PrefixRunner, samples, class_to_idx, transform, side: int, out: Path,
                  seed: int, workers: int, batch_size: int, desc: str) -> None:
    torch.manual_seed(seed)
    ds = LabelledPhotos(samples, class_to_idx, transform, side)
    loader = make_loader(ds, batch_size, shuffle=False, workers=workers, seed=seed)
    arr = None
    ok = np.zeros(len(ds), dtype=bool)
    tmp = out.with_suffix(".tmp.npy")
    t0 = time.time()
    with tqdm(total=len(ds), desc=f"caching {desc}", unit="photo") as bar:
        for batch in loader:
            if batch is None:
                continue
            x, _, idx = batch
            y = runner(x)
            if arr is None:
                arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(ds), *y.shape[1:]))
            arr[idx.numpy()] = y.astype(np.float16)
            ok[idx.numpy()] = True
            bar.update(len(idx))
            bar.set_postfix(img_s=f"{bar.n / max(1e-9, time.time() - t0):.0f}")
    if arr is None:
        raise ValueError("no photo could be decoded for the feature cache")
    arr.flush()
    del arr
    np.save(_ok_file(out), ok)
    tmp.replace(out)
