"""Price estimates in the index: a value model (`estatelens value fit`) run over the listings of an
index, from their facts and the photos the index holds, stored as listing columns that search
filters on (`value<500000`, `price/value<0.9`) and the listing page shows."""
from __future__ import annotations

import numpy as np
from sqlalchemy import select

from . import db
from .build import _write_listings

# The listing columns an estimate writes; price_to_value only where the listing has a price.
VALUE_COLUMNS = ("value", "value_low", "value_high", "value_basis", "value_drivers", "value_note", "price_to_value")


def _index_listings(conn, model):
    """The index's listings as valuation Listings, with the value model's fact columns."""
    from ..valuation.data import Listings

    ids = list(conn.execute(select(db.listings.c.id).order_by(db.listings.c.id)).scalars())
    where = {lid: i for i, lid in enumerate(ids)}
    numeric = {c: np.full(len(ids), np.nan) for c in model.spec.numeric}
    categorical: dict[str, list] = {c: [None] * len(ids) for c in model.spec.categorical}
    price = np.full(len(ids), np.nan)
    price_col = (model.info.get("price_column") or "").lower()
    # The index keeps column names in lower case; the model, as its CSV wrote them.
    column = {c.lower(): c for c in [*numeric, *categorical]}
    for f in conn.execute(select(db.listing_facts)):
        i = where.get(f.listing_id)
        if i is None:
            continue
        name = column.get(f.name)
        if name in numeric and f.num is not None:
            numeric[name][i] = f.num
        elif name in categorical:
            categorical[name][i] = f.text
        if f.name == price_col and f.num is not None and f.num > 0:
            price[i] = f.num
    return Listings(ids, price, numeric, categorical, "listing_id", price_col)


def _index_photos(conn):
    """A PhotoRef per readable photo with a listing; the room where a person corrected it."""
    from ..valuation.photos import PhotoRef

    P = db.photos
    rows = conn.execute(select(P.c.path_key, P.c.listing_id, P.c.room_type, P.c.room_corrected)
                        .where(P.c.status == "ok", P.c.listing_id.is_not(None)))
    return [PhotoRef(r.path_key, r.listing_id, r.room_type if r.room_corrected else None) for r in rows]


def store_value_estimates(engine, model_path, *, progress: bool = True) -> tuple[int, list[str]]:
    """Value every listing of the index with the model at `model_path`; returns (listings valued,
    problems). Photos go through the model's tagging network once (cached for later runs)."""
    from ..bundle import load_bundle
    from ..valuation import listing_photo_features
    from ..valuation.model import load_value_model

    model = load_value_model(model_path)
    with engine.connect() as conn:
        listings = _index_listings(conn, model)
        refs = _index_photos(conn)
    if not listings.ids:
        return 0, []
    photos, problems = None, []
    if "photos" in model.models and refs:
        bundle = load_bundle(model.info["tagging_model"])  # the network whose features it was fitted on
        photos, _ = listing_photo_features(bundle, listings.ids, refs, rooms=model.spec.rooms,
                                           network=model.info.get("tagging_network"), progress=progress)
        problems = photos.problems
    estimates = model.predict(listings, photos)
    facts: dict[str, dict[str, str]] = {}  # every listing's old estimate goes; an unvalued one gets none
    for i, e in enumerate(estimates):
        facts[e.listing_id] = {}
        if e.value is None:
            problems.append(f"listing {e.listing_id}: {e.note}")
            continue
        row = e.to_dict(listings.price[i])
        values = {"value": row["value"], "value_low": row["value_low"], "value_high": row["value_high"],
                  "value_basis": e.basis, "value_note": e.note, "price_to_value": row.get("price_to_value"),
                  "value_drivers": ", ".join(d for d in (row["driver_1"], row["driver_2"], row["driver_3"]) if d)}
        facts[e.listing_id] = {name: _text(v) for name, v in values.items() if v is not None and v != ""}

    def write():
        with engine.begin() as conn:
            _write_listings(conn, facts, replace=VALUE_COLUMNS)

    db.retrying(write)
    return sum(e.value is not None for e in estimates), problems


def _text(v) -> str:
    """A value as the listing column's text, which the index reads numbers back from."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
