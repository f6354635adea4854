"""`estatelens index`: tag photos into the index, resumably, with the listing each belongs to.

A photo's listing comes from a listings CSV (`path,listing_id` plus any listing columns such as
price or area; `house_id` is read as the listing id too) or, without one, from the folder layout:
`PATH/<listing>/photo.jpg`. A second CSV (`--facts`) can add listing columns keyed by listing id.

The index is its own journal: every batch is committed as it is tagged, and a photo already in the
index, tagged by the same model from a file of the same size and modification time, is not tagged
again. An interrupted run therefore resumes by running the same command, and re-indexing a folder
after adding photos tags only the new ones. Re-indexing with another model re-tags every photo and
keeps the human corrections (they live in their own table; see db.py).
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import delete, func, insert, select, update
from tqdm import tqdm

from ..attributes import graph_fingerprint
from ..bundle import ModelBundle
from ..data.dataset import GROUP_COLUMNS
from ..data.images import is_image_name
from ..tagging.core import TagRow, display_path, iter_input_paths, path_key, tag_photos
from . import db

LISTING_ID_COLUMNS = tuple(c for c in GROUP_COLUMNS if c != "group") + ("listing",)
WRITE_EVERY = 64  # photos per transaction


@dataclass
class Listings:
    """Photo -> listing, and listing -> columns, read from CSV files."""

    photo_listing: dict[str, str] = field(default_factory=dict)  # path_key -> listing id
    facts: dict[str, dict[str, str]] = field(default_factory=dict)  # listing id -> column -> value
    paths: list[str] = field(default_factory=list)  # the CSV's photos, in its order
    warnings: list[str] = field(default_factory=list)


def read_listings(csv_path: str | os.PathLike | None, facts_path: str | os.PathLike | None = None) -> Listings:
    """Read `path,listing_id[,columns...]` (paths relative to the CSV's folder) and optionally a
    facts CSV `listing_id,columns...`. A column whose value differs between photos of the same
    listing (a per-photo label such as `room`) is not a listing column: it is left out, with a warning."""
    out = Listings()
    if csv_path is not None:
        rows, id_col, cols = _read_csv(csv_path, need_path=True)
        base = Path(csv_path).parent
        varying: set[str] = set()
        for i, row in rows:
            listing = row[id_col]
            if not listing:
                raise ValueError(f"{csv_path} row {i}: empty {id_col}")
            full = Path(row["path"]) if Path(row["path"]).is_absolute() else base / row["path"]
            out.paths.append(str(full))
            out.photo_listing[path_key(str(full))] = listing
            known = out.facts.setdefault(listing, {})
            for c in cols:
                if c in known and known[c] != row[c]:
                    varying.add(c)
                known.setdefault(c, row[c])
        for c in sorted(varying):
            out.warnings.append(f"{csv_path}: column {c!r} differs between photos of one listing, so it is not "
                                f"a listing column; left out")
            for f in out.facts.values():
                f.pop(c, None)
    if facts_path is not None:
        rows, id_col, cols = _read_csv(facts_path, need_path=False)
        for i, row in rows:
            if not row[id_col]:
                raise ValueError(f"{facts_path} row {i}: empty {id_col}")
            out.facts.setdefault(row[id_col], {}).update({c: row[c] for c in cols})
    return out


def _read_csv(path, need_path: bool) -> tuple[list[tuple[int, dict]], str, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CSV file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        names = [(n or "").strip() for n in reader.fieldnames or []]
        lower = [n.lower() for n in names]
        id_col = next((c for c in LISTING_ID_COLUMNS if c in lower), None)
        if id_col is None or (need_path and "path" not in lower):
            want = "path,listing_id[,columns...]" if need_path else "listing_id,columns..."
            raise ValueError(f"{path}: needs columns {want} (house_id is read as listing_id); found {names}")
        cols = [n for n in lower if n and n not in ("path", id_col)]
        for c in cols:
            _check_column_name(c, path)
        rows = []
        for i, raw in enumerate(reader, start=2):
            row = {lower[k]: (v or "").strip() for k, v in enumerate(raw.get(n) for n in reader.fieldnames)}
            if need_path and not row.get("path"):
                raise ValueError(f"{path} row {i}: empty path")
            rows.append((i, row))
    return rows, id_col, cols


def _check_column_name(name: str, where) -> None:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"{where}: listing column {name!r}: use letters, digits and _ so that it can be "
                         f"searched (price<500000)")


@dataclass
class IndexSummary:
    n_found: int = 0
    n_tagged: int = 0
    n_unchanged: int = 0
    n_unusable: int = 0
    n_not_images: int = 0
    n_listings: int = 0
    n_duplicate_groups: int | None = None  # with checks: near-duplicate groups in the whole index
    seconds: float = 0.0
    unusable_examples: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def model_identity(bundle: ModelBundle) -> tuple[str, str]:
    """(name, version): the bundle folder's name and a fingerprint of its graph, its adapted room
    head (`estatelens adapt`) and its attribute heads."""
    import hashlib

    h = hashlib.sha1(graph_fingerprint(bundle.onnx_path).encode())
    if bundle.room_head is not None:
        h.update(b"room head:" + bundle.room_head.weight.tobytes() + bundle.room_head.bias.tobytes())
    for head in bundle.attributes:
        h.update(f"{head.name}:{head.threshold}:{head.bias}:{head.weight.tobytes().hex()[:64]}".encode())
    return bundle.path.name.removesuffix(".estatelens"), h.hexdigest()[:16]


def index_photos(bundle: ModelBundle, inputs: Iterable[str], engine, *, listings: Listings | None = None,
                 retag: bool = False, batch_size: int = 16, workers: int = 2, progress: bool = True,
                 origin: str = "index", checks=None, log=print) -> IndexSummary:
    """Tag every photo under `inputs` (and every photo of the listings CSV) into the index.
    `checks` (a checks.photo.PhotoChecker): run the listing checks too, store their columns and
    regroup the index's near duplicates; photos already indexed without them are checked now."""
    listings = listings or Listings()
    summary = IndexSummary(warnings=list(listings.warnings))
    t0 = time.time()
    model, version = model_identity(bundle)

    def write_meta() -> None:
        with engine.begin() as conn:
            _write_listings(conn, listings.facts)
            db.set_meta(conn, "classes", ",".join(bundle.classes))
            db.set_meta(conn, "model", model)
            db.set_meta(conn, "model_version", version)
            db.add_to_meta_list(conn, "attributes", [h.name for h in bundle.attributes])

    db.retrying(write_meta)

    inputs = list(inputs)
    found = []
    for p, listing in photos_with_listing(inputs, listings):
        if is_image_name(p) or not os.path.exists(p):  # a missing photo is a row that says so
            found.append((p, listing))
        else:
            summary.n_not_images += 1  # the CSV beside the photos, a README, ...
    summary.n_found = len(found)
    if not found:
        raise FileNotFoundError(f"no photos found in {', '.join(map(str, inputs)) or 'the listings CSV'}")
    # A photo checked as asked (quality, and faces and watermarks where asked for) need not be checked again.
    checked = db.photos.c.quality.is_not(None)
    if checks is not None and checks.faces:
        checked = checked & db.photos.c.faces.is_not(None)
    if checks is not None and checks.watermarks:
        checked = checked & db.photos.c.watermark.is_not(None)
    with engine.connect() as conn:
        known = {k: (pid, size, mtime, ver, lst, done) for pid, k, size, mtime, ver, lst, done in conn.execute(
            select(db.photos.c.id, db.photos.c.path_key, db.photos.c.file_size, db.photos.c.file_mtime,
                   db.photos.c.model_version, db.photos.c.listing_id, checked))}
    todo, relink = [], []
    for path, listing in found:
        key = path_key(path)
        stat = _stat(path)
        k = known.get(key)
        fresh = k is not None and k[3] == version and stat is not None and (k[1], k[2]) == stat
        if not retag and fresh and (checks is None or k[5]):
            summary.n_unchanged += 1
            if listing is not None and listing != k[4]:
                relink.append((k[0], listing))
            continue
        todo.append((path, listing, stat))
    if relink:
        def write_links() -> None:
            with engine.begin() as conn:
                _ensure_listings(conn, {lst for _, lst in relink})
                for pid, lst in relink:
                    conn.execute(update(db.photos).where(db.photos.c.id == pid).values(listing_id=lst))

        db.retrying(write_links)
    if summary.n_unchanged:
        log(f"{summary.n_unchanged} of {summary.n_found} photos are already in the index from this model "
            f"(unchanged files): not tagged again")

    info = {path_key(p): (lst, st) for p, lst, st in todo}
    thresholds = {h.name: h.threshold for h in bundle.attributes}
    rows = tag_photos(bundle, (p for p, _, _ in todo), batch_size=batch_size, workers=workers, checks=checks)
    pending: list[TagRow] = []
    with tqdm(total=len(todo), desc="indexing", unit="photo", disable=not progress, smoothing=0.1) as bar:
        for row in rows:
            pending.append(row)
            bar.update(1)
            if not row.ok:
                summary.n_unusable += 1
                if len(summary.unusable_examples) < 10:
                    summary.unusable_examples.append((row.path, row.status))
            if len(pending) >= WRITE_EVERY:
                write_rows(engine, pending, info, model, version, thresholds, origin)
                pending = []
        write_rows(engine, pending, info, model, version, thresholds, origin)
    summary.n_tagged = len(todo) - summary.n_unusable
    if checks is not None:
        summary.n_duplicate_groups = group_duplicates(engine)
    if todo and engine.dialect.name == "postgresql":
        # Fresh statistics (PostgreSQL's keep the most common values, so a rare attribute is seen as
        # rare). Not on SQLite: its statistics average over values, and made it scan every photo
        # for "balcony" instead of seeking the few that have one (52 ms against 0.1 ms at 71,200 photos).
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    with engine.connect() as conn:
        summary.n_listings = conn.execute(select(func.count()).select_from(db.listings)).scalar()
    summary.seconds = time.time() - t0
    return summary


def group_duplicates(engine) -> int:
    """Number the index's near-duplicate photos into groups (photos.duplicate_group; NULL for a
    photo without a near copy), from the pHashes the checks stored: every photo against every
    other, so a photo indexed today is found again in a listing indexed last month. Returns the
    number of groups."""
    from ..checks.duplicates import hash_groups

    P = db.photos
    with engine.connect() as conn:
        rows = conn.execute(select(P.c.id, P.c.path_key, P.c.hashes).where(P.c.status == "ok", P.c.hashes.is_not(None))
                            .order_by(P.c.id)).all()
    by_group: dict[int, list[int]] = {}
    for i, g in hash_groups([r.path_key for r in rows], [r.hashes.split(";") for r in rows]).items():
        by_group.setdefault(g, []).append(rows[i].id)

    def write() -> None:
        with engine.begin() as conn:
            conn.execute(update(P).where(P.c.duplicate_group.is_not(None)).values(duplicate_group=None))
            for g, ids in by_group.items():
                for chunk in db.in_lists(ids):
                    conn.execute(update(P).where(P.c.id.in_(chunk)).values(duplicate_group=g))

    db.retrying(write)
    return len(by_group)


def checks_held(engine) -> tuple[bool, bool, bool]:
    """Which listing checks this index holds: (quality and duplicates: any photo checked, faces: any
    photo looked at for faces, watermarks: the same), what a photo added later, such as an
    upload, is checked for, so that it reads like its neighbours."""
    P = db.photos
    with engine.connect() as conn:
        def any_(column) -> bool:
            return conn.execute(select(P.c.id).where(column.is_not(None)).limit(1)).first() is not None

        return any_(P.c.quality), any_(P.c.faces), any_(P.c.watermark)


def link_duplicates(engine, photo_id: int) -> int | None:
    """Put one newly added photo into the index's duplicate groups without regrouping the rest: it
    is compared with every other checked photo (one row against all, by the rule `group_duplicates`
    uses), joins the group of its near copies (merging their groups where it links several) or
    starts a new one with them. Returns its group, or None without a near copy. The next
    `estatelens index --checks` renumbers all groups as usual."""
    import numpy as np

    from ..checks.duplicates import HASH_ONLY_BITS, hash_distance, is_duplicate

    P = db.photos
    with engine.connect() as conn:
        mine = conn.execute(select(P.c.hashes).where(P.c.id == photo_id)).scalar()
        if not mine:
            return None
        rows = conn.execute(select(P.c.id, P.c.hashes, P.c.duplicate_group)
                            .where(P.c.status == "ok", P.c.hashes.is_not(None), P.c.id != photo_id)).all()
        if not rows:
            return None
        h = np.array([[int(x, 16) for x in r.hashes.split(";")] for r in rows], dtype=np.uint64)
        me = np.array([int(x, 16) for x in mine.split(";")], dtype=np.uint64)
        hit = is_duplicate(hash_distance(me[None, :], h), None, HASH_ONLY_BITS)
        copies = [rows[i] for i in np.flatnonzero(hit)]
        if not copies:
            return None
        groups = sorted({r.duplicate_group for r in copies if r.duplicate_group is not None})
    group = groups[0] if groups else None

    def write() -> None:
        nonlocal group
        with engine.begin() as conn:
            if not groups:  # a new number, taken in the transaction that uses it
                group = (conn.execute(select(func.max(P.c.duplicate_group))).scalar() or 0) + 1
            if len(groups) > 1:
                conn.execute(update(P).where(P.c.duplicate_group.in_(groups[1:])).values(duplicate_group=group))
            ids = [photo_id] + [r.id for r in copies]
            for chunk in db.in_lists(ids):
                conn.execute(update(P).where(P.c.id.in_(chunk)).values(duplicate_group=group))

    db.retrying(write)
    return group


def photos_with_listing(inputs: list[str], listings: Listings) -> Iterator[tuple[str, str | None]]:
    """(path, listing id or None) for the CSV's photos, then for every file under `inputs` (each once)."""
    seen: set[str] = set()
    for p in listings.paths:
        key = path_key(p)
        if key not in seen:
            seen.add(key)
            yield p, listings.photo_listing.get(key)
    for item in inputs:
        root = Path(item)
        for p in iter_input_paths([item]):
            key = path_key(p)
            if key in seen:
                continue
            seen.add(key)
            listing = listings.photo_listing.get(key)
            if listing is None and root.is_dir():
                rel = Path(p).relative_to(root).parts
                listing = display_path(rel[0]) if len(rel) > 1 else None  # PATH/<listing>/photo.jpg
            yield p, listing


def _stat(path: str) -> tuple[int, float] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime


def _ensure_listings(conn, ids: set[str]) -> None:
    ids = {i for i in ids if i is not None}
    if not ids:
        return
    have = set()
    id_list = sorted(ids)
    for chunk in db.in_lists(id_list):
        have.update(conn.execute(select(db.listings.c.id).where(db.listings.c.id.in_(chunk))).scalars())
    new = [{"id": i, "key": db.normalise(i)} for i in id_list if i not in have]
    if new:
        conn.execute(insert(db.listings), new)


def _write_listings(conn, facts: dict[str, dict[str, str]], replace: Iterable[str] | None = None) -> None:
    """Store listing columns as text (and as a number where they read as one). A listing's earlier
    columns are replaced: all of them, or only those named in `replace` (a value model's)."""
    if not facts:
        return
    _ensure_listings(conn, set(facts))
    ids = sorted(facts)
    for chunk in db.in_lists(ids):
        which = db.listing_facts.c.listing_id.in_(chunk)
        if replace is not None:
            which = which & db.listing_facts.c.name.in_(list(replace))
        conn.execute(delete(db.listing_facts).where(which))
    values = [{"listing_id": lid, "name": name, "num": db.as_number(text), "text": text, "key": db.normalise(text)}
              for lid in ids for name, text in facts[lid].items() if text != ""]
    if values:
        conn.execute(insert(db.listing_facts), values)
        db.add_to_meta_list(conn, "listing_columns", sorted({v["name"] for v in values}))


def write_rows(engine, rows: list[TagRow], info: dict, model: str, version: str,
               thresholds: dict[str, float | None], origin: str = "index") -> list[int]:
    """Store tagged rows in one transaction (insert or update by path), then re-apply corrections.
    Returns the photos' ids in the order of `rows`. Another process writing the same index at once
    makes it retry the transaction (db.retrying)."""
    if not rows:
        return []
    return db.retrying(lambda: _write_rows_once(engine, rows, info, model, version, thresholds, origin))


def _check_values(row: TagRow) -> dict:
    """The listing checks' columns of a row, for the photos table (none without checks: a re-index
    without --checks keeps what an earlier run with them found)."""
    from ..checks.photo import HASHES

    c = row.checks
    if not c:
        return {}
    keep = ("quality", "quality_reasons", "sharpness", "exposure", "tilt_degrees", "colour_cast", "faces", "face_boxes",
            "watermark_probability", "watermark", "watermark_box")
    out = {k: c[k] for k in keep if k in c}
    if c.get(HASHES):
        out["hashes"] = ";".join(c[HASHES])
    return out


def _write_rows_once(engine, rows: list[TagRow], info: dict, model: str, version: str,
                     thresholds: dict[str, float | None], origin: str) -> list[int]:
    stamp = db.now()
    ids = []
    with engine.begin() as conn:
        keys = [path_key(r.file) for r in rows]
        existing = dict(conn.execute(select(db.photos.c.path_key, db.photos.c.id).where(db.photos.c.path_key.in_(keys))).all())
        _ensure_listings(conn, {info.get(k, (None, None))[0] for k in keys})
        for row, key in zip(rows, keys):
            listing, stat = info.get(key, (None, None))
            # The model's best room type, even where the tagger would say "uncertain": the index
            # keeps every probability, and search ranks by them.
            best = row.top[0][0] if row.ok else None
            values = {"listing_id": listing, "status": row.status,
                      "room_type_predicted": best, "room_probability": row.probability, "room_type": best,
                      "room_corrected": False, "unusual": None if row.unusual is None else float(row.unusual),
                      "also": row.also, "also_probability": row.also_probability, **_check_values(row),
                      "width": row.width, "height": row.height,
                      "file_size": stat[0] if stat else None, "file_mtime": stat[1] if stat else None,
                      "model": model, "model_version": version, "tagged_at": stamp, "origin": origin}
            if key in existing:
                pid = existing[key]
                if listing is None:
                    values.pop("listing_id")  # keep a listing given by an earlier run or upload
                conn.execute(update(db.photos).where(db.photos.c.id == pid).values(**values))
            else:
                pid = conn.execute(insert(db.photos).values(path_key=key, **values)).inserted_primary_key[0]
            ids.append(pid)
        db.delete_photo_predictions(conn, ids)
        scores, attrs = [], []
        for row, pid in zip(rows, ids):
            if not row.ok:
                continue
            scores += [{"photo_id": pid, "room": c, "probability": p} for c, p in (row.scores or {}).items()]
            for name, p in (row.attributes or {}).items():
                threshold = thresholds.get(name)
                threshold = db.DEFAULT_THRESHOLD if threshold is None else threshold
                attrs.append({"photo_id": pid, "name": name, "probability": p, "value": p, "threshold": threshold,
                              "present": p >= threshold})
        if scores:
            conn.execute(insert(db.room_scores), scores)
        if attrs:
            conn.execute(insert(db.attributes), attrs)
        db.apply_corrections(conn, ids)
    return ids
