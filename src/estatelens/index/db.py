"""The photo index's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Predictions and human corrections are kept apart: `photos.room_type_predicted`, `room_scores` and
`attributes.probability` are what the model said and are rewritten by every re-index;
`corrections` is what a person said and is never touched by indexing. The effective values that
search reads (`photos.room_type`, `photos.room_corrected`, `attributes.value` and `.present`) are derived from
both by `apply_corrections`, after every index batch and every correction, so that a query needs no
join to the corrections.
"""
from __future__ import annotations

import math
import os
import random
import re
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import (Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String,
                        Table, Text, create_engine, delete, event, inspect, select, update)
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, OperationalError
from sqlalchemy.engine import Engine

T = TypeVar("T")

SCHEMA_VERSION = 3  # 2 (2026-12-01): photos.unusual, photos.also, photos.also_probability; 3: the listing checks
ROOM_TYPE = "room_type"  # the correction target for the room type; any other target is an attribute
DEFAULT_THRESHOLD = 0.5  # "yes" for an attribute head that ships no operating threshold

metadata = MetaData()

meta = Table("meta", metadata,
             Column("key", String(64), primary_key=True),
             Column("value", Text, nullable=False))

listings = Table("listings", metadata,
                 Column("id", Text, primary_key=True),
                 Column("key", Text, nullable=False, index=True))  # the id case-folded (normalise)

listing_facts = Table("listing_facts", metadata,
                      Column("listing_id", Text, ForeignKey("listings.id", ondelete="CASCADE"), primary_key=True),
                      Column("name", Text, primary_key=True),
                      Column("num", Float),  # the value as a number where it reads as one
                      Column("text", Text),  # the value as written
                      Column("key", Text),  # the text case-folded in Python (SQL lower() folds ASCII only)
                      Index("ix_listing_facts_name_num", "name", "num"))

photos = Table("photos", metadata,
               Column("id", Integer, primary_key=True, autoincrement=True),
               Column("path_key", Text, nullable=False, unique=True),  # absolute path: identifies the photo
               Column("listing_id", Text, ForeignKey("listings.id", ondelete="SET NULL"), index=True),
               Column("origin", String(16), nullable=False, default="index"),  # "index" or "upload"
               Column("status", Text, nullable=False),  # "ok" or why the file could not be tagged
               Column("room_type_predicted", Text),
               Column("room_probability", Float),  # the model's probability of room_type_predicted
               Column("room_type", Text, index=True),  # effective: the correction, else the prediction
               Column("room_corrected", Boolean, nullable=False, default=False),
               Column("unusual", Float),  # how unlike the model's training photos (ood.py); None: cannot tell
               Column("also", Text, index=True),  # a second room type the photo shows (open plan, also.py)
               Column("also_probability", Float),
               # The listing checks (index --checks; checks/): NULL where they were not run.
               Column("quality", String(8), index=True),  # "pass" or "fail"
               Column("quality_reasons", Text),
               Column("sharpness", Float),
               Column("exposure", Float),
               Column("tilt_degrees", Float),
               Column("colour_cast", Float),
               Column("watermark", String(4), index=True),  # "yes" or "no" (watermarks/detector.py)
               Column("watermark_probability", Float),
               Column("watermark_box", Text),  # x0 y0 x1 y1 as fractions of the photo
               Column("faces", Integer),  # NULL: not looked for (index --faces)
               Column("face_boxes", Text),
               Column("hashes", Text),  # the photo's four pHashes, hex, ";"-joined (checks/duplicates.py)
               Column("duplicate_group", Integer, index=True),  # near copies in the index share a number
               Column("width", Integer),
               Column("height", Integer),
               Column("file_size", Integer),
               Column("file_mtime", Float),
               Column("model", Text),
               Column("model_version", String(64)),
               Column("tagged_at", DateTime(timezone=True)))

