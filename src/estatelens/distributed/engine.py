"""Tagging on a Ray cluster: Ray Data reads the manifest, decodes photos in CPU tasks, runs the
ONNX graph in a pool of actors (one ONNX Runtime session each) and hands each finished block to
the driver, which writes it as one Parquet file (written to a temporary name, then renamed).

Why the driver writes: a block Ray retries (a lost worker) still reaches the driver once, and a
file appears whole or not at all, so the output never holds a row twice and a killed job loses
only the blocks in flight. A rerun reads the (path, fingerprint) pairs already written and tags
only the rest. Decoding and the network pass are the single-machine tagger's own functions
(`inference.load_photo`, `inference.predict_loaded`, `tagging.core.tag_row`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import tempfile
import time
import uuid
from datetime import datetime, timezone
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..bundle import load_bundle
from ..data.images import file_fingerprint
from ..data.preprocess import Preprocessing, decode_side, normalise
from ..inference import Loaded, load_photo, predict_loaded
from ..tagging.core import display_path, iter_input_paths, tag_row
from ..tagging.job import columns as tag_columns

PART_PREFIX = "part-"
BLOCK_ROWS = 256  # photos per block: one Parquet file, one unit of retry
DECODE_CPUS = 0.5  # a decoding task's CPU reservation


@dataclass
class RaySummary:
    """What a Ray tagging run did."""

    out: Path
    n_total: int  # photos named by the inputs
    n_before: int  # already in the output from an earlier run
    n_tagged: int = 0
    failures: Counter = field(default_factory=Counter)  # reason -> photos
    seconds: float = 0.0
    per_worker: Counter = field(default_factory=Counter)  # worker (host:pid) -> photos

    @property
    def photos_per_second(self) -> float:
        return self.n_tagged / self.seconds if self.seconds else 0.0


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def read_manifest(inputs: Iterable[str]) -> list[str]:
    """Photo paths from folders, .txt lists, CSV or Parquet manifests (a `path` column) and URLs
    (fsspec: s3://, gs://, ...; a URL ending in / is listed)."""
    paths: list[str] = []
    for item in inputs:
        item = str(item)
        low = item.lower()
        if low.endswith(".csv") and not is_url(item):
            with open(local(item), newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if "path" not in (reader.fieldnames or []):
                    raise ValueError(f"{item}: a manifest needs a 'path' column (columns: {reader.fieldnames})")
                base = Path(local(item)).parent
                paths += [p if is_url(p) or os.path.isabs(local(p)) else str(base / p)
                          for p in (r["path"].strip() for r in reader) if p]
        elif low.endswith(".parquet") and not Path(local(item)).is_dir():
            import pyarrow.parquet as pq

            table = pq.read_table(local(item) if not is_url(item) else item, columns=["path"])
            paths += [p for p in table.column("path").to_pylist() if p]
        elif is_url(item):
            paths += _list_url(item) if item.endswith("/") else [item]
        else:
            paths += list(iter_input_paths([local(item)]))
    return list(dict.fromkeys(paths))


def _list_url(url: str) -> list[str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    protocol = url.split("://", 1)[0]
    return sorted(f"{protocol}://{p}" for p in fs.find(root))


def fingerprint(path: str, content: bool = False) -> str:
    """size:mtime (or sha256 of the bytes with `content`); "missing" where the file is not there."""
    if not is_url(path) and not content:
        return file_fingerprint(local(path))
    try:
        if is_url(path):
            import fsspec

            fs, p = fsspec.core.url_to_fs(path)
            if content:
                with fs.open(p, "rb") as f:
                    return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
            info = fs.info(p)
            return f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or info.get('ETag', '')}"
        with open(local(path), "rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "missing"
    except OSError as e:
        return f"unreadable: {e.strerror or e}"


def done_in(out: Path) -> dict[str, str]:
    """path -> fingerprint of every row already written under `out`."""
    import pyarrow.parquet as pq

    done: dict[str, str] = {}
    for part in sorted(out.glob(f"{PART_PREFIX}*.parquet")):
        t = pq.read_table(part, columns=["path", "fingerprint"])
        done.update(zip(t.column("path").to_pylist(), t.column("fingerprint").to_pylist()))
    return done


def _decode_batch(batch: dict, pre: dict) -> dict:
    """A Ray Data task: decode each photo into the network's input as uint8 pixels (the actor
    normalises them: a quarter of the bytes through the object store), or the reason it cannot be."""
    prep = Preprocessing.from_dict(pre)
    side = decode_side(prep)
    images, statuses, widths, heights = [], [], [], []
    blank = np.zeros((prep.size, prep.size, 3), np.uint8)
    for path in batch["file"]:
        path = str(path)
        if is_url(path):
            import fsspec

            try:
                with fsspec.open(path, "rb") as f:
                    x, size, status, _ = load_photo(path, prep, side, io.BytesIO(f.read()), pixels=True)
            except FileNotFoundError:
                x, size, status = None, None, "file not found"
            except OSError as e:
                x, size, status = None, None, f"cannot read: {e}"
        else:
            x, size, status, _ = load_photo(local(path), prep, side, pixels=True)
        images.append(blank if x is None else x)
        statuses.append(status)
        widths.append(size[0] if size else -1)
        heights.append(size[1] if size else -1)
    return {"file": batch["file"], "fingerprint": batch["fingerprint"], "image": np.stack(images),
            "status": np.array(statuses), "width": np.array(widths), "height": np.array(heights)}


class _TaggerActor:
    """One ONNX Runtime session per actor. `bundle`: the bundle's folder (a path every node can
    read) or an object-store reference to its files, unpacked into a temporary folder."""

    def __init__(self, bundle, threads: int, min_confidence: float):
        import ray

        if isinstance(bundle, ray.ObjectRef):
            folder = tempfile.mkdtemp(prefix="estatelens-bundle-")
            for name, data in ray.get(bundle).items():
                target = Path(folder) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            bundle = folder
        self.bundle = load_bundle(bundle)
        self.bundle.session(threads)
        self.heads = self.bundle.attributes
        self.cues = self.bundle.also_heads
        self.scorer = self.bundle.unusual
        self.far = self.scorer.threshold if self.scorer is not None else None
        self.min_confidence = min_confidence
        self.worker = f"{os.uname().nodename}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        from threadpoolctl import threadpool_limits

        paths = [str(p) for p in batch["file"]]
        pre = self.bundle.preprocessing
        loaded = [Loaded(normalise(batch["image"][i], pre) if s == "ok" else None,
                         (int(batch["width"][i]), int(batch["height"][i])) if batch["width"][i] >= 0 else None, str(s))
                  for i, s in enumerate(batch["status"])]
        with threadpool_limits(1, user_api="blas"):
            preds = predict_loaded(self.bundle, paths, loaded, self.heads, self.scorer, cues=self.cues)
        rows = [tag_row(p, self.bundle.classes, self.min_confidence, self.far, self.cues).to_dict(self.heads)
                for p in preds]
        out = {c: [r.get(c) for r in rows] for c in rows[0]} if rows else {}
        out["fingerprint"] = [str(f) for f in batch["fingerprint"]]
        out["worker"] = [self.worker] * len(rows)
        return out


def bundle_files(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def tag_dataset(inputs: Sequence[str], out: str | os.PathLike, *, model: str = "rooms", address: str | None = None,
                actors: int | None = None, threads: int = 1, batch_size: int = 16, max_in_flight: int = 2,
                content_hash: bool = False, min_confidence: float = 0.0, num_cpus: int | None = None,
                object_store_mb: int | None = None, rows_per_file: int = BLOCK_ROWS,
                progress: bool = True) -> RaySummary:
    """Tag the photos named by `inputs` on Ray (a local instance, or the cluster at `address`)
    into Parquet files under `out`; photos already there with the same fingerprint are skipped."""
    import ray
    import ray.data
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".tmp-*"):
        stale.unlink()  # a file a killed run was writing: its rows are tagged again
    paths = read_manifest(inputs)
    with ThreadPoolExecutor(8) as pool:
        prints = list(pool.map(lambda p: fingerprint(p, content_hash), paths))
    done = done_in(out)
    todo = [(p, f) for p, f in zip(paths, prints) if done.get(display_path(p)) != f]
    summary = RaySummary(out, len(paths), len(paths) - len(todo))
    if not todo:
        return summary
    bundle = load_bundle(model)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar counts photos
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus if address is None else None,
                 object_store_memory=object_store_mb * 2**20 if object_store_mb and address is None else None,
                 include_dashboard=None, log_to_driver=False, configure_logging=False)
    cpus = ray.cluster_resources().get("CPU", 1)
    if actors is None:
        actors = max(1, int(cpus // (threads + 1)))
    # Actors that reserve every CPU would leave none for decoding and the job would wait forever:
    # then each actor reserves less than its threads (the cores are shared, not idle).
    actor_cpus = min(float(threads), (cpus - DECODE_CPUS) / actors)
    if actor_cpus <= 0:
        raise ValueError(f"{actors} actors on {cpus:g} CPUs leave none for decoding: use fewer --actors")
    # A local instance reads the bundle where it is; a cluster's nodes get it once, through the
    # object store.
    source = str(bundle.path) if address is None else ray.put(bundle_files(bundle.path))
    items = [{"file": p, "fingerprint": f} for p, f in todo]
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // rows_per_file)))
    # Half a CPU per decoding task: two decode beside each single-threaded actor, and resources
    # unlike the actors' keep Ray from fusing decoding into them (ray-project/ray#54433).
    ds = ds.map_batches(_decode_batch, fn_kwargs={"pre": bundle.preprocessing.to_dict()}, batch_size=batch_size,
                        batch_format="numpy", num_cpus=DECODE_CPUS)
    ds = ds.map_batches(_TaggerActor, fn_constructor_kwargs={"bundle": source, "threads": threads,
                                                             "min_confidence": min_confidence},
                        batch_size=batch_size, batch_format="numpy", num_cpus=actor_cpus,
                        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=max_in_flight))
    order = tag_columns(False, bundle.attributes) + ["fingerprint", "worker"]  # and tagged_at (_write_part)
    t0 = time.time()
    with tqdm(total=len(todo), desc="tagging on ray", unit="photo", disable=not progress) as bar:
        for block in ds.iter_batches(batch_size=rows_per_file, batch_format="pyarrow", prefetch_batches=1):
            _write_part(out, block, order)
            statuses = block.column("status").to_pylist()
            summary.n_tagged += len(statuses)
            summary.failures.update(s for s in statuses if s != "ok")
            summary.per_worker.update(block.column("worker").to_pylist())
            bar.update(len(statuses))
            bar.set_postfix(photos_s=f"{bar.n / max(1e-9, time.time() - t0):.0f}")
    summary.seconds = time.time() - t0
    return summary


def _write_part(out: Path, block, order: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = [c for c in order if c in block.column_names]
    now = pa.array([datetime.now(timezone.utc)] * block.num_rows, pa.timestamp("us", tz="UTC"))
    table = block.select(cols).append_column("tagged_at", now)
    tmp = out / f".tmp-{uuid.uuid4().hex}.parquet"
    pq.write_table(table, tmp)
    os.replace(tmp, out / f"{PART_PREFIX}{uuid.uuid4().hex}.parquet")


def read_output(out: str | os.PathLike, latest: bool = True):
    """The rows written under `out`, as one pyarrow Table: with `latest`, one per photo (a photo
    changed between runs was tagged again; its newest row counts), else every row of every run."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = sorted(Path(out).glob(f"{PART_PREFIX}*.parquet"))
    if not parts:
        return None
    table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
    if not latest:
        return table
    table = table.sort_by([("path", "ascending"), ("tagged_at", "descending")])
    paths = table.column("path")
    first = pc.not_equal(paths.slice(1), paths.slice(0, len(paths) - 1))  # row i+1 starts a new path
    keep = pa.concat_arrays([pa.array([True]), first.combine_chunks()]) if len(paths) else pa.array([], pa.bool_())
    return table.filter(keep)
