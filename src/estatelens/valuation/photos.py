"""Photo features for valuation: the tagger's one network pass per photo (embedding, room-type and
attribute probabilities), cached on disk so that a refit never decodes a photo twice, and pooled
per listing so that the result depends neither on how many photos a listing has nor on their order.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from ..attributes import graph_fingerprint
from ..bundle import ModelBundle, estatelens_home
from ..data.images import file_fingerprint
from ..inference import predict_stream
from ..tagging.core import path_key

ID_COLUMNS = ("listing_id", "house_id", "id")  # read in this order where --id is not given


@dataclass
class PhotoRef:
    """One row of a photos CSV: the file, its listing, and the room a person said it shows (or None)."""

    path: str
    listing_id: str
    room: str | None = None


def id_column(header: Sequence[str], wanted: str | None, what: Path) -> str:
    """The listing-id column: `wanted`, else the first of ID_COLUMNS the header has."""
    if wanted:
        if wanted not in header:
            raise ValueError(f"{what}: no column '{wanted}' (columns: {', '.join(header)})")
        return wanted
    for name in ID_COLUMNS:
        if name in header:
            return name
    raise ValueError(f"{what}: no listing id column ({' or '.join(ID_COLUMNS)}); name it with --id")


def read_photos_csv(path: str | os.PathLike, id_col: str | None = None) -> list[PhotoRef]:
    """(listing id, photo path[, room]) rows; a relative path is read from the CSV's folder."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "path" not in header:
            raise ValueError(f"{path}: no 'path' column (columns: {', '.join(header)})")
        col = id_column(header, id_col, path)
        rows = []
        for r in reader:
            p = (r.get("path") or "").strip()
            lid = (r.get(col) or "").strip()
            if not p or not lid:
                continue
            room = (r.get("room") or "").strip() or None
            rows.append(PhotoRef(p if os.path.isabs(p) else str(path.parent / p), lid, room))
    return rows


class PhotoFeatureCache:
    """Per photo: embedding (D,), room probabilities (C,) and attribute probabilities, or the reason
    it could not be read. One .npz per model under ESTATELENS_HOME/value-photos, keyed by absolute
    path plus size and modification time (an edited photo is read again)."""

    def __init__(self, bundle: ModelBundle, folder: str | os.PathLike | None = None):
        self.bundle = bundle
        self.attribute_names = [h.name for h in bundle.attributes]
        folder = Path(folder) if folder else estatelens_home() / "value-photos"
        self.network = graph_fingerprint(bundle.onnx_path)  # the network whose features it holds
        self.file = folder / f"{self.network}.npz"
        self.entries: dict[str, tuple] = {}  # key -> (fingerprint, status, emb, probs, attrs)
        if self.file.is_file():
            self._load()

    def _load(self) -> None:
        with np.load(self.file, allow_pickle=False) as z:
            if list(z["attribute_names"]) != self.attribute_names:
                return  # heads changed: the attribute columns would not line up; read the photos again
            # Each z[name] decompresses the whole array again: read each once, not once per photo
            # (per photo, every row kept its own full copy alive: memory grew as photos squared).
            arrays = {name: z[name] for name in ("keys", "fingerprints", "statuses", "embeddings", "probs",
                                                 "attributes")}
        for i, key in enumerate(arrays["keys"]):
            self.entries[str(key)] = (str(arrays["fingerprints"][i]), str(arrays["statuses"][i]),
                                      arrays["embeddings"][i], arrays["probs"][i], arrays["attributes"][i])

    def save(self) -> None:
        good = list(self.entries.items())
        if not good:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array([k for k, _ in good]), fingerprints=np.array([e[0] for _, e in good]),
                 statuses=np.array([e[1] for _, e in good]),
                 embeddings=np.stack([e[2] for _, e in good]).astype(np.float32),
                 probs=np.stack([e[3] for _, e in good]).astype(np.float32),
                 attributes=np.stack([e[4] for _, e in good]).astype(np.float32).reshape(len(good), -1),
                 attribute_names=np.array(self.attribute_names, dtype=str))
        os.replace(tmp, self.file)

    def features(self, paths: Iterable[str], progress: bool = True, save_every: int = 2000) -> dict[str, tuple]:
        """path -> (status, embedding, probs, attributes) for every path; photos not in the cache
        go through the network once (and are saved as they come, so an interrupted run resumes)."""
        paths = list(dict.fromkeys(paths))
        keys = {p: path_key(p) for p in paths}
        todo = [p for p in paths if self.entries.get(keys[p], ("",))[0] != file_fingerprint(p)]
        if todo:
            dim = None
            n_new = 0
            stream = predict_stream(self.bundle, todo, attributes=True, embeddings=True)
            for pred in tqdm(stream, total=len(todo), desc="photo features", unit="photo", disable=not progress):
                if pred.embedding is not None:
                    dim = pred.embedding.shape[0]
                    attrs = np.array([pred.attributes[n] for n in self.attribute_names], dtype=np.float32)
                    entry = (pred.status, pred.embedding, pred.probs, attrs)
                else:
                    entry = (pred.status, None, None, None)
                self.entries[keys[pred.path]] = (file_fingerprint(pred.path),) + entry
                n_new += 1
                if n_new % save_every == 0:
                    self._save_readable(dim)
            self._save_readable(dim)
        return {p: self.entries[keys[p]][1:] for p in paths}

    def _save_readable(self, dim: int | None) -> None:
        """Saves, writing a failed photo's arrays as NaN of the right length (npz wants one shape)."""
        if dim is None:
            dim = next((e[2].shape[0] for e in self.entries.values() if e[2] is not None), None)
        if dim is None:
            return
        c, a = len(self.bundle.classes), len(self.attribute_names)
        for k, e in list(self.entries.items()):
            if e[2] is None:
                self.entries[k] = (e[0], e[1], np.full(dim, np.nan, np.float32), np.full(c, np.nan, np.float32),
                                   np.full(a, np.nan, np.float32))
        self.save()


