"""Labelled photo collections: read, validate, split, check for leakage.

Two layouts are read:
- a folder of class subfolders, optionally under split folders (train/val/test);
- a CSV with columns `path,label[,split][,group]`, paths relative to the CSV's folder (`room`,
  `class` or `category` are read as the label; `listing_id` or `house_id` as the group).

Several sources can be combined into one collection (`combine_collections`), each split its own way.

Every file is decoded once before training; unusable files are listed with the reason and left
out. Where no split is given, photos are split deterministically (seeded, stratified by class,
80/10/10); with a group column, a group (a house, a listing) never straddles two splits.

Leakage: a photo in two splits, as a byte-identical file or as a near copy (resized, recompressed,
re-cropped, mirrored: the perceptual-hash rule of checks/duplicates.py without embeddings, where
imagehash is installed). Exports of augmented data sets put such copies in train and test alike;
a test photo with a copy among the training photos is a test of memory, so `train` also reports
test accuracy without them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .images import MIN_SIDE, check_photo, is_image_name

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
LABEL_COLUMNS = ("label", "room", "class", "category")
GROUP_COLUMNS = ("group", "listing_id", "house_id")


@dataclass(frozen=True)
class Sample:
    path: str
    label: str
    split: str | None = None
    group: str | None = None


@dataclass
class PhotoCollection:
    """Usable samples with their split, plus everything that was left out and why."""

    source: str
    classes: list[str]
    samples: list[Sample]
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    leakage: list[dict] = field(default_factory=list)  # {"kind", "paths", "splits"[, "sha1"]}
    hashes: dict[str, str] = field(default_factory=dict, repr=False)  # path -> sha1 of the bytes
    phashes: dict[str, tuple] = field(default_factory=dict, repr=False)  # path -> checks.duplicates.photo_hashes

    def copies_of_other_splits(self, split: str) -> set[str]:
        """Paths of `split` that have a copy (identical or near) in another split."""
        return {p for leak in self.leakage if len(leak["splits"]) > 1
                for p, sp in zip(leak["paths"], leak["path_splits"]) if sp == split}

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def summary(self) -> dict:
        counts = {sp: dict(Counter(s.label for s in self.split(sp))) for sp in SPLITS}
        return {
            "source": self.source,
            "classes": self.classes,
            "n_photos": len(self.samples),
            "per_split": {sp: sum(c.values()) for sp, c in counts.items()},
            "per_split_class": counts,
            "n_skipped": len(self.skipped),
            "skipped": self.skipped,
            "n_leaked_duplicates": len(self.leakage),
            "n_leaked_near_copies": sum(leak["kind"] == "near copy" for leak in self.leakage),
            "leakage": self.leakage,
        }


def load_collection(source: str | os.PathLike, *, validate: bool = True, min_side: int = MIN_SIDE,
                    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0,
                    workers: int = 4, progress: bool = True, assign: bool = True) -> PhotoCollection:
    """Read a folder or CSV dataset, validate every photo, split it and look for leakage.

    assign=False keeps the splits as read (None where the layout gives none), for evaluation."""
    source = Path(source)
    if source.is_dir():
        samples, skipped = read_folder(source)
    elif source.is_file() and source.suffix.lower() == ".csv":
        samples, skipped = read_csv(source)
    else:
        raise FileNotFoundError(f"{source}: not a folder of class subfolders or a .csv file")
    if not samples:
        raise ValueError(f"{source}: no labelled photos found (expected class subfolders, optionally "
                         f"under train/val/test, or a CSV with path,label columns)")
    hashes: dict[str, str] = {}
    phashes: dict[str, tuple] = {}
    if validate:
        samples, bad, hashes, phashes = _validate(samples, min_side, workers, progress)
        skipped += bad
    classes = sorted({s.label for s in samples})
    if assign:
        samples = assign_splits(samples, fractions, seed, root=source if source.is_dir() else source.parent)
    return PhotoCollection(str(source), classes, samples, skipped, find_leakage(samples, hashes, phashes), hashes, phashes)


def read_folder(root: Path) -> tuple[list[Sample], list[dict]]:
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    split_dirs = [d for d in subdirs if d.name.lower() in _SPLIT_ALIASES]
    samples: list[Sample] = []
    skipped: list[dict] = []
    if split_dirs:
        for d in split_dirs:
            _read_class_dirs(d, _SPLIT_ALIASES[d.name.lower()], samples, skipped)
    else:
        _read_class_dirs(root, None, samples, skipped)
    return samples, skipped


def _read_class_dirs(root: Path, split: str | None, samples: list[Sample], skipped: list[dict]) -> None:
    for class_dir in sorted(root.iterdir()):
        if not class_dir.is_dir() or class_dir.name.startswith("."):
            continue
        for path in sorted(class_dir.rglob("*")):
            if path.is_dir() or path.name.startswith("."):
                continue
            if is_image_name(path):
                samples.append(Sample(str(path), class_dir.name, split))
            else:
                skipped.append({"path": str(path), "reason": f"not an image file (extension '{path.suffix}')"})


def read_csv(csv_path: Path) -> tuple[list[Sample], list[dict]]:
    base = csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        label_col = next((cols[c] for c in LABEL_COLUMNS if c in cols), None)
        group_col = next((cols[c] for c in GROUP_COLUMNS if c in cols), "")
        if "path" not in cols or label_col is None:
            raise ValueError(f"{csv_path}: needs columns path,label[,split][,group]; found {reader.fieldnames}")
        samples, skipped = [], []
        for i, row in enumerate(reader, start=2):
            path, label = (row[cols["path"]] or "").strip(), (row[label_col] or "").strip()
            if not path or not label:
                skipped.append({"path": path or f"{csv_path}:{i}", "reason": f"row {i}: empty path or label"})
                continue
            split = (row.get(cols.get("split", ""), "") or "").strip().lower() or None
            if split is not None and split not in _SPLIT_ALIASES:
                raise ValueError(f"{csv_path} row {i}: split {split!r} is not one of train/val/test")
            group = (row.get(group_col, "") or "").strip() or None
            full = Path(path) if Path(path).is_absolute() else base / path
            samples.append(Sample(str(full), label, _SPLIT_ALIASES.get(split) if split else None, group))
    return samples, skipped


def _inspect(sample: Sample, min_side: int, near: bool) -> tuple[Sample, str, str, tuple | None]:
    """(sample, failure reason or '', sha1 of the bytes, perceptual hashes where `near`): one read
    of the file serves all."""
    try:
        data = Path(sample.path).read_bytes()
    except OSError as e:
        return sample, f"unreadable file ({e.strerror or e})", "", None
    check = check_photo(io.BytesIO(data) if data else sample.path, min_side)
    phash = None
    if near and not check.reason:
        from ..checks.duplicates import HASH_SIDE, image_hashes
        from .images import PhotoError, read_photo

        try:
            phash = image_hashes(read_photo(io.BytesIO(data), HASH_SIDE)[0])
        except (PhotoError, ValueError):  # decoded once already; without hashes it is only not compared
            phash = None
    return sample, check.reason, hashlib.sha1(data).hexdigest(), phash


def _validate(samples: list[Sample], min_side: int, workers: int, progress: bool):
    import importlib.util

    near = importlib.util.find_spec("imagehash") is not None  # near copies: estatelens[checks] or [train]
    good, bad, hashes, phashes = [], [], {}, {}
    # Pillow releases the GIL while decoding, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda s: _inspect(s, min_side, near), samples)
        for sample, reason, sha1, phash in tqdm(results, total=len(samples), desc="checking photos",
                                                unit="photo", disable=not progress):
            if reason:
                bad.append({"path": sample.path, "reason": reason})
            else:
                good.append(sample)
                hashes[sample.path] = sha1
                if phash is not None:
                    phashes[sample.path] = phash
    return good, bad, hashes, phashes


def assign_splits(samples: list[Sample], fractions=DEFAULT_FRACTIONS, seed: int = 0,
                  root: str | os.PathLike | None = None) -> list[Sample]:
    """Give every sample a split.

    - all samples already split, with a val split: kept as they are;
    - split but no val (e.g. only train/ and test/): val is carved out of train;
    - none split: stratified by class (or by group, when groups are given) into train/val/test.
    Mixed (some rows with a split, some without) is an error, since no choice would be safe.
    Photos are named relative to `root` when given, so a moved dataset keeps its split.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    given = [s.split is not None for s in samples]
    if any(given) and not all(given):
        raise ValueError("some photos have a split and some do not; give a split for all or for none")
    if all(given):
        if any(s.split == "val" for s in samples):
            return samples
        train = [s for s in samples if s.split == "train"]
        rest = [s for s in samples if s.split != "train"]
        val_share = fractions[1] / (fractions[0] + fractions[1])
        carved = _split_stratified(train, (1 - val_share, val_share, 0.0), seed, root)
        return carved + rest
    return _split_stratified(samples, fractions, seed, root)


