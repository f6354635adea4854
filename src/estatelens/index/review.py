"""Human corrections of the index's tags, and their export as training data.

A correction says what a photo's room type is, or whether an attribute is there ("yes" / "no"). It
is stored in its own table, keyed by photo and target, so re-indexing with a newer model never
loses it, and it wins over the model's prediction everywhere: in search, in the page, in exports.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from sqlalchemy import delete, select, update

from ..attributes import NO, YES
from . import db

EXPORT_TARGETS = ("all", db.ROOM_TYPE)


class NotFound(LookupError):
    """No such photo or listing."""


class Conflict(ValueError):
    """The photo's state does not allow it: it could not be tagged, or has no such attribute."""


class BadValue(ValueError):
    """The corrected value is not one the target takes."""


def correct(engine, photo_id: int, target: str, value: str) -> None:
    """Set a correction: target "room_type" with a room type of the index, or an attribute of the
    photo with "yes" or "no". Raises NotFound for an unknown photo, Conflict for a photo that was not
    tagged or has no such attribute, BadValue for a value the target does not take."""
    value = (value or "").strip().lower()
    with engine.begin() as conn:
        photo = conn.execute(select(db.photos.c.id, db.photos.c.status).where(db.photos.c.id == photo_id)).first()
        if photo is None:
            raise NotFound(f"no photo {photo_id} in the index")
        if photo.status != "ok":
            raise Conflict(f"photo {photo_id} could not be tagged ({photo.status}); there is nothing to correct")
        if target == db.ROOM_TYPE:
            rooms = db.meta_list(conn, "classes")
            if value not in rooms:
                raise BadValue(f"{value!r} is not a room type of this index ({', '.join(rooms)})")
        else:
            has = conn.execute(select(db.attributes.c.name).where(db.attributes.c.photo_id == photo_id,
                                                                  db.attributes.c.name == target)).first()
            if has is None:
                raise Conflict(f"{target!r} is neither room_type nor an attribute of photo {photo_id}")
            if value not in (YES, NO):
                raise BadValue(f"an attribute is corrected with 'yes' or 'no', not {value!r}")
        values = {"value": value, "corrected_at": db.now()}
        if conn.execute(update(db.corrections).where(db.corrections.c.photo_id == photo_id,
                                                     db.corrections.c.target == target).values(**values)).rowcount == 0:
            conn.execute(db.corrections.insert().values(photo_id=photo_id, target=target, **values))
        db.apply_corrections(conn, [photo_id])


def uncorrect(engine, photo_id: int, target: str) -> bool:
    """Remove a correction (the model's prediction holds again). False when there was none."""
    with engine.begin() as conn:
        if conn.execute(select(db.photos.c.id).where(db.photos.c.id == photo_id)).first() is None:
            raise NotFound(f"no photo {photo_id} in the index")
        n = conn.execute(delete(db.corrections).where(db.corrections.c.photo_id == photo_id,
                                                      db.corrections.c.target == target)).rowcount
        db.apply_corrections(conn, [photo_id])
    return n > 0


def export_labels(engine, out: str | os.PathLike, target: str = "all") -> dict:
    """Write the corrections as a CSV the trainers read: `path,label,<attribute>...,group`.

    `estatelens train labels.csv` learns room types from `label`; `estatelens train-attribute
    fireplace labels.csv` learns from the `fireplace` column; rows with an empty cell for the target
    are left out by the trainer. With target "room_type", only photos with a room-type correction
    are written. Paths are absolute; group is the listing, so that a listing never straddles two
    splits. Returns counts."""
    if target not in EXPORT_TARGETS:
        with engine.connect() as conn:
            attrs = set(conn.execute(select(db.attributes.c.name).distinct()).scalars())
        if target not in attrs:
            raise ValueError(f"--target {target!r}: use all, room_type or an attribute of the index "
                             f"({', '.join(sorted(attrs)) or 'none'})")
    with engine.connect() as conn:
        rows = conn.execute(select(db.corrections.c.photo_id, db.corrections.c.target, db.corrections.c.value,
                                   db.photos.c.path_key, db.photos.c.listing_id)
                            .join(db.photos, db.photos.c.id == db.corrections.c.photo_id)
                            .order_by(db.photos.c.path_key)).all()
    by_photo: dict[int, dict] = {}
    for r in rows:
        if target not in ("all", r.target):
            continue
        rec = by_photo.setdefault(r.photo_id, {"path": r.path_key, "group": r.listing_id or ""})
        rec["label" if r.target == db.ROOM_TYPE else r.target] = r.value
    attr_cols = sorted({k for rec in by_photo.values() for k in rec} - {"path", "group", "label"})
    cols = ["path", "label", *attr_cols, "group"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for rec in by_photo.values():
            w.writerow({c: rec.get(c, "") for c in cols})
    tmp.replace(out)
    counts = {"photos": len(by_photo), "room_type": sum(1 for r in by_photo.values() if "label" in r)}
    counts.update({a: sum(1 for r in by_photo.values() if a in r) for a in attr_cols})
    return counts


def suggest_for_labelling(engine, n: int = 24, unusual_share: float = 1 / 3) -> list[dict]:
    """Photos whose correction would teach `estatelens adapt` the most, each with the `reason` it
    was picked: "least sure", the lowest room-type probability, taken in turn from each room type
    the model guessed so that one confusing kind of photo does not fill the list; and "unusual",
    the photos least like anything the model was trained on (the highest `unusual` score: a new
    market's kind of photo that no confident guess would bring up), every third place. Corrected
    photos are left out. An index without unusual scores (a bundle with no rehearsal set) gives
    least-sure photos only."""
    from .search import photo_records

    P = db.photos
    uncorrected = ~select(db.corrections.c.photo_id).where(db.corrections.c.photo_id == P.c.id).exists()
    with engine.connect() as conn:
        rooms = [r for (r,) in conn.execute(select(P.c.room_type_predicted).where(P.c.status == "ok")
                                            .group_by(P.c.room_type_predicted)) if r]
        per_room = []
        for room in sorted(rooms):
            per_room.append([i for (i,) in conn.execute(
                select(P.c.id).where(P.c.status == "ok", P.c.room_type_predicted == room, uncorrected)
                .order_by(P.c.room_probability, P.c.id).limit(n))])
        least: list[int] = []  # in turns across room types
        for k in range(n):
            for ranked in per_room:
                if k < len(ranked) and len(least) < n:
                    least.append(ranked[k])
        slots = int(n * unusual_share)
        unusual = [i for (i,) in conn.execute(
            select(P.c.id).where(P.c.status == "ok", P.c.unusual.is_not(None), uncorrected)
            .order_by(P.c.unusual.desc(), P.c.id).limit(n))] if slots else []
        shown_unusual = unusual[:slots]
        shown_least = [i for i in least if i not in shown_unusual][:n - len(shown_unusual)]
        records = {r["id"]: r for r in photo_records(conn, shown_least + shown_unusual)}
    by_probability = sorted((records[i] for i in shown_least), key=lambda r: (r["room_probability"], r["id"]))
    odd_ones = [records[i] for i in shown_unusual]
    out: list[dict] = []
    while by_probability or odd_ones:
        take_unusual = bool(odd_ones) and (len(out) % 3 == 2 or not by_probability)
        rec = odd_ones.pop(0) if take_unusual else by_probability.pop(0)
        out.append({**rec, "reason": "unusual" if take_unusual else "least sure"})
    return out
