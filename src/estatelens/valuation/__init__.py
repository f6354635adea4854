"""What is the house worth: price models on listing facts and on what the tagger sees in the
photos (`estatelens value fit / predict / report`). Needs scikit-learn (the [value] extra)."""
from __future__ import annotations

from typing import Sequence

from ..bundle import ModelBundle
from .data import Listings, read_listings
from .photos import ListingPhotos, PhotoFeatureCache, PhotoRef, pool_listings, read_photos_csv, rooms_to_pool

__all__ = ["Listings", "ListingPhotos", "PhotoRef", "listing_photo_features", "read_listings", "read_photos_csv",
           "unmatched_photos"]


def listing_photo_features(bundle: ModelBundle, ids: Sequence[str], refs: Sequence[PhotoRef], *,
                           rooms: Sequence[str] | None = None, cache_dir=None, network: str | None = None,
                           progress: bool = True) -> tuple[ListingPhotos, list[str]]:
    """(pooled photo features of each listing in `ids`, the rooms pooled apart): one network pass
    per photo not yet in the cache. `rooms` (a fitted model's) fixes which rooms get their own
    pooled embedding; without it, the rooms named for at least half of the listings. `network` (a
    fitted model's `tagging_network`) must match the bundle's graph: another network's features
    would mean nothing to the model."""
    wanted = set(ids)
    refs = [r for r in refs if r.listing_id in wanted]
    cache = PhotoFeatureCache(bundle, cache_dir)
    if network is not None and cache.network != network:
        raise ValueError(f"{bundle.path}: not the network the value model was fitted with (graph {cache.network}, "
                         f"fitted on {network}); refit it with `estatelens value fit ... --model {bundle.path}`")
    feats = cache.features([r.path for r in refs], progress=progress)
    if rooms is None:
        rooms = rooms_to_pool(refs, bundle.classes, ids=ids)
    pooled = pool_listings(ids, refs, feats, bundle.classes, cache.attribute_names, rooms)
    pooled.network = cache.network
    return pooled, list(rooms)


def unmatched_photos(refs: Sequence[PhotoRef], ids: Sequence[str]) -> list[str]:
    """Listing ids in the photos CSV that the listings CSV lacks."""
    known = set(ids)
    return sorted({r.listing_id for r in refs if r.listing_id not in known})
