"""A tagging run as a batch job: resumable, sorting photos into folders, writing the output file.

Rows are appended to a journal (`.OUT.partial.jsonl` beside the output) after every batch. If the
run is interrupted (Ctrl-C, a crash, a power cut), rerunning the same command reads the journal,
skips every photo already in it and goes on; the output file is written from the journal at the
end, and the journal is then removed.
"""
from __future__ import annotations

import filecmp
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from itertools import islice
from typing import Callable, Iterable, Iterator, Sequence

from tqdm import tqdm

from ..attributes import AttributeHead
from ..bundle import ModelBundle
from ..data.images import is_image_name
from .core import UNCERTAIN, TagRow, display_path, iter_input_paths, path_key, tag_photos
from .writers import check_output_path, write_rows

JOURNAL_VERSION = 3  # 2: the crop model is part of the settings; 3: the listing checks


@dataclass
class TagJob:
    inputs: Sequence[str]
    out: str
    sort_into: str | None = None
    link: str | None = None  # None (copy), "hard" or "symbolic"
    min_confidence: float = 0.0
    batch_size: int = 16
    workers: int = 2
    restart: bool = False
    progress: bool = True
    explain: str | None = None  # folder for heatmap overlays (tag --explain DIR)
    threads: int | None = None  # ONNX Runtime threads of the crop model (the room model's are set on its session)
    crops: str | None = None  # crop model (tag --crops [MODEL]): adds cropped_probability and the rectangle
    checks: bool = False  # tag --checks: photo quality and duplicate groups (checks/)
    faces: bool = False  # tag --faces: face count and boxes too (implies checks)
    watermarks: bool = False  # tag --watermarks: the watermark network too (implies checks)
    blur_faces: str | None = None  # tag --blur-faces DIR: copies of photos with faces, the faces blurred
    min_size: tuple[int, int] | None = None  # the portal's minimum (long side, short side) for quality

    def __post_init__(self):
        self.faces = self.faces or bool(self.blur_faces)
        self.checks = self.checks or self.faces or self.watermarks

    def checker(self):
        """The checks run on every decoded photo, or None without --checks."""
        from ..checks.photo import make_checker

        return make_checker(self.checks, self.faces, self.min_size, self.watermarks)

    def settings(self, bundle: ModelBundle) -> dict:
        """What must match for a journal to be resumed."""
        return {"journal": JOURNAL_VERSION, "inputs": [os.path.abspath(i) for i in self.inputs],
                "model": str(bundle.path.resolve()), "classes": bundle.classes,
                "attributes": {h.name: [h.graph, h.threshold, h.bias] for h in bundle.attributes},
                "sort_into": os.path.abspath(self.sort_into) if self.sort_into else None,
                "link": self.link, "min_confidence": self.min_confidence,
                "explain": os.path.abspath(self.explain) if self.explain else None,
                "crops": _crop_model_key(self.crops),
                "checks": [self.checks, self.faces, self.watermarks, list(self.min_size or ()),
                           os.path.abspath(self.blur_faces) if self.blur_faces else None]}


@dataclass
class TagSummary:
    out: str
    n_rows: int
    n_ok: int
    n_skipped: int
    n_resumed: int
    seconds: float
    photos_per_second: float
    per_class: dict = field(default_factory=dict)
    skipped_examples: list = field(default_factory=list)
    checks: Counter = field(default_factory=Counter)  # with --checks: quality fails per reason, faces, duplicates


def columns(sort_into: bool, heads: Sequence[AttributeHead] = (), explain: bool = False,
            crops: bool = False, checks: bool = False, faces: bool = False, blur_faces: bool = False,
            watermarks: bool = False) -> list[str]:
    """The output's columns: a row's own (TagRow.to_dict is the one place they are named)."""
    from ..checks.photo import check_columns
    from ..crops.detector import CROP_COLUMNS

    return (list(TagRow("", "").to_dict(heads)) + (list(CROP_COLUMNS) if crops else [])
            + (check_columns(faces, watermarks) if checks else []) + (["blurred_to"] if blur_faces else [])
            + (["sorted_to"] if sort_into else []) + (["heatmaps"] if explain else []))


