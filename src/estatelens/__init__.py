"""estatelens: tell what real-estate listing photos show.

    from estatelens import Tagger
    rows = Tagger().tag("photos/")          # one dict per photo, as `estatelens tag` writes them

`Tagger` and `load_bundle` are imported on first use, so `import estatelens` stays light.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Tagger", "Rows", "load_bundle", "__version__"]


def __getattr__(name: str):
    if name in ("Tagger", "Rows"):
        from . import api

        return getattr(api, name)
    if name == "load_bundle":
        from .bundle import load_bundle

        return load_bundle
    raise AttributeError(f"module 'estatelens' has no attribute {name!r}")