room_scores = Table("room_scores", metadata,
                    Column("photo_id", Integer, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
                    Column("room", Text, primary_key=True),
                    Column("probability", Float, nullable=False),
                    Index("ix_room_scores_room_probability", "room", "probability"))

attributes = Table("attributes", metadata,
                   Column("photo_id", Integer, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
                   Column("name", Text, primary_key=True),
                   Column("probability", Float, nullable=False),  # the model's
                   Column("threshold", Float, nullable=False),  # the head's operating threshold (or 0.5)
                   Column("value", Float, nullable=False),  # effective: 1 / 0 when corrected, else probability
                   Column("present", Boolean, nullable=False),  # effective yes: value >= threshold
                   Index("ix_attributes_name_present_value", "name", "present", "value"))

corrections = Table("corrections", metadata,
                    Column("photo_id", Integer, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
                    Column("target", Text, primary_key=True),  # "room_type" or an attribute name
                    Column("value", Text, nullable=False),  # a room type, or "yes" / "no"
                    Column("corrected_at", DateTime(timezone=True), nullable=False))


def database_url(db: str | os.PathLike) -> str:
    """`listings.db` (a file: SQLite) or a URL (`postgresql://user:pw@host/name`, `sqlite:///x.db`).
    A plain postgresql:// URL is driven by psycopg 3."""
    text = str(db)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    return text


def connect(db: str | os.PathLike, create: bool = True) -> Engine:
    """An engine on the index, with the tables created when missing (`create`), or an error naming
    the database when it holds no estatelens index."""
    url = database_url(db)
    if url.startswith("sqlite:///") and not create:
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such index (build one with `estatelens index PHOTOS --db {db}`)")
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except ImportError as e:
        raise ImportError(f"{_safe_url(url)}: the database driver is missing ({e}); "
                          f"pip install 'psycopg[binary]' for PostgreSQL") from None
    except ArgumentError as e:  # includes an unknown dialect (foo://)
        raise ValueError(f"{_safe_url(url)}: not a database this can open ({e}); give a SQLite file "
                         f"or a postgresql:// URL") from None
    try:
        if create:
            _create_tables(engine)
        elif not inspect(engine).has_table("photos"):
            raise FileNotFoundError(f"{_safe_url(url)}: holds no estatelens index "
                                    f"(build one with `estatelens index PHOTOS --db ...`)")
        _upgrade(engine)
    except DatabaseError as e:  # cannot connect, not a database file, ...
        raise ValueError(f"{_safe_url(url)}: cannot open the database: {str(e.orig).strip()}") from None
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            encoding = conn.exec_driver_sql("SHOW server_encoding").scalar()
        if encoding != "UTF8":
            raise ValueError(f"{_safe_url(url)}: the database's encoding is {encoding}; the index needs UTF8 "
                             f"(CREATE DATABASE ... ENCODING 'UTF8')")
    return engine


def _create_tables(engine: Engine, attempts: int = 6) -> None:
    """The tables and the schema row, when missing. Two processes that open a new index at once
    (two `index` runs on one file or database) race here: the loser sees "already exists" or a
    duplicate key, and tries again, by which time the winner's tables are there to be found."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            with engine.begin() as conn:
                if conn.execute(select(meta.c.value).where(meta.c.key == "schema")).scalar() is None:
                    conn.execute(meta.insert().values(key="schema", value=str(SCHEMA_VERSION)))
            return
        except DatabaseError as e:
            text = str(e.orig).lower()
            lost_race = isinstance(e, IntegrityError) or "already exists" in text or "duplicate" in text
            if not lost_race or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


# Columns added since schema 1, each (table, column, SQL type): an index built by an older version
# gains them, empty, when it is next opened; re-indexing fills them.
_ADDED_COLUMNS = [("photos", "unusual", "FLOAT"), ("photos", "also", "TEXT"), ("photos", "also_probability", "FLOAT"),
                  ("photos", "quality", "VARCHAR(8)"), ("photos", "quality_reasons", "TEXT"),
                  ("photos", "sharpness", "FLOAT"), ("photos", "exposure", "FLOAT"), ("photos", "tilt_degrees", "FLOAT"),
                  ("photos", "colour_cast", "FLOAT"), ("photos", "faces", "INTEGER"), ("photos", "face_boxes", "TEXT"),
                  ("photos", "hashes", "TEXT"), ("photos", "duplicate_group", "INTEGER"),
                  ("photos", "watermark", "VARCHAR(4)"), ("photos", "watermark_probability", "FLOAT"),
                  ("photos", "watermark_box", "TEXT")]


def _upgrade(engine: Engine) -> None:
    """Bring an index written by an older estatelens up to SCHEMA_VERSION (ALTER TABLE ... ADD
    COLUMN, the same on SQLite and PostgreSQL). Two processes upgrading at once: the loser's
    "duplicate column" is taken as done."""
    have = {t: {c["name"] for c in inspect(engine).get_columns(t)} for t in {t for t, _, _ in _ADDED_COLUMNS}}
    missing = [(t, c, sql) for t, c, sql in _ADDED_COLUMNS if c not in have[t]]
    for table, column, sql in missing:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql}")
        except DatabaseError as e:
            if "duplicate" not in str(e.orig).lower() and "already exists" not in str(e.orig).lower():
                raise
    added = {(t, c) for t, c, _ in missing}
    for table in {t for t, _ in added}:  # the indexes the new columns have in a new index
        for idx in metadata.tables[table].indexes:
            if any((table, col.name) in added for col in idx.columns):
                idx.create(engine, checkfirst=True)
    if missing:
        with engine.begin() as conn:
            conn.execute(update(meta).where(meta.c.key == "schema").values(value=str(SCHEMA_VERSION)))


# What another writer of the same index at the same moment causes, and a retry of the whole
# transaction mends: SQLite's lock (a transaction that read before it wrote cannot wait for the
# lock in WAL mode), PostgreSQL's deadlock and serialisation failures, and a row inserted by the
# other writer between our read and our insert (the retry then finds and updates it).
_TRANSIENT = ("database is locked", "deadlock detected", "could not serialize", "duplicate key", "unique constraint")


def retrying(transaction: Callable[[], T], attempts: int = 20) -> T:
    """Run `transaction` (which opens and commits its own transaction), again after a short wait
    when it failed only because another process wrote the index at the same time."""
    for attempt in range(attempts):
        try:
            return transaction()
        except (OperationalError, IntegrityError) as e:
            if attempt == attempts - 1 or not any(t in str(e.orig).lower() for t in _TRANSIENT):
                raise
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as written
        return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # the web app reads while an index run writes
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def normalise(text: str) -> str:
    """How words, listing ids and text columns are compared: Unicode NFC, case-folded in Python
    (SQL lower() folds only ASCII on SQLite: Örebro would not match örebro)."""
    return unicodedata.normalize("NFC", text).casefold().strip()


_THOUSANDS = re.compile(r"^[+-]?\d{1,3}([,\u00a0 ]\d{3})+(\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def as_number(text: str | None) -> float | None:
    """A listing value as a number, where it reads as one: 500000, 1,250,000 and 1 250 000 (digit
    groups of three), 72.5 and the Swedish 72,5 (a comma followed by other than three digits)."""
    if text is None:
        return None
    t = text.strip()
    if _THOUSANDS.match(t):
        t = re.sub(r"[,\u00a0 ]", "", t)
    elif _DECIMAL_COMMA.match(t):
        t = t.replace(",", ".")
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def now() -> datetime:
    return datetime.now(timezone.utc)


def get_meta(conn, key: str, default: str | None = None) -> str | None:
    value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
    return default if value is None else value


def set_meta(conn, key: str, value: str) -> None:
    if conn.execute(update(meta).where(meta.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(meta.insert().values(key=key, value=value))


def meta_list(conn, key: str) -> list[str]:
    return [v for v in (get_meta(conn, key) or "").split(",") if v]


def add_to_meta_list(conn, key: str, names: list[str]) -> None:
    """Keep meta[key] the sorted union of the names ever written (attributes, listing columns): what
    search resolves words against, without scanning the tables on every query."""
    have = meta_list(conn, key)
    union = sorted(set(have) | set(names))
    if union != have:
        set_meta(conn, key, ",".join(union))


IN_LIST = 500  # ids per IN (...) list: SQLite and PostgreSQL bind-parameter limits stay far off


def in_lists(ids: list) -> list[list]:
    """`ids` cut into lists short enough for one IN (...)."""
    return [ids[i:i + IN_LIST] for i in range(0, len(ids), IN_LIST)]


def apply_corrections(conn, photo_ids: list[int]) -> None:
    """Recompute the effective room type and attribute values of these photos from their
    predictions and corrections."""
    for ids in in_lists(photo_ids):
        conn.execute(update(photos).where(photos.c.id.in_(ids))
                     .values(room_type=photos.c.room_type_predicted, room_corrected=False))
        conn.execute(update(attributes).where(attributes.c.photo_id.in_(ids))
                     .values(value=attributes.c.probability, present=attributes.c.probability >= attributes.c.threshold))
        rows = conn.execute(select(corrections.c.photo_id, corrections.c.target, corrections.c.value)
                            .where(corrections.c.photo_id.in_(ids))).all()
        for photo_id, target, value in rows:
            if target == ROOM_TYPE:
                conn.execute(update(photos).where(photos.c.id == photo_id).values(room_type=value, room_corrected=True))
            else:
                conn.execute(update(attributes).where(attributes.c.photo_id == photo_id, attributes.c.name == target)
                             .values(value=1.0 if value == "yes" else 0.0, present=value == "yes"))


def delete_photo_predictions(conn, photo_ids: list[int]) -> None:
    for ids in in_lists(photo_ids):
        conn.execute(delete(room_scores).where(room_scores.c.photo_id.in_(ids)))
        conn.execute(delete(attributes).where(attributes.c.photo_id.in_(ids)))