def _crop_model_key(crops: str | None) -> str | None:
    """The crop model as the journal records it: its folder, or None."""
    if not crops:
        return None
    from ..crops.detector import crop_bundle_fingerprint, find_crop_bundle

    path = find_crop_bundle(crops).resolve()
    return f"{path}:{crop_bundle_fingerprint(path)}"


def journal_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.partial.jsonl")


def run_tagging(bundle: ModelBundle, job: TagJob, log: Callable[[str], None] = print) -> TagSummary:
    out = check_output_path(job.out)
    if job.sort_into and job.link not in (None, "hard", "symbolic"):
        raise ValueError(f"link must be 'hard' or 'symbolic', not {job.link!r}")
    if not 0.0 <= job.min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be between 0 and 1, got {job.min_confidence}")
    for item in job.inputs:  # a photo named and gone is a row saying so; a folder or list gone is a typo
        if not os.path.lexists(item) and not is_image_name(str(item)):
            raise FileNotFoundError(f"{item}: no such folder, list or photo")
    journal = journal_path(out)
    settings = job.settings(bundle)
    done = _read_journal(journal, settings, job.restart, log)
    exclude = [out, journal] + [d for d in (job.sort_into, job.explain, job.blur_faces) if d]
    total = sum(1 for _ in iter_input_paths(job.inputs, exclude))
    if total == 0:
        raise FileNotFoundError(f"no files found in {', '.join(map(str, job.inputs))}")
    todo = (p for p in iter_input_paths(job.inputs, exclude) if path_key(p) not in done)
    n_resumed = len(done)
    if n_resumed:
        log(f"resuming: {n_resumed} of {total} photos were tagged by an earlier run ({journal.name})")
    sorter = _Sorter(Path(job.sort_into), job.link) if job.sort_into else None
    heatmapper = _Heatmapper(bundle, Path(job.explain)) if job.explain else None
    cropper = _Cropper(job.crops, job.threads, job.workers) if job.crops else None
    checker = job.checker()

    t0, n_new = time.time(), 0
    new_file = not journal.exists() or job.restart
    with open(journal, "w" if new_file else "a", encoding="utf-8") as jf, \
            tqdm(total=total, initial=n_resumed, desc="tagging", unit="photo", disable=not job.progress,
                 smoothing=0.1) as bar:
        if new_file:
            _flush(jf, [json.dumps({"settings": settings})])
        rows = tag_photos(bundle, todo, batch_size=job.batch_size, workers=job.workers,
                          min_confidence=job.min_confidence, checks=checker)
        pending: list[str] = []
        for chunk in _chunks(rows, job.batch_size):
            crops = cropper.columns_for(chunk) if cropper is not None else [None] * len(chunk)
            for row, crop in zip(chunk, crops):
                record = row.to_dict(bundle.attributes)
                record["_key"] = path_key(row.file)
                if sorter is not None:
                    record["sorted_to"] = sorter.place(row) if row.ok else None
                if crop is not None:
                    record.update(crop)
                if row.checks:
                    record.update(row.checks)
                if job.blur_faces:
                    record["blurred_to"] = _blur(row, Path(job.blur_faces))
                if heatmapper is not None:
                    record["heatmaps"] = heatmapper.write(row) if row.ok else None
                pending.append(json.dumps(record, ensure_ascii=False))
                n_new += 1
                bar.update(1)
            if len(pending) >= job.batch_size:
                _flush(jf, pending)
                bar.set_postfix(photos_s=f"{n_new / max(1e-9, time.time() - t0):.0f}")
        _flush(jf, pending)
    seconds = time.time() - t0

    counts: Counter = Counter()
    skipped_examples: list = []
    n_rows = 0
    checked: Counter = Counter()
    group_of = _duplicate_groups(journal) if job.checks else {}

    def final_rows() -> Iterator[dict]:
        nonlocal n_rows
        for record in _journal_records(journal):
            n_rows += 1
            if job.checks:
                record["duplicate_group"] = group_of.get(record.get("_key") or record["path"])
                _count_checks(checked, record)
            if record["status"] == "ok":
                counts[record["room_type"]] += 1
            elif len(skipped_examples) < 10:
                skipped_examples.append((record["path"], record["status"]))
            yield record

    write_rows(out, final_rows(), columns(bool(job.sort_into), bundle.attributes, bool(job.explain), bool(job.crops),
                                          job.checks, job.faces, bool(job.blur_faces), job.watermarks))
    journal.unlink()
    n_ok = sum(counts.values())
    return TagSummary(str(out), n_rows, n_ok, n_rows - n_ok, n_resumed, seconds,
                      n_new / seconds if seconds > 0 else 0.0, dict(sorted(counts.items())), skipped_examples,
                      checked)


