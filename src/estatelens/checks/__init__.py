"""Checks a portal runs before publishing a photo (issue 16): duplicates so far."""
