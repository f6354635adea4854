"""Search the photo index: free words, structured filters, photo or listing level, ranked, paged.

A query is words and filters, in any order:

- words name room types and attributes, in English or Swedish, with synonyms ("kök", "kitchens",
  "tiled stove", "balkong"): `kitchen fireplace` finds kitchens in which the fireplace head says yes;
  several room words at photo level mean any of them (`kitchen bathroom`);
- filters are `field op value` with op one of = != < <= > >= (`room=kitchen`, `balcony>=0.9`,
  `fireplace=no`, `price<500000`, `listing=12`, `corrected=yes`); a field is `room`, an attribute,
  `listing`, `corrected`, or a listing column (`pris` and `boarea` are read as price and area, and a
  column named `price_usd` answers to `price` where no column is called `price`; with a value
  model, `value<500000` and `price/value<0.9` filter on the estimate);
- the listing checks, where the index was built with `--checks`: `quality=fail` (or `=pass`),
  `faces>0`, `watermark=yes` (or `=no`, or on its probability: `watermark>0.8`; with
  `--watermarks`), and `duplicates` (a photo with a near copy anywhere in the index;
  `duplicates=across`: one whose copy is in another listing, a sign of a copied listing);
- "without", "no", "utan" before a word negate it (`kitchen without fireplace`);
- a word such as "listings", "houses", "homes" or "bostäder" (or level="listing") asks for
  listings instead of photos: each word and photo filter must be met by some photo of the listing
  (`listings with a balcony and a fireplace`), and a negative one by none of them (`listings
  without a balcony` has no photo with one; `listings fireplace<0.2` none with fireplace>=0.2).

Results are ranked by confidence: a photo's score is the product of its probabilities for the terms
asked (the room type's probability, each attribute's probability; 1 or 0 where a person corrected
it); a listing's is the product over terms of its best photo's. Words that name nothing estatelens
tags ("good", "condition") are returned in `ignored`, never silently dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timezone

from sqlalchemy import and_, case, exists, false, func, literal, or_, select, true

from . import db
from .values import VALUE_COLUMNS
from .db import as_number, normalise

ROOM_WORDS = {
    "bathroom": ["bathroom", "bath", "toilet", "wc", "washroom", "restroom", "shower room", "shower",
                 "badrum", "badrummet", "toalett", "toaletten", "dusch", "duschrum", "våtrum"],
    "bedroom": ["bedroom", "bed room", "master bedroom", "sovrum", "sovrummet", "sovrummen", "sovalkov"],
    "dining_room": ["dining room", "dining", "dining area", "matsal", "matsalen", "matrum", "matplats"],
    "entrance_hall": ["entrance hall", "entrance", "entry", "entryway", "hallway", "hall", "foyer", "hallen",
                      "entré", "entrén", "entre", "tambur", "farstu"],
    "exterior": ["exterior", "outside", "outdoor", "outdoors", "facade", "façade", "front", "frontal",
                 "garden", "yard", "backyard", "front yard", "exteriör", "fasad", "fasaden", "trädgård",
                 "trädgården", "utsida", "utsidan"],
    "kitchen": ["kitchen", "kitchenette", "kök", "köket", "pentry", "kokvrå"],
    "living_room": ["living room", "living", "lounge", "sitting room", "family room", "vardagsrum",
                    "vardagsrummet", "salong", "salongen", "allrum", "allrummet"],
}
ATTRIBUTE_WORDS = {
    "fireplace": ["fireplace", "hearth", "wood stove", "woodstove", "wood burner", "tiled stove",
                  "kakelugn", "kakelugnen", "kakelugnar", "eldstad", "eldstaden", "eldstäder", "öppen spis",
                  "braskamin", "kamin", "kaminen"],
    "balcony": ["balcony", "terrace", "roof terrace", "deck", "veranda", "balkong", "balkongen", "balkonger",
                "terrass", "terrassen", "takterrass", "altan", "altanen", "loftgång"],
    "empty": ["unfurnished", "vacant", "empty room", "omöblerad", "omöblerat", "omöblerade"],
}
LISTING_WORDS = {"listing", "listings", "house", "houses", "home", "homes", "property", "properties",
                 "apartment", "apartments", "flat", "flats", "bostad", "bostaden", "bostäder", "hus", "huset",
                 "lägenhet", "lägenheten", "lägenheter", "objekt", "villa", "villor", "annons", "annonser"}
STOP_WORDS = {"a", "an", "the", "with", "and", "or", "in", "of", "on", "that", "which", "has", "have", "having",
              "where", "there", "is", "are", "photo", "photos", "picture", "pictures", "image", "images", "show",
              "showing", "me", "find", "all", "any", "some", "room", "rooms", "a", "to", "for",
              "med", "och", "eller", "i", "en", "ett", "som", "har", "bild", "bilder", "på", "av", "där",
              "alla", "visa", "hitta", "finns", "det", "den"}
NEGATIONS = {"without", "no", "not", "utan", "ingen", "inget", "inte"}
COLUMN_ALIASES = {"pris": "price", "utgångspris": "price", "boarea": "area", "yta": "area", "kvm": "area",
                  "postnummer": "zipcode", "zip": "zipcode", "price/value": "price_to_value",
                  "pris/värde": "price_to_value", "värde": "value", "estimate": "value"}
ROOM_FIELDS = {"room", "room_type", "rumstyp"}
WATERMARK_WORDS = {"watermark", "watermarks", "watermarked", "logo", "vattenmärke", "vattenmärkt"}
DUPLICATE_WORDS = {"duplicate", "duplicates", "duplicated", "reused", "copies", "dubbletter", "dubblett"}
LISTING_FIELDS = {"listing", "listing_id", "house_id", "annons"}
OPS = ("!=", ">=", "<=", "=", "<", ">", ":")
MAX_PER_PAGE = 200
MAX_PAGE = 1_000_000  # page x per_page stays far inside SQL's 64-bit OFFSET
_FILTER = re.compile(r"^([^\s=!<>:]+)(!=|>=|<=|=|<|>|:)(.+)$")


@dataclass
class Term:
    """One condition on a photo: a room type, an attribute, a comparison on an attribute, or a
    listing check (quality, faces, duplicates)."""

    kind: str  # "room", "attribute" or "check"
    name: str  # the room type(s) joined by "|", or the attribute
    op: str = "yes"  # for attributes: "yes", "no", or a comparison with `value`
    value: float | None = None
    said: str = ""  # what the user wrote

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "op": self.op, "value": self.value, "said": self.said}


@dataclass
class ListingFilter:
    column: str  # listing column, or "" for the listing id itself
    op: str
    value: str
    said: str = ""

    def describe(self) -> dict:
        return {"kind": "listing", "name": self.column or "listing", "op": self.op, "value": self.value, "said": self.said}


@dataclass
class Query:
    text: str
    level: str = "photo"  # "photo" or "listing"
    terms: list[Term] = field(default_factory=list)
    listing_filters: list[ListingFilter] = field(default_factory=list)
    corrected: bool | None = None
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"level": self.level, "terms": [t.describe() for t in self.terms],
                "listing_filters": [f.describe() for f in self.listing_filters],
                "corrected": self.corrected, "ignored": self.ignored}


class QueryError(ValueError):
    """A filter that cannot be run: unknown field, bad value. The message says which and why."""


@dataclass
class Vocabulary:
    """What the index holds, for resolving words: its room types, attributes and listing columns."""

    rooms: list[str]
    attributes: list[str]
    columns: list[str]
    checks: bool = False  # some photo carries the listing checks (index --checks)

    @classmethod
    def of(cls, conn) -> "Vocabulary":
        """Read from the index's meta table, kept up to date by indexing (no table scan per query;
        whether any photo was checked is one look-up in the quality column's index)."""
        checked = conn.execute(select(P.c.id).where(P.c.quality.is_not(None)).limit(1)).first() is not None
        return cls(db.meta_list(conn, "classes"), db.meta_list(conn, "attributes"),
                   db.meta_list(conn, "listing_columns"), checked)

    def phrases(self) -> dict[str, tuple[str, str]]:
        """Normalised word or phrase -> ("room" | "attribute", name), for what this index holds."""
        out: dict[str, tuple[str, str]] = {}
        for kind, table, names in (("room", ROOM_WORDS, self.rooms), ("attribute", ATTRIBUTE_WORDS, self.attributes)):
            for name in names:
                words = table.get(name, [])
                for w in [name, name.replace("_", " "), name.replace("_", ""), *words]:
                    out.setdefault(normalise(w), (kind, name))
        return out

    def column(self, name: str) -> str | None:
        n = COLUMN_ALIASES.get(name, name)
        if n in self.columns:
            return n
        # price_to_value (a value model's) is never what `price` means
        prefixed = [c for c in self.columns if c.startswith(n + "_") and c not in VALUE_COLUMNS]
        return prefixed[0] if len(prefixed) == 1 else None

    def to_dict(self) -> dict:
        return {"rooms": self.rooms, "attributes": self.attributes, "listing_columns": self.columns, "checks": self.checks,
                "synonyms": {**{r: ROOM_WORDS.get(r, []) for r in self.rooms},
                             **{a: ATTRIBUTE_WORDS.get(a, []) for a in self.attributes}}}