def _count_checks(counts: Counter, record: dict) -> None:
    if record.get("quality") == "fail":
        counts["quality fail"] += 1
        for reason in (record.get("quality_reasons") or "").split("; "):
            counts["  " + reason.split(" (")[0]] += 1
    if record.get("watermark") == "yes":
        counts["with a watermark"] += 1
    if record.get("faces"):
        counts["with faces"] += 1
    if record.get("duplicate_group") is not None:
        counts["in a duplicate group"] += 1


def _blur(row: TagRow, root: Path) -> str | None:
    """Where a copy of the photo with its faces blurred was written (tag --blur-faces), or None
    for a photo without faces. The name carries a hash of the photo's path, so that two photos
    called IMG_0001.jpg in different folders never overwrite each other."""
    import hashlib

    from ..checks.faces import blur_faces, parse_boxes
    from ..data.images import PhotoError

    if not row.ok or not row.checks or not row.checks.get("faces"):
        return None
    src = Path(row.file)
    tag = hashlib.sha1(path_key(row.file).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    try:
        dest = blur_faces(src, root / f"{src.stem}-{tag}{src.suffix if src.suffix else '.jpg'}",
                          parse_boxes(row.checks["face_boxes"]))
    except PhotoError as e:  # changed on disk since it was tagged: the row stays, without a copy
        return f"failed: {e.reason}"
    return display_path(str(dest))


def _duplicate_groups(journal: Path) -> dict[str, int]:
    """Photo key -> duplicate group (1, 2, ...) for the photos of the run that have a near
    duplicate among them (pHashes only: checks/duplicates.py's rule without the embeddings)."""
    from ..checks.duplicates import hash_groups
    from ..checks.photo import HASHES

    records = [r for r in _journal_records(journal) if r.get(HASHES)]
    groups = hash_groups([r["path"] for r in records], [r[HASHES] for r in records])
    return {records[i].get("_key") or records[i]["path"]: g for i, g in groups.items()}


def _flush(jf, pending: list[str]) -> None:
    if pending:
        jf.write("\n".join(pending) + "\n")
        jf.flush()
        os.fsync(jf.fileno())
        pending.clear()


def _journal_records(journal: Path) -> Iterator[dict]:
    with open(journal, encoding="utf-8") as f:
        next(f, None)  # settings line
        for line in f:
            if line.endswith("\n"):  # a line cut by a crash is not a record; that photo is redone
                yield json.loads(line)


def _read_journal(journal: Path, settings: dict, restart: bool, log) -> set[str]:
    if restart or not journal.exists():
        return set()
    with open(journal, encoding="utf-8") as f:
        first = f.readline()
    try:
        head = json.loads(first).get("settings")
    except (json.JSONDecodeError, AttributeError):
        head = None
    if head is None and not first.endswith("\n"):
        # Killed before even the header reached the disk: nothing was tagged, start afresh.
        journal.unlink()
        return set()
    if head != settings:
        raise ValueError(f"{journal}: an interrupted run with different inputs, model or options left "
                         f"this journal; rerun that command to finish it, or add --restart to start over")
    done, good = set(), 0
    with open(journal, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            good += len(line)
    # Drop a last line cut short by a crash, so that appending starts on a fresh line.
    with open(journal, "r+b") as f:
        f.truncate(good)
    for record in _journal_records(journal):
        done.add(record.get("_key") or record["path"])
    return done


class _Heatmapper:
    """Writes a tagged photo's heatmap overlays into DIR, from the probabilities the tagger found.
    File names carry a hash of the photo's absolute path, so that two photos called IMG_0001.jpg
    in different folders never overwrite each other's overlays."""

    def __init__(self, bundle: ModelBundle, root: Path):
        from ..explain import Explainer  # PyTorch: only loaded when heatmaps are asked for

        self.explainer, self.root = Explainer(bundle), root
        self.crop_fraction = bundle.preprocessing.crop_fraction

    def write(self, row: TagRow) -> str:
        from ..data.images import PhotoError
        from ..explain import overlay_stem, write_overlays

        try:
            explanation = self.explainer.explain(row.file, room=row.top[0], attributes=row.attributes or {})
            files = write_overlays(explanation, self.root, self.crop_fraction, stem=overlay_stem(row.file, unique=True))
        except PhotoError as e:  # changed on disk since it was tagged: the row stays, without heatmaps
            return f"failed: {e.reason}"
        return ";".join(display_path(str(f)) for f in files)


class _Cropper:
    """The crop detector's columns for tagged photos (tag --crops): a second decode, in `workers`
    threads, and one batched pass of the crop network per batch of photos."""

    def __init__(self, model: str, threads: int | None = None, workers: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        from ..crops.detector import CROP_COLUMNS, CropDetector

        self.detector, self.empty = CropDetector(model, threads), dict.fromkeys(CROP_COLUMNS)
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="crop-decode")

    def _inputs(self, row: TagRow):
        from ..data.images import PhotoError, read_photo

        if not row.ok:
            return None
        try:
            return self.detector.inputs(read_photo(row.file)[0])
        except PhotoError:  # changed on disk since it was tagged: the row stays, without crop columns
            return None

    def columns_for(self, rows: list[TagRow]) -> list[dict]:
        import numpy as np

        prepared = list(self.pool.map(self._inputs, rows))
        out = [dict(self.empty) for _ in rows]
        good = [i for i, x in enumerate(prepared) if x is not None]
        if good:
            preds = self.detector.predict_inputs(np.stack([prepared[i][0] for i in good]),
                                                 np.stack([prepared[i][1] for i in good]))
            for i, pred in zip(good, preds):
                out[i] = pred.columns()
        return out


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, max(1, size))):
        yield chunk


