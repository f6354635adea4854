"""Listing facts for valuation: one row per listing from a CSV, numbers and categories told apart,
and every unusable value reported by listing rather than stopping the run."""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .photos import id_column

PRICE_COLUMNS = ("price", "price_usd", "price_eur", "price_sek", "pris", "sale_price", "asking_price")
# Numbers that name a place or a thing, not an amount: read as categories.
CATEGORY_HINTS = ("zip", "postcode", "postal", "postnummer", "city", "district", "municipality", "region",
                  "code", "type", "id")  # a word of the column name that starts with one of these
NUMERIC_SHARE = 0.9  # a column is numeric when this share of its filled values read as numbers


def to_number(text: str | None) -> float | None:
    """'1 249 000', '1,249,000', '3.5' -> a float; '' or anything else -> None."""
    if text is None:
        return None
    t = text.strip().replace("\u00a0", "").replace(" ", "").replace(",", "")
    if not t:
        return None
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@dataclass
class Listings:
    """Listings as read: ids, price (NaN where missing or not a number), and fact columns."""

    ids: list[str]
    price: np.ndarray
    numeric: dict[str, np.ndarray]  # column -> float values (NaN where missing)
    categorical: dict[str, list[str | None]]  # column -> text values (None where missing)
    id_column: str
    price_column: str | None
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: Sequence[int]) -> "Listings":
        rows = list(rows)
        return Listings([self.ids[i] for i in rows], self.price[rows],
                        {k: v[rows] for k, v in self.numeric.items()},
                        {k: [v[i] for i in rows] for k, v in self.categorical.items()},
                        self.id_column, self.price_column, list(self.problems))


def read_listings(path: str | os.PathLike, *, id_col: str | None = None, price_col: str | None = None,
                  categorical: Sequence[str] = (), numeric: Sequence[str] | None = None,
                  need_price: bool = True) -> Listings:
    """A listings CSV: an id column, a price column and fact columns. A fact column is numeric when
    at least 90 % of its filled values read as numbers and its name does not say it is a code
    (zipcode, city, type...); `categorical` and `numeric` override that. With `numeric` given (a
    fitted model's columns), the same split as at fitting time is used."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if not header:
        raise ValueError(f"{path}: empty CSV (expected a header with an id and a price column)")
    idc = id_column(header, id_col, path)
    pc = price_col or next((c for c in PRICE_COLUMNS if c in header), None)
    if price_col and price_col not in header:
        raise ValueError(f"{path}: no column '{price_col}' (columns: {', '.join(header)})")
    if pc is None and need_price:
        raise ValueError(f"{path}: no price column ({', '.join(PRICE_COLUMNS)}); name it with --price")
    facts = [c for c in header if c not in (idc, pc)]
    unknown = [c for c in categorical if c not in facts]
    if unknown:
        raise ValueError(f"{path}: --categorical names no fact column: {', '.join(unknown)}")
    problems: list[str] = []
    ids, seen = [], set()
    keep = []
    for n, r in enumerate(rows, start=2):
        lid = (r.get(idc) or "").strip()
        if not lid:
            problems.append(f"{path}:{n}: no listing id; row skipped")
            continue
        if lid in seen:
            problems.append(f"{path}:{n}: listing {lid} appears again; the first row is used")
            continue
        seen.add(lid)
        ids.append(lid)
        keep.append(r)
    price = np.full(len(keep), np.nan)
    if pc:
        for i, r in enumerate(keep):
            text = (r.get(pc) or "").strip()
            v = to_number(text)
            if v is None or v <= 0:
                if need_price:
                    why = "no price" if not text else f"price '{text}' is not a positive number"
                    problems.append(f"listing {ids[i]}: {why}")
            else:
                price[i] = v
    num_cols: dict[str, np.ndarray] = {}
    cat_cols: dict[str, list] = {}
    for c in facts:
        values = [(r.get(c) or "").strip() for r in keep]
        filled = [v for v in values if v]
        numbers = [to_number(v) for v in values]
        if numeric is not None:
            is_num = c in numeric
        else:
            share = sum(x is not None for x in numbers) / max(1, len(filled))
            hinted = any(w.startswith(CATEGORY_HINTS) for w in re.split(r"[^a-z0-9]+", c.lower()))
            is_num = c not in categorical and share >= NUMERIC_SHARE and not hinted and bool(filled)
        if is_num:
            num_cols[c] = np.array([np.nan if x is None else x for x in numbers], dtype=float)
            for lid, v, x in zip(ids, values, numbers):
                if v and x is None:
                    problems.append(f"listing {lid}: {c} '{v}' is not a number; read as missing")
        else:
            cat_cols[c] = [v or None for v in values]
    return Listings(ids, price, num_cols, cat_cols, idc, pc, problems)
