"""Watermarks, overlaid text and logos on listing photos (issue 16, item 1)."""