class _Sorter:
    """Places photos under DIR/<room type>/, never overwriting a different file of the same name."""

    def __init__(self, root: Path, link: str | None):
        self.root, self.link = root, link
        self.first_free: dict[tuple[Path, str], int] = {}  # thousands of IMG_0001.jpg stay linear

    def place(self, row: TagRow) -> str:
        src = Path(row.file)
        folder = self.root / (row.room_type or UNCERTAIN)
        folder.mkdir(parents=True, exist_ok=True)
        k = self.first_free.get((folder, src.name), 1)
        while True:
            dest = folder / (src.name if k == 1 else f"{src.stem}-{k}{src.suffix}")
            if dest.exists() or dest.is_symlink():
                if self._same(src, dest):
                    return display_path(str(dest))  # placed by an earlier, interrupted run
                k += 1
                continue
            self._put(src, dest)
            self.first_free[(folder, src.name)] = k + 1
            return display_path(str(dest))

    def _same(self, src: Path, dest: Path) -> bool:
        try:
            if dest.is_symlink():
                return os.path.abspath(os.readlink(dest)) == os.path.abspath(src)
            return os.path.samefile(src, dest) or filecmp.cmp(src, dest, shallow=False)
        except OSError:
            return False

    def _put(self, src: Path, dest: Path) -> None:
        if self.link == "symbolic":
            os.symlink(os.path.abspath(src), dest)
            return
        if self.link == "hard":
            try:
                os.link(src, dest)
                return
            except OSError:  # another file system, or links not allowed: fall back to a copy
                pass
        tmp = dest.with_name(f".{dest.name}.copying")
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
