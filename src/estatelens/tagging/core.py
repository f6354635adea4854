"""Streaming tagger: paths in, one row per photo out, memory flat however many photos."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..also import pick_also
from ..checks.photo import for_room
from ..attributes import AttributeHead
from ..bundle import ModelBundle
from ..inference import Inspect, Prediction, predict_stream

TOP_K = 3
UNCERTAIN = "uncertain"
PATH_LIST_SUFFIXES = (".txt", ".lst")


def display_path(path: str) -> str:
    """`path` as text that any output can hold. On Linux a file name need not be valid UTF-8
    (Python then carries the bad bytes as lone surrogates, which no encoder accepts): those bytes
    are shown as \\xNN escapes. Opening the file always uses the original string."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def path_key(path: str) -> str:
    """What identifies a photo across runs, whatever the working folder or spelling (./a, a)."""
    return display_path(os.path.abspath(path))


@dataclass
class TagRow:
    """What the tagger says about one file; `status` is "ok" or the reason it was skipped.
    `file` is the path as given (to open it); `path` the same as printable text."""

    file: str
    status: str
    room_type: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] | None = None
    width: int | None = None
    height: int | None = None
    attributes: dict[str, float] | None = None  # attribute -> probability
    scores: dict[str, float] | None = None  # every room type -> probability (the index keeps them all)
    unusual: float | None = None  # how unlike the bundle's training photos (ood.py); None where it cannot tell
    also: str | None = None  # a second room type the photo shows (open-plan rooms, also.py)
    also_probability: float | None = None
    checks: dict | None = None  # the listing checks' columns (tag --checks; checks/photo.py)

    @property
    def path(self) -> str:
        return display_path(self.file)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self, heads: Sequence[AttributeHead] = ()) -> dict:
        """The output row. Each attribute gives two columns beside the room type: NAME ("yes" at
        or above the head's operating threshold, else "no"; empty for a head without one) and
        NAME_probability."""
        row = {"path": self.path, "status": self.status, "room_type": self.room_type,
               "probability": self.probability,
               "unusual": None if self.unusual is None else round(self.unusual, 4)}
        for head in heads:
            p = self.attributes.get(head.name) if self.attributes else None
            row[head.name] = None if p is None else head.says(p)
            row[f"{head.name}_probability"] = None if p is None else round(p, 4)
        row["also"], row["also_probability"] = self.also, self.also_probability
        for k in range(TOP_K):
            name, p = self.top[k] if self.top and k < len(self.top) else (None, None)
            row[f"class_{k + 1}"], row[f"probability_{k + 1}"] = name, p
        row["width"], row["height"] = self.width, self.height
        return row


def iter_input_paths(inputs: Iterable[str | os.PathLike], exclude: Iterable[str | os.PathLike] = ()) -> Iterator[str]:
    """Every file named by `inputs`, in a stable order, without building a list.

    A folder is walked recursively (sorted; hidden entries skipped; linked folders followed, each
    real folder once); a `.txt` / `.lst` file is a list of paths, one per line (relative ones
    resolved against the list's folder, folders walked, blank lines and lines starting with #
    ignored); anything else is taken as a photo path, so a missing file becomes a row that says
    so. Files and folders in `exclude` (the output, the sort-into folder) are left out. A file is
    given once, however often it is named (itself, in a folder also named, in a list)."""
    skip = {os.path.abspath(p) for p in exclude}
    seen_dirs: set[str] = set()
    named: set[str] = set()  # the files named one by one (their real folder / name), each once

    def once(path: str) -> bool:
        key = _file_key(path)
        folder, name = os.path.split(key)
        if key in named or (folder in seen_dirs and not name.startswith(".") and os.path.lexists(key)):  # walked
            return False
        named.add(key)
        return True

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            yield from _walk(str(p), skip, seen_dirs, named)
        elif p.suffix.lower() in PATH_LIST_SUFFIXES and p.is_file():
            try:
                with open(p, encoding="utf-8-sig") as f:
                    lines = [line.strip() for line in f]
            except UnicodeDecodeError as e:
                raise ValueError(f"{p}: a list of paths must be UTF-8 text ({e.reason} at byte {e.start})") from None
            for line in lines:
                if line and not line.startswith("#"):
                    q = Path(line) if Path(line).is_absolute() else p.parent / line
                    if q.is_dir():
                        yield from _walk(str(q), skip, seen_dirs, named)
                    elif once(str(q)):
                        yield str(q)
        elif once(str(p)):
            yield str(p)


def _file_key(path: str) -> str:
    """A file's real folder and its own name (a linked file stays itself: its folder is resolved)."""
    path = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _walk(top: str, skip: set[str], seen_dirs: set[str], named: set[str]) -> Iterator[str]:
    for root, dirs, files in os.walk(top, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:  # a link back up the tree, or a folder reached twice
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.abspath(os.path.join(root, d)) not in skip)
        for name in sorted(files):
            full = os.path.join(root, name)
            if not name.startswith(".") and os.path.abspath(full) not in skip and os.path.join(real, name) not in named:
                yield full


def tag_photos(bundle: ModelBundle, paths: Iterable[str], *, batch_size: int = 16, workers: int = 2,
               min_confidence: float = 0.0, checks: Inspect | None = None) -> Iterator[TagRow]:
    """Yield a TagRow per path, in order (decoding and the network overlap: see `predict_stream`).

    Below `min_confidence`, or farther from the bundle's training photos than its "ood" threshold
    (a floor plan, a text card: nothing it learned from), room_type is "uncertain"; the top
    classes still say what was guessed. `checks` (a checks.photo.PhotoChecker) runs on each decoded
    photo, in the decoding threads, and fills TagRow.checks."""
    far = bundle.unusual.threshold if bundle.unusual is not None else None
    for pred in predict_stream(bundle, paths, batch_size=batch_size, workers=workers, attributes=True,
                               inspect=checks):
        yield tag_row(pred, bundle.classes, min_confidence, far, bundle.also_heads)


def tag_row(pred: Prediction, classes: Sequence[str], min_confidence: float = 0.0,
            far: float | None = None, cues: Sequence[AttributeHead] = ()) -> TagRow:
    """What the tagger says about one prediction (every front end's rows come from here). `cues`:
    the bundle's open-plan cue heads, for `also` (none for a photo called uncertain)."""
    w, h = pred.size if pred.size else (None, None)
    if pred.probs is None:
        return TagRow(pred.path, pred.status, width=w, height=h)  # no checks either: no usable photo
    p = pred.probs
    order = np.argsort(-p)[:TOP_K]
    top = [(classes[k], round(float(p[k]), 4)) for k in order]
    room, prob = top[0]
    sure = float(p[order[0]]) >= min_confidence and not (far is not None and pred.unusual > far)
    scores = {c: float(v) for c, v in zip(classes, p)}
    also, also_p = pick_also(room, pred.cues, cues) if sure else (None, None)
    return TagRow(pred.path, "ok", room if sure else UNCERTAIN, prob, top, w, h, pred.attributes, scores,
                  pred.unusual, also, also_p, for_room(pred.checks, room))
