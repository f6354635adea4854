"""Fuzz targets shared by tests/test_fuzz.py (Hypothesis, bounded, in CI) and tools/fuzz.py (a
longer run by hand that counts executions and keeps what it finds).

Each target takes bytes or text and either returns normally or raises the one error its API
promises (PhotoError for a photo, QueryError for a query). Anything else is a finding.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

from estatelens.data.images import PhotoError, read_photo
from estatelens.data.preprocess import Preprocessing
from estatelens.inference import load_photo
from estatelens.index.search import QueryError, Vocabulary, parse_query

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "TIFF": ".tif", "BMP": ".bmp"}
VOCAB = Vocabulary(["bathroom", "bedroom", "dining_room", "entrance_hall", "exterior", "kitchen", "living_room"],
                   ["balcony", "fireplace"], ["area", "city", "price"])
PRE = Preprocessing(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# The query language's own words and operators, and odd ones, for generated queries.
QUERY_WORDS = ["kitchen", "kök", "fireplace", "balcony", "price", "<", ">=", "!=", "=", "500000", "1e308", "nan", "-",
               "listings", "photos", "room", "corrected", "yes", "no", ":", ",", " ", "0.5", "price<", "area>=1e999",
               "city=Oslo", '"', "without", "not", "\x00", "\ufb01replace", "\u202e", "0x10", "9" * 40]
# Bytes that make parsers take other branches: markers, lengths at their limits.
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xd8", b"\xff\xd9", b"\xff\xc0", b"\xff\xda", b"IDAT",
               b"IHDR", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"VP8 ", b"GIF89a", b"II*\x00"]


def seed_photos() -> dict[str, bytes]:
    """Small valid photos in every format the tagger reads, with the structures parsers branch
    on: EXIF orientation (JPEG), transparency (PNG), a palette (GIF), 16-bit (TIFF)."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = {}
    for fmt in FORMATS:
        buf = io.BytesIO()
        im = base
        kw = {}
        if fmt == "JPEG":
            exif = Image.Exif()
            exif[0x0112] = 6
            kw = {"exif": exif.tobytes(), "quality": 80}
        elif fmt == "PNG":
            im = base.convert("RGBA")
        elif fmt == "GIF":
            im = base.convert("P")
        elif fmt == "TIFF":
            im = Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257))
        im.save(buf, format=fmt, **kw)
        out[fmt] = buf.getvalue()
    return out


def mutate(data: bytes, rnd: random.Random, n: int | None = None) -> bytes:
    """A few of the mutations coverage fuzzers use: flip bits, overwrite with interesting bytes,
    delete, duplicate or insert a chunk, truncate."""
    b = bytearray(data)
    for _ in range(n or rnd.randint(1, 6)):
        if not b:
            b += bytes([rnd.randrange(256)])
        op, i = rnd.randrange(6), rnd.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            v = rnd.choice(INTERESTING)
            b[i:i + len(v)] = v
        elif op == 2:
            del b[i:i + rnd.randint(1, 64)]
        elif op == 3:
            j = rnd.randrange(len(b))
            b[i:i] = b[j:j + rnd.randint(1, 64)]
        elif op == 4:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
        else:
            del b[rnd.randint(1, len(b)):]
    return bytes(b)


def decode_target(data: bytes, suffix: str, tmp: Path) -> str:
    """The tagger's decode path on `data`, from memory and from a file: a usable photo or a
    PhotoError / a status with the reason; the same answer both ways."""
    try:
        im, size = read_photo(io.BytesIO(data), 64)
        assert im.mode == "RGB" and min(im.size) >= 1 and len(size) == 2
        in_memory = "ok"
    except PhotoError as e:
        assert e.reason
        in_memory = "error"
    path = tmp / f"fuzz{suffix}"
    path.write_bytes(data)
    x, _, status, _ = load_photo(str(path), PRE, 64)
    assert isinstance(status, str) and status
    if status == "ok":
        assert x is not None and x.shape == (3, 64, 64) and np.isfinite(x).all()
        assert in_memory == "ok"
    elif in_memory == "ok":  # decodes, but too small for the tagger
        assert status.startswith("too small"), status
    return status


def query_target(text: str) -> str:
    """The search-query parser on `text`: a query it describes, or a QueryError."""
    for level in (None, "photo", "listing"):
        try:
            q = parse_query(text, VOCAB, level)
        except QueryError as e:
            assert str(e)
            continue
        q.describe()
    return "ok"
