"""The Python entry point, for notebooks and scripts: the same tagging as `estatelens tag`.

    >>> from estatelens import Tagger
    >>> tagger = Tagger()                      # the bundled "rooms" model
    >>> rows = tagger.tag(["photos/", "one.jpg"])
    >>> rows[0]["room_type"], rows[0]["probability"]
    ('kitchen', 0.97)
    >>> df = rows.to_pandas()                  # when pandas is installed

`tag` returns one row per file, in the order the CLI writes them and with the same columns
(`Tagger.columns`); a file that cannot be used is a row whose `status` says why. `run` is the
whole `estatelens tag` job: an output file, sorted class folders, heatmaps, crops, resumable.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from .bundle import ModelBundle, load_bundle
from .tagging import TagJob, run_tagging
from .tagging.core import iter_input_paths, tag_photos
from .tagging.job import TagSummary, columns

if TYPE_CHECKING:
    import pandas

PathLike = str | os.PathLike


def _as_list(paths: PathLike | Iterable[PathLike]) -> Iterable[PathLike]:
    """One path, or several: as `tag` takes them."""
    return [paths] if isinstance(paths, (str, os.PathLike)) else paths


class Rows(list):
    """The rows `Tagger.tag` returns: a list of dicts, one per file, that pandas can take."""

    def __init__(self, rows: Iterable[dict], columns: Sequence[str]):
        super().__init__(rows)
        self.columns = list(columns)

    def to_pandas(self) -> "pandas.DataFrame":
        """A DataFrame with the CLI's columns, in its order (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Rows.to_pandas needs pandas: pip install pandas") from None
        return pd.DataFrame(list(self), columns=self.columns)


class Tagger:
    """Tag listing photos with a model bundle.

    model: a bundled model's name ("rooms") or the path of a `.estatelens` folder.
    threads: ONNX Runtime threads (default: all cores); batch_size and workers as in `tag`.
    min_confidence: below it (or for a photo unlike anything the model learned), room_type is
    "uncertain"; the class_1..3 columns still say what was guessed.
    """

    def __init__(self, model: PathLike | ModelBundle = "rooms", *, threads: int | None = None,
                 batch_size: int = 16, workers: int = 2, min_confidence: float = 0.0):
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        self.bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
        self.bundle.session(threads)
        self.threads, self.batch_size, self.workers = threads, batch_size, workers
        self.min_confidence = min_confidence

    @property
    def classes(self) -> list[str]:
        """The room types the model tells apart."""
        return list(self.bundle.classes)

    @property
    def attributes(self) -> list[str]:
        """The attributes (fireplace, balcony, ...) the model reports, each with a probability."""
        return [h.name for h in self.bundle.attributes]

    @property
    def columns(self) -> list[str]:
        """The columns of each row, as `estatelens tag` writes them."""
        return columns(False, self.bundle.attributes)

    def iter_tag(self, paths: PathLike | Iterable[PathLike]) -> Iterator[dict]:
        """One row per file, as they are tagged (memory stays flat for any number of photos).
        paths: files, folders (walked recursively) and .txt/.lst lists of paths, as for `tag`."""
        paths = _as_list(paths)
        heads = self.bundle.attributes
        for row in tag_photos(self.bundle, iter_input_paths(paths), batch_size=self.batch_size,
                              workers=self.workers, min_confidence=self.min_confidence):
            yield row.to_dict(heads)

    def tag(self, paths: PathLike | Iterable[PathLike]) -> Rows:
        """All rows at once (see `iter_tag`); `.to_pandas()` makes a DataFrame of them."""
        return Rows(self.iter_tag(paths), self.columns)

    def run(self, paths: PathLike | Iterable[PathLike], out: PathLike, *, sort_into: PathLike | None = None,
            link: str | None = None, explain: PathLike | None = None, crops: bool | PathLike = False,
            restart: bool = False, progress: bool = True) -> TagSummary:
        """The whole `estatelens tag` job: write `out` (.csv, .xlsx, .json, .jsonl, .parquet),
        optionally copy or link photos into class folders (`sort_into`, link "hard"/"symbolic"),
        draw heatmaps (`explain`), add crop detection (`crops`: True for the bundled crop model, or
        a path); resumable like the command (an interrupted run goes on where it stopped)."""
        paths = _as_list(paths)
        crop_model = ("crops" if crops is True else os.fspath(crops)) if crops else None
        job = TagJob(inputs=[os.fspath(p) for p in paths], out=os.fspath(out),
                     sort_into=os.fspath(sort_into) if sort_into else None, link=link,
                     min_confidence=self.min_confidence, batch_size=self.batch_size, workers=self.workers,
                     restart=restart, progress=progress, explain=os.fspath(explain) if explain else None,
                     crops=crop_model, threads=self.threads)
        return run_tagging(self.bundle, job, log=print if progress else (lambda s: None))
