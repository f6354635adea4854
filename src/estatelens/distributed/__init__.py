"""Tagging on a cluster: `estatelens tag --engine ray` and `tag_dataset` (Ray Data; the [ray] extra)."""
from .engine import RaySummary, read_manifest, read_output, tag_dataset

__all__ = ["RaySummary", "read_manifest", "read_output", "tag_dataset"]