def _split_stratified(samples: list[Sample], fractions, seed: int, root) -> list[Sample]:
    # Units are groups when groups are given (so a group never straddles splits), else photos.
    units: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        name = os.path.relpath(s.path, root) if root else s.path
        units[f"group:{s.group}" if s.group is not None else f"path:{name}"].append(s)
    by_class: dict[str, list[str]] = defaultdict(list)
    for key, members in units.items():
        label = Counter(m.label for m in members).most_common(1)[0][0]
        by_class[label].append(key)
    out: list[Sample] = []
    for label in sorted(by_class):
        # Order by a seeded hash of each unit, so adding or losing a photo barely moves the others.
        keys = sorted(by_class[label], key=lambda k: hashlib.sha1(f"{seed}:{k}".encode()).digest())
        n = len(keys)
        n_val = int(round(n * fractions[1]))
        n_test = int(round(n * fractions[2]))
        if n - n_val - n_test < 1:  # every class keeps at least one training unit
            n_val, n_test = max(0, min(n_val, n - 1)), max(0, min(n_test, n - 1 - min(n_val, n - 1)))
        for j, key in enumerate(keys):
            split = "val" if j < n_val else "test" if j < n_val + n_test else "train"
            out.extend(replace(s, split=split) for s in units[key])
    return out


