"""Yes/no labels for one attribute (fireplace, balcony, ...), from a CSV or from folders.

- CSV: columns `path` and NAME (yes / no / unsure; also y/n, 1/0, true/false), optional `split`
  and `group`; paths relative to the CSV's folder. One CSV can hold many attributes (one column
  each), as ../shared/data/attributes.csv does.
- Folders: DATA/NAME/{yes,no}/ or DATA/{yes,no}/, optionally with train/val/test folders above
  or below NAME; an `unsure/` folder is allowed and left out.

`unsure` means a person could not tell from the photo: such rows are counted and left out of
training and of scoring, never read as "no".

Splits: a `split` column or split folder is kept; otherwise a path inside a train/val/test folder
keeps that split (a published split, as in rooms-web/test/...); the remaining photos are split
deterministically, stratified by label (and by group when given), as for room types.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..attributes import NO, UNSURE, YES, check_attribute_name
from .dataset import _SPLIT_ALIASES, DEFAULT_FRACTIONS, GROUP_COLUMNS, Sample, _split_stratified
from .images import is_image_name

_VALUES = {"yes": YES, "y": YES, "1": YES, "true": YES, "no": NO, "n": NO, "0": NO, "false": NO,
           "unsure": UNSURE, "?": UNSURE, "unknown": UNSURE}


@dataclass
class AttributeLabels:
    name: str
    samples: list[Sample]  # label "yes" or "no", split assigned
    unsure: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def counts(self) -> dict:
        out = {s: {YES: 0, NO: 0} for s in ("train", "val", "test")}
        for s in self.samples:
            out[s.split][s.label] += 1
        out["unsure_left_out"] = len(self.unsure)
        return out


def read_attribute_labels(source: str | Path, name: str, seed: int = 0) -> AttributeLabels:
    check_attribute_name(name)
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        samples, unsure, skipped = _read_csv(source, name)
        root = source.parent
    elif source.is_dir():
        root = source / name if (source / name).is_dir() else source
        samples, unsure, skipped = _read_folders(root, name)
    else:
        raise FileNotFoundError(f"{source}: no such CSV file or folder of {name}/yes, {name}/no photos")
    if not samples:
        raise ValueError(f"{source}: no photos labelled yes or no for {name!r}")
    given = [s for s in samples if s.split is not None]
    rest = [s for s in samples if s.split is None]
    if rest:
        given += _split_stratified(rest, DEFAULT_FRACTIONS, seed, root)
    return AttributeLabels(name, given, unsure, skipped)


def _value(raw: str, where: str) -> str:
    v = _VALUES.get(raw.strip().lower())
    if v is None:
        raise ValueError(f"{where}: {raw!r} is not yes, no or unsure")
    return v


def _split_in_path(rel: Path) -> str | None:
    for part in rel.parts[:-1]:
        if part.lower() in _SPLIT_ALIASES:
            return _SPLIT_ALIASES[part.lower()]
    return None


def _read_csv(csv_path: Path, name: str) -> tuple[list[Sample], list[str], list[dict]]:
    base = csv_path.parent
    samples, unsure, skipped = [], [], []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "path" not in cols or name not in cols:
            raise ValueError(f"{csv_path}: needs columns path,{name}[,split][,group]; found {reader.fieldnames}")
        group_col = next((cols[c] for c in GROUP_COLUMNS if c in cols), "")
        for i, row in enumerate(reader, start=2):
            path = (row[cols["path"]] or "").strip()
            raw = (row[cols[name]] or "").strip()
            if not path or not raw:
                skipped.append({"path": path or f"{csv_path}:{i}", "reason": f"row {i}: empty path or {name}"})
                continue
            value = _value(raw, f"{csv_path} row {i}, column {name}")
            # normpath: "../../shared/data/x.jpg" from one CSV and "shared/data/x.jpg" from another
            # name one photo (and group by source folder in the reports).
            full = Path(os.path.normpath(path if Path(path).is_absolute() else base / path))
            if value == UNSURE:
                unsure.append(str(full))
                continue
            split = (row.get(cols.get("split", ""), "") or "").strip().lower()
            if split and split not in _SPLIT_ALIASES:
                raise ValueError(f"{csv_path} row {i}: split {split!r} is not one of train/val/test")
            # A train/val/test folder in the path as the CSV writes it (relative to the CSV) keeps
            # that split; folders above the CSV (an absolute /home/me/test/...) say nothing.
            split = _SPLIT_ALIASES[split] if split else (None if Path(path).is_absolute() else _split_in_path(Path(path)))
            group = (row.get(group_col, "") or "").strip() or None
            samples.append(Sample(str(full), value, split, group))
    return samples, unsure, skipped


def _read_folders(root: Path, name: str) -> tuple[list[Sample], list[str], list[dict]]:
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name.lower() in _SPLIT_ALIASES]
    tops = [(d, _SPLIT_ALIASES[d.name.lower()]) for d in split_dirs] or [(root, None)]
    samples, unsure, skipped = [], [], []
    for top, split in tops:
        if (top / name).is_dir():  # DATA/train/NAME/yes as well as DATA/NAME/train/yes
            top = top / name
        found = False
        for value_dir in sorted(top.iterdir()):
            if not value_dir.is_dir() or value_dir.name.startswith("."):
                continue
            value = _value(value_dir.name, f"{value_dir}: folder name")
            found = True
            for path in sorted(value_dir.rglob("*")):
                if path.is_dir() or path.name.startswith("."):
                    continue
                if not is_image_name(path):
                    skipped.append({"path": str(path), "reason": f"not an image file (extension '{path.suffix}')"})
                elif value == UNSURE:
                    unsure.append(str(path))
                else:
                    samples.append(Sample(str(path), value, split))
        if not found:
            raise ValueError(f"{top}: expected folders yes/ and no/ (photos with and without {name})")
    return samples, unsure, skipped


def read_attribute_label_sources(sources, name: str, seed: int = 0) -> AttributeLabels:
    """Labels for NAME from several CSVs or folders (the shared labels and a team's own, say), each
    read and split as `read_attribute_labels` does. A photo labelled in two sources must have the
    same label in both (it is kept once); unsure in one source and yes/no in another is an error
    too, since someone looked at it twice and saw different things."""
    parts = [read_attribute_labels(s, name, seed) for s in sources]
    if len(parts) == 1:
        return parts[0]
    seen: dict[str, tuple[str, str]] = {}
    samples, unsure, skipped = [], [], []
    for src, part in zip(sources, parts):
        for path, label in [(s.path, s.label) for s in part.samples] + [(u, UNSURE) for u in part.unsure]:
            key = os.path.realpath(path)
            if key in seen and seen[key][0] != label:
                raise ValueError(f"{path}: labelled {seen[key][0]!r} in {seen[key][1]} and {label!r} in {src}")
            seen.setdefault(key, (label, str(src)))
        fresh = [s for s in part.samples if seen[os.path.realpath(s.path)][1] == str(src)]
        samples += fresh
        unsure += [u for u in part.unsure if seen[os.path.realpath(u)][1] == str(src)]
        skipped += part.skipped
    return AttributeLabels(name, samples, unsure, skipped)
