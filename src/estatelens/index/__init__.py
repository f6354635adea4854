"""The photo index: tagged photos and their listings in SQLite or PostgreSQL, searchable, with
human corrections kept apart from predictions (`estatelens index / search / serve / export-labels`)."""
from .build import Listings, index_photos, read_listings
from .db import connect
from .review import correct, export_labels, uncorrect
from .search import QueryError, search

__all__ = ["Listings", "index_photos", "read_listings", "connect", "correct", "export_labels", "uncorrect",
           "QueryError", "search"]