@dataclass
class ListingPhotos:
    """Pooled photo features of listings: `matrix` (N, F) with NaN rows for a listing without a
    readable photo, and the names of its columns."""

    ids: list[str]
    matrix: np.ndarray
    columns: list[str]
    n_photos: np.ndarray  # readable photos per listing
    problems: list[str]
    network: str = ""  # graph_fingerprint of the network the features came from

    def take(self, rows: Sequence[int]) -> "ListingPhotos":
        """The listings at positions `rows`, in that order."""
        rows = list(rows)
        return ListingPhotos([self.ids[i] for i in rows], self.matrix[rows], self.columns, self.n_photos[rows],
                             self.problems, self.network)

    def for_ids(self, ids: Sequence[str]) -> "ListingPhotos":
        """The listings `ids`, in that order."""
        where = {lid: i for i, lid in enumerate(self.ids)}
        return self.take([where[i] for i in ids])


def rooms_to_pool(refs: Sequence[PhotoRef], classes: Sequence[str], min_share: float = 0.5,
                  ids: Sequence[str] | None = None) -> list[str]:
    """The room types that get their own pooled embedding: those a person named (room column) in at
    least `min_share` of the listings, in the bundle's class order."""
    listings = set(ids) if ids is not None else {r.listing_id for r in refs}
    have: dict[str, set] = {}
    for r in refs:
        if r.room and r.listing_id in listings:
            have.setdefault(r.room, set()).add(r.listing_id)
    return [c for c in classes if len(have.get(c, ())) >= min_share * max(1, len(listings))]


def pool_listings(ids: Sequence[str], refs: Sequence[PhotoRef], feats: dict[str, tuple], classes: Sequence[str],
                  attribute_names: Sequence[str], rooms: Sequence[str]) -> ListingPhotos:
    """Per listing: the mean embedding of all its photos, the mean embedding of its photos of each
    room in `rooms` (the room column where given, else the network's room type; the listing's mean
    where it has none), the mean room-type probabilities and each attribute's maximum. Means and
    maxima do not change with the number or order of photos."""
    by_listing: dict[str, list[PhotoRef]] = {}
    for r in refs:
        by_listing.setdefault(r.listing_id, []).append(r)
    dim = next((f[1].shape[0] for f in feats.values() if f[1] is not None and np.isfinite(f[1]).all()), 0)
    columns = ([f"embedding_{j}" for j in range(dim)]
               + [f"{room}_embedding_{j}" for room in rooms for j in range(dim)]
               + [f"share_{c}" for c in classes] + [f"{a}_max" for a in attribute_names])
    matrix = np.full((len(ids), len(columns)), np.nan, dtype=np.float32)
    n_photos = np.zeros(len(ids), dtype=int)
    problems = []
    for i, lid in enumerate(ids):
        good = []
        for r in by_listing.get(lid, []):
            status, emb, probs, attrs = feats[r.path]
            if status != "ok" or emb is None or not np.isfinite(emb).all():
                problems.append(f"{r.path}: {status}; listing {lid} is valued without this photo")
                continue
            room = r.room if r.room in classes else classes[int(np.argmax(probs))]
            good.append((room, emb, probs, attrs))
        n_photos[i] = len(good)
        if not good:
            continue
        embs = np.stack([g[1] for g in good])
        mean = embs.mean(0)
        parts = [mean]
        for room in rooms:
            sel = [g[1] for g in good if g[0] == room]
            parts.append(np.mean(sel, axis=0) if sel else mean)
        parts.append(np.stack([g[2] for g in good]).mean(0))
        parts.append(np.stack([g[3] for g in good]).max(0) if attribute_names else np.zeros(0))
        matrix[i] = np.concatenate(parts)
    return ListingPhotos(list(ids), matrix, columns, n_photos, problems)