def find_leakage(samples: list[Sample], hashes: dict[str, str], phashes: dict[str, tuple] | None = None) -> list[dict]:
    """Photos that sit in more than one split: byte-identical files ("identical"), and, where
    `phashes` are given, groups of near copies across splits ("near copy": within
    checks.duplicates.HASH_ONLY_BITS, the rule that was right 99 % of the time on real pairs)."""
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.path in hashes:
            by_hash[hashes[s.path]].append(s)
    leaks = []
    for sha1, group in sorted(by_hash.items()):
        splits = sorted({s.split for s in group}, key=str)
        if len(splits) > 1:
            leaks.append({"kind": "identical", "sha1": sha1, "paths": [s.path for s in group],
                          "path_splits": [s.split for s in group], "splits": splits})
    if phashes:
        leaks += _near_copies(samples, hashes, phashes)
    return leaks


def _near_copies(samples: list[Sample], hashes: dict[str, str], phashes: dict[str, tuple]) -> list[dict]:
    from ..checks.duplicates import HASH_ONLY_BITS, Photo, find_pairs, group

    have = [s for s in samples if s.path in phashes]
    photos = [Photo(s.path, hashes=phashes[s.path]) for s in have]
    pairs = [p for p in find_pairs(photos, HASH_ONLY_BITS, cosine=None)
             if have[p.a].split != have[p.b].split and hashes.get(have[p.a].path) != hashes.get(have[p.b].path)]
    groups = group(photos, pairs).group_of
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in groups.items():
        members[g].append(i)
    bits: dict[int, int] = defaultdict(int)  # the farthest pair of each group
    for p in pairs:
        bits[groups[p.a]] = max(bits[groups[p.a]], p.hash_bits)
    return [{"kind": "near copy", "paths": [have[i].path for i in ms], "path_splits": [have[i].split for i in ms],
             "splits": sorted({have[i].split for i in ms}, key=str), "hash_bits": bits[g]}
            for g, ms in sorted(members.items())]


def merge_val_into_train(collection: PhotoCollection, fractions=DEFAULT_FRACTIONS, seed: int = 0) -> PhotoCollection:
    """Train on the published train and val splits together; validation photos for early
    stopping are then carved out of them (stratified), and test stays as it is."""
    merged = [replace(s, split="train") if s.split == "val" else s for s in collection.samples]
    source = Path(collection.source)
    collection.samples = assign_splits(merged, fractions, seed, root=source if source.is_dir() else source.parent)
    collection.leakage = find_leakage(collection.samples, collection.hashes, collection.phashes)
    return collection


def combine_collections(collections: list[PhotoCollection]) -> PhotoCollection:
    """One collection from several already split ones (e.g. two datasets with different layouts);
    classes are the union, and leakage is looked for across all of them."""
    if len(collections) == 1:
        return collections[0]
    samples = [s for c in collections for s in c.samples]
    hashes = {k: v for c in collections for k, v in c.hashes.items()}
    phashes = {k: v for c in collections for k, v in c.phashes.items()}
    return PhotoCollection(" + ".join(c.source for c in collections), sorted({s.label for s in samples}),
                           samples, [x for c in collections for x in c.skipped],
                           find_leakage(samples, hashes, phashes), hashes, phashes)


def load_sources(sources: Sequence[str | os.PathLike], *, seed: int = 0, merge_val: bool = False,
                 workers: int = 4, progress: bool = True) -> PhotoCollection:
    """Several sources as `estatelens train` reads them: each loaded and split its own way (with
    `merge_val`, its published train and val merged and validation carved out again), then combined."""
    parts = []
    for source in sources:
        part = load_collection(source, seed=seed, workers=workers, progress=progress)
        parts.append(merge_val_into_train(part, seed=seed) if merge_val else part)
    return combine_collections(parts)


def slice_per_class(collection: PhotoCollection, n: int) -> PhotoCollection:
    """A deterministic slice: the first n photos of each class in each split."""
    seen: Counter = Counter()
    kept = []
    for s in collection.samples:
        if seen[(s.split, s.label)] < n:
            seen[(s.split, s.label)] += 1
            kept.append(s)
    collection.samples = kept
    return collection