def parse_query(text: str, vocab: Vocabulary, level: str | None = None) -> Query:
    """Turn the user's text into terms and filters (see the module's docstring)."""
    if level not in (None, "photo", "listing"):
        raise QueryError(f"level must be 'photo' or 'listing', not {level!r}")
    q = Query(text, level or "photo")
    # "price < 500 000" -> "price<500000", so that a filter is one token.
    spaced = re.sub(r"\s*(!=|>=|<=|=|<|>)\s*", r"\1", normalise(text or ""))
    spaced = re.sub(r"(?<=\d)[ \u00a0](?=\d{3}(?!\d))", "", spaced)
    tokens = [t.strip(",.;!?\"'()") for t in spaced.split()]
    tokens = [t for t in tokens if t]
    phrases = vocab.phrases()
    longest = max((len(p.split()) for p in phrases), default=1)
    rooms: list[tuple[str, str]] = []
    negate = ""  # "without" / "utan" / "no" just before a word negates it
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        m = _FILTER.match(tok)
        if m:
            _add_filter(q, vocab, phrases, *m.groups(), said=tok)
            negate = ""
            i += 1
            continue
        for n in range(min(longest, len(tokens) - i), 0, -1):
            phrase = " ".join(tokens[i:i + n])
            hit = phrases.get(phrase) or (phrases.get(_singular(phrase)) if n == 1 else None)
            if hit:
                said = f"{negate} {phrase}".strip()
                if hit[0] == "room" and not negate:
                    rooms.append((hit[1], said))
                elif hit[0] == "room":
                    q.terms.append(Term("room", hit[1], "not", said=said))
                else:
                    q.terms.append(Term("attribute", hit[1], "no" if negate else "yes", said=said))
                negate = ""
                i += n
                break
        else:
            if tok in DUPLICATE_WORDS:
                q.terms.append(Term("check", "duplicate", "no" if negate else "yes", said=f"{negate} {tok}".strip()))
                negate = ""
            elif tok in NEGATIONS:
                negate = tok
            elif tok in LISTING_WORDS:
                q.level = level or "listing"
            elif tok not in STOP_WORDS:
                q.ignored.append(tok)
            i += 1
    if negate:
        q.ignored.append(negate)
    if rooms:
        if q.level == "photo":  # "kitchen bathroom": a photo of either
            names = list(dict.fromkeys(r for r, _ in rooms))
            q.terms.insert(0, Term("room", "|".join(names), said=" ".join(s for _, s in rooms)))
        else:  # listings with a kitchen and a bathroom
            q.terms[:0] = [Term("room", r, said=s) for r, s in rooms]
    return q


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("es") and word[:-2].endswith(("sh", "ch", "x", "s")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def _add_filter(q: Query, vocab: Vocabulary, phrases: dict, name: str, op: str, value: str, said: str) -> None:
    op = "=" if op == ":" else op
    if name in vocab.columns and name not in ROOM_FIELDS:  # a listing column of that very name comes first
        q.listing_filters.append(ListingFilter(name, op, value, said))
        return
    if name in ROOM_FIELDS:
        room = phrases.get(value) or phrases.get(value.replace("_", " "))
        if not room or room[0] != "room":
            raise QueryError(f"{said}: {value!r} is not a room type of this index ({', '.join(vocab.rooms)})")
        if op not in ("=", "!="):
            raise QueryError(f"{said}: compare a room type with = or !=")
        q.terms.append(Term("room", room[1], "yes" if op == "=" else "not", said=said))
        return
    if name in LISTING_FIELDS:
        q.listing_filters.append(ListingFilter("", op, value, said))
        return
    if name in ("quality", "kvalitet"):
        if value not in ("pass", "fail", "ok", "bad") or op not in ("=", "!="):
            raise QueryError(f"{said}: use quality=fail or quality=pass")
        fail = (value in ("fail", "bad")) == (op == "=")
        q.terms.append(Term("check", "quality", "fail" if fail else "pass", said=said))
        return
    if name in WATERMARK_WORDS:
        if value in ("yes", "no") and op in ("=", "!="):
            q.terms.append(Term("check", "watermark", "yes" if (value == "yes") == (op == "=") else "no", said=said))
            return
        v = as_number(value)
        if v is None or not 0.0 <= v <= 1.0:
            raise QueryError(f"{said}: use watermark=yes, watermark=no, or compare its probability (watermark>0.8)")
        q.terms.append(Term("check", "watermark_probability", op, v, said=said))
        return
    if name in ("faces", "face", "ansikten"):
        v = as_number(value)
        if v is None or v < 0:
            raise QueryError(f"{said}: faces is a count: compare it with a number (faces>0, faces=0)")
        q.terms.append(Term("check", "faces", op, v, said=said))
        return
    if name in DUPLICATE_WORDS:
        if value not in ("yes", "no", "across") or op not in ("=", "!="):
            raise QueryError(f"{said}: use duplicates=yes, duplicates=no or duplicates=across (a copy in another listing)")
        if value == "across":
            q.terms.append(Term("check", "duplicate", "across" if op == "=" else "not across", said=said))
        else:
            q.terms.append(Term("check", "duplicate", "yes" if (value == "yes") == (op == "=") else "no", said=said))
        return
    if name in ("corrected", "reviewed", "rättad"):
        if value not in ("yes", "no", "true", "false", "1", "0") or op not in ("=", "!="):
            raise QueryError(f"{said}: use corrected=yes or corrected=no")
        q.corrected = (value in ("yes", "true", "1")) == (op == "=")
        return
    hit = phrases.get(name) or phrases.get(_singular(name))
    if hit and hit[0] == "attribute":
        attr = hit[1]
        if value in ("yes", "ja", "no", "nej"):
            if op not in ("=", "!="):
                raise QueryError(f"{said}: compare yes/no with = or !=")
            yes = (value in ("yes", "ja")) == (op == "=")
            q.terms.append(Term("attribute", attr, "yes" if yes else "no", said=said))
            return
        v = as_number(value)
        if v is None or not 0.0 <= v <= 1.0:
            raise QueryError(f"{said}: {attr} is a probability: compare it with a number from 0 to 1, or =yes / =no")
        q.terms.append(Term("attribute", attr, op, v, said=said))
        return
    column = vocab.column(name)
    if column is None:
        known = ", ".join(["room", "listing", "corrected", "quality", "watermark", "faces", "duplicates", *vocab.attributes,
                           *vocab.columns])
        raise QueryError(f"{said}: no field {name!r} in this index (fields: {known})")
    q.listing_filters.append(ListingFilter(column, op, value, said))


# --- SQL -------------------------------------------------------------------------------------------

P = db.photos


def _compare(col, op: str, value):
    return {"=": col == value, "!=": col != value, "<": col < value, "<=": col <= value,
            ">": col > value, ">=": col >= value}[op]


def _room_confidence():
    return case((P.c.room_corrected, literal(1.0)), else_=P.c.room_probability)


def _term_sql(term: Term, n: int, from_):
    """(from_ with any join the term needs, condition, score) for one photo-level term."""
    if term.kind == "room":
        names = term.name.split("|")
        if term.op == "not":
            return from_, ~P.c.room_type.in_(names), literal(1.0)
        # An open-plan photo counts for its second room type too (`kitchen` finds kitchen-diners),
        # ranked after the photos that are that room first: its score is half its `also` probability.
        first = P.c.room_type.in_(names)
        return (from_, or_(first, P.c.also.in_(names)),
                case((first, _room_confidence()), else_=P.c.also_probability * 0.5))
    if term.kind == "check":
        # The likeliest watermarks first; every other check is a plain filter.
        score = P.c.watermark_probability if term.name == "watermark" and term.op == "yes" else literal(1.0)
        return from_, _check_condition(term, n), score
    a = db.attributes.alias(f"a{n}")
    from_ = from_.join(a, and_(a.c.photo_id == P.c.id, a.c.name == term.name))
    if term.op == "yes":
        return from_, a.c.present == true(), a.c.value
    if term.op == "no":
        return from_, a.c.present == false(), 1.0 - a.c.value
    return from_, _compare(a.c.value, term.op, term.value), a.c.value if term.op in (">", ">=", "=") else 1.0 - a.c.value


def _check_condition(term: Term, n: int):
    """A listing check as a condition on the photo (photos never checked meet none of them)."""
    if term.name == "quality":
        return P.c.quality == term.op
    if term.name == "faces":
        return _compare(P.c.faces, term.op, term.value)
    if term.name == "watermark":
        return P.c.watermark == term.op
    if term.name == "watermark_probability":
        return _compare(P.c.watermark_probability, term.op, term.value)
    if term.op in ("yes", "no"):
        return P.c.duplicate_group.is_not(None) if term.op == "yes" else (P.c.hashes.is_not(None) & P.c.duplicate_group.is_(None))
    other = P.alias(f"d{n}")  # the same group, another listing
    across = exists().where(other.c.duplicate_group == P.c.duplicate_group, other.c.id != P.c.id,
                            other.c.listing_id.is_not(None), P.c.listing_id.is_not(None),
                            other.c.listing_id != P.c.listing_id)
    return across if term.op == "across" else (P.c.hashes.is_not(None) & ~across)


_OPPOSITE_OPS = {"no": "yes", "not": "yes", "<": ">=", "<=": ">", "!=": "="}


def _opposite(term: Term) -> Term | None:
    """For a negative term, the positive one no photo of a listing may meet; None for a positive term."""
    if term.op not in _OPPOSITE_OPS:
        return None
    return Term(term.kind, term.name, _OPPOSITE_OPS[term.op], term.value, term.said)


def _listing_condition(f: ListingFilter, listing_col):
    if not f.column:  # the query is case-folded: listing ids are matched on their folded key
        L = db.listings
        return exists().where(L.c.id == listing_col, _compare(L.c.key, f.op, f.value))
    F = db.listing_facts
    num = as_number(f.value)
    if num is not None:
        cond = _compare(F.c.num, f.op, num)
    elif f.op in ("=", "!="):
        cond = _compare(F.c.key, f.op, f.value)
    else:
        raise QueryError(f"{f.said}: {f.value!r} is not a number; compare text with = or !=")
    return exists().where(F.c.listing_id == listing_col, F.c.name == f.column, cond)


def _corrected_condition(want: bool):
    c = exists().where(db.corrections.c.photo_id == P.c.id)
    return c if want else ~c


def search(engine, text: str = "", *, level: str | None = None, page: int = 1, per_page: int = 24) -> dict:
    """Run a query; returns {"query", "interpreted", "level", "total", "page", "per_page", "results"}."""
    if not 1 <= page <= MAX_PAGE:
        raise QueryError(f"page must be from 1 to {MAX_PAGE}, not {page}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise QueryError(f"per_page must be from 1 to {MAX_PER_PAGE}, not {per_page}")
    with engine.connect() as conn:
        vocab = Vocabulary.of(conn)
        q = parse_query(text, vocab, level)
        if q.level == "photo":
            total, results = _photo_search(conn, q, page, per_page)
        else:
            total, results = _listing_search(conn, q, page, per_page)
    return {"query": text, "interpreted": q.describe(), "level": q.level, "total": total, "page": page,
            "per_page": per_page, "pages": max(1, -(-total // per_page)), "results": results}


def _photo_search(conn, q: Query, page: int, per_page: int) -> tuple[int, list[dict]]:
    from_, conds, score = P, [P.c.status == "ok"], None
    for n, term in enumerate(q.terms):
        from_, cond, s = _term_sql(term, n, from_)
        conds.append(cond)
        score = s if score is None else score * s
    conds += [_listing_condition(f, P.c.listing_id) for f in q.listing_filters]
    if q.corrected is not None:
        conds.append(_corrected_condition(q.corrected))
    score = _room_confidence() if score is None else score
    total = conn.execute(select(func.count()).select_from(from_).where(*conds)).scalar()
    rows = conn.execute(select(P.c.id, score.label("score")).select_from(from_).where(*conds)
                        .order_by(score.desc(), P.c.id).limit(per_page).offset((page - 1) * per_page)).all()
    records = photo_records(conn, [r.id for r in rows])
    for rec, r in zip(records, rows):
        rec["score"] = round(float(r.score), 4) if r.score is not None else None
    return total, records


def _listing_search(conn, q: Query, page: int, per_page: int) -> tuple[int, list[dict]]:
    L = db.listings
    from_, score = L, None
    subs = []
    # A negative term ("without a balcony", fireplace<0.2, room!=bedroom) means, for a listing,
    # that none of its photos has the opposite; a positive one, that some photo meets it.
    photo_terms = [t for t in q.terms if _opposite(t) is None]
    none_of = [_opposite(t) for t in q.terms if _opposite(t) is not None]
    for n, term in enumerate(photo_terms):
        f, cond, s = _term_sql(term, n, P)
        extra = [_corrected_condition(q.corrected)] if q.corrected is not None else []
        sub = (select(P.c.listing_id.label("lid"), func.max(s).label("s")).select_from(f)
               .where(P.c.status == "ok", P.c.listing_id.is_not(None), cond, *extra)
               .group_by(P.c.listing_id).subquery(f"t{n}"))
        subs.append((sub, cond))
        from_ = from_.join(sub, sub.c.lid == L.c.id)
        score = sub.c.s if score is None else score * sub.c.s
    conds = [_listing_condition(f, L.c.id) for f in q.listing_filters]
    for n, term in enumerate(none_of, start=len(photo_terms)):
        f, cond, _ = _term_sql(term, n, P)
        conds.append(~exists(select(P.c.id).select_from(f).where(P.c.listing_id == L.c.id, P.c.status == "ok", cond)))
    if not photo_terms:
        # Listings with at least one photo (and, with corrected=..., one photo corrected or not).
        has = exists().where(P.c.listing_id == L.c.id, P.c.status == "ok",
                             *([_corrected_condition(q.corrected)] if q.corrected is not None else []))
        conds.append(has)
    score = literal(1.0) if score is None else score
    total = conn.execute(select(func.count()).select_from(from_).where(*conds)).scalar()
    rows = conn.execute(select(L.c.id, score.label("score")).select_from(from_).where(*conds)
                        .order_by(score.desc(), L.c.id).limit(per_page).offset((page - 1) * per_page)).all()
    page_ids = [r.id for r in rows]
    matched: set[int] = set()
    for n, term in enumerate(photo_terms):  # which of these listings' photos meet a term
        f, cond, _ = _term_sql(term, n, P)
        matched.update(conn.execute(select(P.c.id).select_from(f).where(
            P.c.listing_id.in_(page_ids), P.c.status == "ok", cond)).scalars())
    out = listing_records(conn, page_ids)
    for rec, r in zip(out, rows):
        rec["score"] = round(float(r.score), 4)
        for p in rec["photos"]:
            p["matched"] = p["id"] in matched
    return total, out


# --- records ---------------------------------------------------------------------------------------

def photo_records(conn, ids: list[int]) -> list[dict]:
    """The photos' full records, in the order of `ids` (missing ids are left out)."""
    if not ids:
        return []
    rows = {r.id: r for r in conn.execute(select(P).where(P.c.id.in_(ids)))}
    attrs: dict[int, dict] = {}
    for a in conn.execute(select(db.attributes).where(db.attributes.c.photo_id.in_(ids))):
        attrs.setdefault(a.photo_id, {})[a.name] = {
            "probability": round(a.probability, 4), "threshold": round(a.threshold, 4),
            "value": "yes" if a.present else "no", "corrected": False}
    scores: dict[int, dict] = {}
    for s in conn.execute(select(db.room_scores).where(db.room_scores.c.photo_id.in_(ids))):
        scores.setdefault(s.photo_id, {})[s.room] = round(s.probability, 4)
    copies = _duplicate_copies(conn, [r for r in rows.values() if r.duplicate_group is not None])
    fixes: dict[int, dict] = {}
    for c in conn.execute(select(db.corrections).where(db.corrections.c.photo_id.in_(ids))):
        fixes.setdefault(c.photo_id, {})[c.target] = {"value": c.value, "at": _utc(c.corrected_at)}
    out = []
    for pid in ids:
        r = rows.get(pid)
        if r is None:
            continue
        a = attrs.get(pid, {})
        for target, fix in fixes.get(pid, {}).items():
            if target in a:
                a[target]["corrected"] = True
                a[target]["value"] = fix["value"]
        out.append({
            "id": r.id, "path": r.path_key, "listing_id": r.listing_id, "origin": r.origin, "status": r.status,
            "room_type": r.room_type, "room_type_predicted": r.room_type_predicted,
            "room_probability": None if r.room_probability is None else round(r.room_probability, 4),
            "room_corrected": bool(r.room_corrected),
            "unusual": None if r.unusual is None else round(r.unusual, 4),
            "also": r.also, "also_probability": r.also_probability, "room_scores": dict(sorted(scores.get(pid, {}).items(),
                                                                               key=lambda kv: -kv[1])),
            "attributes": a, "corrections": fixes.get(pid, {}), "width": r.width, "height": r.height,
            "model": r.model, "model_version": r.model_version,
            "tagged_at": _utc(r.tagged_at), "checks": _checks_record(r, copies.get(r.duplicate_group, []))})
    return out


def _duplicate_copies(conn, rows) -> dict[int, list[dict]]:
    """duplicate group -> its photos (id, listing_id), for the groups of `rows`."""
    groups = sorted({r.duplicate_group for r in rows})
    out: dict[int, list[dict]] = {}
    for chunk in db.in_lists(groups):
        for pid, lid, g in conn.execute(select(P.c.id, P.c.listing_id, P.c.duplicate_group)
                                        .where(P.c.duplicate_group.in_(chunk)).order_by(P.c.id)):
            out.setdefault(g, []).append({"id": pid, "listing_id": lid})
    return out


def _checks_record(r, group: list[dict]) -> dict | None:
    """The listing checks of a photo row, or None where the index was built without --checks."""
    if r.quality is None and r.faces is None:
        return None
    rnd = lambda v: None if v is None else round(float(v), 3)  # noqa: E731
    copies = [c for c in group if c["id"] != r.id]
    other_listings = sorted({c["listing_id"] for c in copies if c["listing_id"] not in (None, r.listing_id)})
    return {"quality": r.quality, "quality_reasons": [x for x in (r.quality_reasons or "").split("; ") if x],
            "sharpness": rnd(r.sharpness), "exposure": rnd(r.exposure), "tilt_degrees": rnd(r.tilt_degrees),
            "colour_cast": rnd(r.colour_cast), "faces": r.faces, "face_boxes": r.face_boxes,
            "watermark": r.watermark, "watermark_probability": rnd(r.watermark_probability),
            "watermark_box": r.watermark_box,
            "duplicate_group": r.duplicate_group, "duplicates": [c["id"] for c in copies],
            "duplicate_listings": other_listings}


def publishability(photos: list[dict]) -> dict | None:
    """A listing's photos against a portal's checks: how many fail quality, carry a watermark, show
    faces, or are copies of photos in other listings, and how many files are no usable photo at all
    (a portal cannot publish those either); how many were looked at for watermarks and faces (the
    index may have been built without --watermarks or --faces); None where none of its photos was
    checked."""
    checked = [p["checks"] for p in photos if p.get("checks")]
    if not checked:
        return None
    summary = {"checked": len(checked),
               "unusable": sum(p.get("status", "ok") != "ok" for p in photos),
               "quality_fail": sum(c["quality"] == "fail" for c in checked),
               "watermarks_checked": sum(c.get("watermark") is not None for c in checked),
               "with_watermark": sum(c.get("watermark") == "yes" for c in checked),
               "faces_checked": sum(c.get("faces") is not None for c in checked),
               "with_faces": sum(bool(c["faces"]) for c in checked),
               "duplicates_within": sum(bool(c["duplicates"]) and not c["duplicate_listings"] for c in checked),
               "copied_from_other_listings": sum(bool(c["duplicate_listings"]) for c in checked)}
    summary["publishable"] = not (summary["unusable"] or summary["quality_fail"] or summary["with_watermark"]
                                  or summary["with_faces"] or summary["copied_from_other_listings"])
    return summary


def listing_records(conn, listing_ids: list[str]) -> list[dict]:
    """The listings' records (columns, photos), in the order of `listing_ids`; unknown ids left out."""
    if not listing_ids:
        return []
    known = set(conn.execute(select(db.listings.c.id).where(db.listings.c.id.in_(listing_ids))).scalars())
    facts: dict[str, dict] = {}
    for f in conn.execute(select(db.listing_facts).where(db.listing_facts.c.listing_id.in_(listing_ids))
                          .order_by(db.listing_facts.c.name)):
        facts.setdefault(f.listing_id, {})[f.name] = _fact_value(f.num, f.text)
    photo_ids: dict[str, list[int]] = {}
    for pid, lid in conn.execute(select(P.c.id, P.c.listing_id).where(P.c.listing_id.in_(listing_ids)).order_by(P.c.id)):
        photo_ids.setdefault(lid, []).append(pid)
    records = {r["id"]: r for r in photo_records(conn, [p for ids in photo_ids.values() for p in ids])}
    out = [{"id": lid, "facts": facts.get(lid, {}), "n_photos": len(photo_ids.get(lid, [])),
            "photos": [records[p] for p in photo_ids.get(lid, [])]} for lid in listing_ids if lid in known]
    for rec in out:
        rec["checks"] = publishability(rec["photos"])
    return out


def listing_record(conn, listing_id: str) -> dict | None:
    recs = listing_records(conn, [listing_id])
    return recs[0] if recs else None


def _utc(t) -> str | None:
    """ISO time in UTC with its offset, the same on both databases (SQLite returns times without
    their zone; they were written in UTC)."""
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()


def _fact_value(num: float | None, text: str):
    """A listing column's value as JSON shows it best: a number where the text is one, else the text."""
    if num is None:
        return text
    return int(num) if float(num).is_integer() and abs(num) < 2 ** 53 else num
