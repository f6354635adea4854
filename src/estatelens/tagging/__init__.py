"""Tag listing photos: files, folders or lists of paths in; one row per photo out.

`tag_photos` is the streaming core (decode in threads while ONNX Runtime runs the previous batch);
`run_tagging` adds what a batch job needs around it: a journal that makes interrupted runs
resumable, sorting into class folders, and the final spreadsheet / CSV / JSON / Parquet file.
"""
from .core import TagRow, iter_input_paths, tag_photos
from .job import TagJob, run_tagging
from .writers import OUTPUT_FORMATS, write_rows

__all__ = ["TagRow", "iter_input_paths", "tag_photos", "TagJob", "run_tagging", "OUTPUT_FORMATS", "write_rows"]
