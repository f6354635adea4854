"""The photo index: building it (resumably, with listings), searching it, correcting it, exporting
corrections; on SQLite and, where a server is given, on PostgreSQL through the same code."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select, update

from conftest import make_listing_folders, stripes
from estatelens.bundle import load_bundle
from estatelens.cli import main
from estatelens.index import build, connect, correct, db, export_labels, index_photos, read_listings, search, uncorrect
from estatelens.index.search import QueryError, Vocabulary, parse_query

VOCAB = Vocabulary(["bathroom", "bedroom", "dining_room", "entrance_hall", "exterior", "kitchen", "living_room"],
                   ["balcony", "empty", "fireplace"], ["area_sqft", "city", "price"])


# --- the query language ----------------------------------------------------------------------------

def _terms(text, level=None):
    q = parse_query(text, VOCAB, level)
    return [(t.kind, t.name, t.op, t.value) for t in q.terms], q


def test_swedish_and_english_words_map_onto_rooms_and_attributes():
    for text, want in [("kök", ("room", "kitchen")), ("badrum", ("room", "bathroom")), ("sovrum", ("room", "bedroom")),
                       ("vardagsrum", ("room", "living_room")), ("balkong", ("attribute", "balcony")),
                       ("eldstad", ("attribute", "fireplace")), ("kakelugn", ("attribute", "fireplace")),
                       ("öppen spis", ("attribute", "fireplace")), ("living room", ("room", "living_room")),
                       ("Kitchens", ("room", "kitchen")), ("balconies", ("attribute", "balcony")),
                       ("KÖKET", ("room", "kitchen")), ("tiled stove", ("attribute", "fireplace")),
                       ("unfurnished", ("attribute", "empty")), ("omöblerat", ("attribute", "empty"))]:
        terms, q = _terms(text)
        assert [(k, n) for k, n, _, _ in terms] == [want], text
        assert q.ignored == [] and q.level == "photo"


def test_words_nothing_is_tagged_for_are_reported_not_dropped_silently():
    terms, q = _terms("kök i gott skick")
    assert terms == [("room", "kitchen", "yes", None)]
    assert q.ignored == ["gott", "skick"]


def test_room_words_at_photo_level_mean_either_and_at_listing_level_each():
    terms, q = _terms("kitchen or bathroom with a fireplace")
    assert terms == [("room", "kitchen|bathroom", "yes", None), ("attribute", "fireplace", "yes", None)]
    terms, q = _terms("listings with a kitchen and a bathroom")
    assert q.level == "listing"
    assert terms == [("room", "kitchen", "yes", None), ("room", "bathroom", "yes", None)]
    assert _terms("bostäder med balkong")[1].level == "listing"
    assert _terms("balcony", level="listing")[1].level == "listing"


def test_filters_are_parsed_with_or_without_spaces():
    terms, q = _terms("room=kitchen balcony >= 0.9 fireplace=no price < 500000 city=Uppsala listing=L1 corrected=yes")
    assert terms == [("room", "kitchen", "yes", None), ("attribute", "balcony", ">=", 0.9),
                     ("attribute", "fireplace", "no", None)]
    assert [(f.column, f.op, f.value) for f in q.listing_filters] == [
        ("price", "<", "500000"), ("city", "=", "uppsala"), ("", "=", "l1")]
    assert q.corrected is True
    # Swedish column names and a unique column prefix (area -> area_sqft).
    _, q = _terms("pris<3000000 boarea>=100")
    assert [(f.column, f.op) for f in q.listing_filters] == [("price", "<"), ("area_sqft", ">=")]
    terms, _ = _terms("balkong>=0.5 room!=bedroom")
    assert terms == [("attribute", "balcony", ">=", 0.5), ("room", "bedroom", "not", None)]


def test_negations_and_numbers_written_the_swedish_way():
    terms, q = _terms("kitchen without fireplace")
    assert terms == [("room", "kitchen", "yes", None), ("attribute", "fireplace", "no", None)]
    terms, q = _terms("listings utan balkong no bedroom")
    assert q.level == "listing"
    assert terms == [("attribute", "balcony", "no", None), ("room", "bedroom", "not", None)]
    _, q = _terms("price < 1 250 000 boarea>=72,5 kitchen 3")
    assert [(f.column, f.op, f.value) for f in q.listing_filters] == [("price", "<", "1250000"), ("area_sqft", ">=", "72,5")]
    assert q.ignored == ["3"]  # a number on its own is reported, not dropped silently
    assert [db.as_number(t) for t in ["72,5", "0,9", "1,250,000", "1 250 000", "500000", "3.5", "x", "1,5 rok"]] == [
        72.5, 0.9, 1250000.0, 1250000.0, 500000.0, 3.5, None, None]
    # A listing column named like a field estatelens knows is searched as that column.
    q = parse_query("type=villa rum>=3", Vocabulary(VOCAB.rooms, VOCAB.attributes, ["rum", "type"]))
    assert [(f.column, f.op, f.value) for f in q.listing_filters] == [("type", "=", "villa"), ("rum", ">=", "3")]


@pytest.mark.parametrize("text, message", [
    ("colour=red", "no field 'colour'"), ("room=garage", "not a room type"), ("balcony>=2", "probability"),
    ("balcony>yes", "compare yes/no with = or !="), ("room>kitchen", "compare a room type"),
    ("corrected=maybe", "corrected=yes"),
])
def test_bad_filters_are_refused_with_the_reason(text, message):
    with pytest.raises(QueryError, match=message):
        parse_query(text, VOCAB)


# --- listings CSV ------------------------------------------------------------------------------------

def test_listings_csv_gives_listing_and_columns_and_leaves_out_per_photo_columns(tmp_path):
    (tmp_path / "p.csv").write_text("path,house_id,room,price\nphotos/a.jpg,7,kitchen,100\nphotos/b.jpg,7,bedroom,100\n"
                                    "/abs/c.jpg,8,bathroom,200\n")
    (tmp_path / "f.csv").write_text("house_id,area\n7,55\n9,80\n")
    got = read_listings(tmp_path / "p.csv", tmp_path / "f.csv")
    assert got.paths == [str(tmp_path / "photos" / "a.jpg"), str(tmp_path / "photos" / "b.jpg"), "/abs/c.jpg"]
    assert got.photo_listing[build.path_key(str(tmp_path / "photos" / "b.jpg"))] == "7"
    assert got.facts == {"7": {"price": "100", "area": "55"}, "8": {"price": "200"}, "9": {"area": "80"}}
    assert len(got.warnings) == 1 and "'room'" in got.warnings[0]
    (tmp_path / "bad.csv").write_text("path,owner\na.jpg,x\n")
    with pytest.raises(ValueError, match="needs columns path,listing_id"):
        read_listings(tmp_path / "bad.csv")


# --- building the index ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rooms_bundle():
    return load_bundle("rooms")


def _photo_rows(engine):
    with engine.connect() as conn:
        return {Path(r.path_key).relative_to(r.path_key.rsplit("/", 2)[0]).as_posix(): r
                for r in conn.execute(select(db.photos))}


def test_index_takes_listings_from_folders_and_stores_every_probability(listing_index):
    db_path, photos = listing_index
    engine = connect(db_path, create=False)
    rows = _photo_rows(engine)
    assert sorted(rows) == [f"L{i}/{k}.jpg" for i in (1, 2, 3) for k in range(4)]  # facts.csv is not a photo
    assert all(r.listing_id == k.split("/")[0] and r.status == "ok" for k, r in rows.items())
    with engine.connect() as conn:
        scores = conn.execute(select(db.room_scores)).all()
        attrs = conn.execute(select(db.attributes)).all()
        facts = {(f.listing_id, f.name): (f.num, f.text) for f in conn.execute(select(db.listing_facts))}
    assert len(scores) == 12 * 7 and len(attrs) == 12 * 3  # balcony, empty, fireplace
    by_photo = {}
    for s in scores:
        by_photo.setdefault(s.photo_id, {})[s.room] = s.probability
    for r in rows.values():
        probs = by_photo[r.id]
        assert abs(sum(probs.values()) - 1) < 1e-3
        assert r.room_type_predicted == max(probs, key=probs.get) == r.room_type
        assert abs(probs[r.room_type] - r.room_probability) < 1e-3
        assert r.model == "rooms" and r.model_version and r.tagged_at is not None
    assert facts[("L2", "price")] == (300000.0, "300000") and facts[("L1", "city")] == (None, "Stockholm")


def test_index_is_incremental_and_resumes_after_a_crash(tmp_path, rooms_bundle, monkeypatch):
    photos = make_listing_folders(tmp_path / "photos", listings=2, per_listing=4, size=96)
    engine = connect(tmp_path / "x.db")
    monkeypatch.setattr(build, "WRITE_EVERY", 3)
    real_write, calls = build.write_rows, []

    def crash_on_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(*a, **k)

    monkeypatch.setattr(build, "write_rows", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        index_photos(rooms_bundle, [photos], engine, progress=False)
    assert len(_photo_rows(engine)) == 6  # two batches of three were committed
    monkeypatch.setattr(build, "write_rows", real_write)
    s = index_photos(rooms_bundle, [photos], engine, progress=False)
    assert (s.n_found, s.n_unchanged, s.n_tagged, s.n_not_images) == (8, 6, 2, 1)
    # New photos, a changed photo: only those are tagged.
    stripes("vertical", 96, seed=7).save(photos / "L1" / "new.jpg")
    stripes("vertical", 96, seed=8).save(photos / "L2" / "0.jpg")
    os.utime(photos / "L2" / "0.jpg", (1, 1))
    s = index_photos(rooms_bundle, [photos], engine, progress=False)
    assert (s.n_found, s.n_unchanged, s.n_tagged) == (9, 7, 2)
    assert len(_photo_rows(engine)) == 9


def test_unusable_files_are_stored_with_the_reason_and_left_out_of_search(tmp_path, rooms_bundle):
    d = tmp_path / "photos" / "L9"
    d.mkdir(parents=True)
    stripes("horizontal", 96).save(d / "good.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    engine = connect(tmp_path / "x.db")
    s = index_photos(rooms_bundle, [tmp_path / "photos"], engine, progress=False)
    assert (s.n_tagged, s.n_unusable) == (1, 1) and "broken.jpg" in s.unusable_examples[0][0]
    assert search(engine, "")["total"] == 1


def _changed_model(tmp_path: Path) -> Path:
    """The bundled model with its fireplace head's bias moved: another model version, other probabilities."""
    src = load_bundle("rooms").path
    dest = tmp_path / "rooms-v2.estatelens"
    shutil.copytree(src, dest)
    head = dest / "attributes" / "fireplace.json"
    d = json.loads(head.read_text())
    d["bias"] += 3.0
    head.write_text(json.dumps(d))
    return dest


def test_reindexing_with_a_new_model_retags_everything_and_keeps_corrections(index_copy, tmp_path):
    engine = connect(index_copy, create=False)
    first = search(engine, "", per_page=50)["results"]
    a, b = first[0], first[1]
    other_room = next(r for r in VOCAB.rooms if r != a["room_type"])
    correct(engine, a["id"], "room_type", other_room)
    correct(engine, b["id"], "fireplace", "yes")
    v2 = load_bundle(_changed_model(tmp_path))
    photos = Path(a["path"]).parents[1]
    s = index_photos(v2, [photos], engine, progress=False)
    assert s.n_tagged == 12 and s.n_unchanged == 0
    after = {r["id"]: r for r in search(engine, "", per_page=50)["results"]}
    assert after[a["id"]]["room_type"] == other_room and after[a["id"]]["room_corrected"]
    assert after[a["id"]]["room_type_predicted"] == a["room_type_predicted"]
    fp = after[b["id"]]["attributes"]["fireplace"]
    assert fp["value"] == "yes" and fp["corrected"]
    assert fp["probability"] > b["attributes"]["fireplace"]["probability"]  # the new model's number
    assert {r["model_version"] for r in after.values()} != {a["model_version"]}
    # The corrected room type is what search finds.
    assert a["id"] in [r["id"] for r in search(engine, f"room={other_room}", per_page=50)["results"]]


# --- search over a real index ------------------------------------------------------------------------

def test_search_finds_the_effective_room_type_ranked_and_paged(listing_index):
    engine = connect(listing_index[0], create=False)
    everything = search(engine, "", per_page=50)
    rooms = {r["room_type"] for r in everything["results"]}
    for room in rooms:
        got = search(engine, room.replace("_", " "), per_page=50)
        want = [r for r in everything["results"] if r["room_type"] == room]
        assert got["total"] == len(want) == len(got["results"])
        scores = [r["score"] for r in got["results"]]
        assert scores == sorted(scores, reverse=True)
        assert all(abs(r["score"] - r["room_probability"]) < 1e-4 for r in got["results"])
    # Paging: pages of 5 cover every photo once, in the order of one big page.
    pages = [search(engine, "", page=p, per_page=5) for p in (1, 2, 3)]
    assert [p["pages"] for p in pages] == [3, 3, 3]
    ids = [r["id"] for p in pages for r in p["results"]]
    assert ids == [r["id"] for r in everything["results"]] and len(set(ids)) == 12
    with pytest.raises(QueryError, match="per_page"):
        search(engine, "", per_page=0)


def test_attribute_and_listing_filters(listing_index):
    engine = connect(listing_index[0], create=False)
    everything = search(engine, "", per_page=50)["results"]
    probs = sorted(r["attributes"]["fireplace"]["probability"] for r in everything)
    # A cut between two photos near the middle whose probabilities differ by more than the records'
    # rounding (4 places), so that the records tell which side each photo is on.
    k = min((k for k in range(len(probs) - 1) if probs[k + 1] - probs[k] > 2e-4), key=lambda k: abs(k - 5))
    cut = round((probs[k] + probs[k + 1]) / 2, 6)
    got = search(engine, f"fireplace>={cut}", per_page=50)
    assert {r["id"] for r in got["results"]} == {r["id"] for r in everything
                                                  if r["attributes"]["fireplace"]["probability"] >= cut}
    assert [r["score"] for r in got["results"]] == sorted((r["score"] for r in got["results"]), reverse=True)
    cheap = search(engine, "price<400000", per_page=50)["results"]
    assert {r["listing_id"] for r in cheap} == {"L1", "L2"} and len(cheap) == 8
    assert {r["listing_id"] for r in search(engine, "city=stockholm", per_page=50)["results"]} == {"L1", "L3"}
    assert search(engine, "listing=L2", per_page=50)["total"] == 4


def test_listing_level_search(listing_index):
    engine = connect(listing_index[0], create=False)
    everything = search(engine, "", per_page=50)["results"]
    room = everything[0]["room_type"]
    having = {r["listing_id"] for r in everything if r["room_type"] == room}
    got = search(engine, f"listings with a {room.replace('_', ' ')}", per_page=50)
    assert got["level"] == "listing" and {r["id"] for r in got["results"]} == having
    for listing in got["results"]:
        assert listing["n_photos"] == 4 and set(listing["facts"]) == {"price", "area", "city"}
        matched = {p["id"] for p in listing["photos"] if p["matched"]}
        assert matched == {p["id"] for p in listing["photos"] if p["room_type"] == room}
        best = max(p["room_probability"] for p in listing["photos"] if p["room_type"] == room)
        assert abs(listing["score"] - best) < 1e-4
    both = search(engine, "price>=300000", level="listing")
    assert [r["id"] for r in both["results"]] == ["L2", "L3"]
    # Negative terms: no photo of the listing has it.
    without = {r["id"] for r in search(engine, f"listings without {room.replace('_', ' ')}")["results"]}
    assert without == {"L1", "L2", "L3"} - having
    cut = sorted(r["attributes"]["fireplace"]["probability"] for r in everything)[5]
    low = {r["id"] for r in search(engine, f"listings fireplace<{cut}")["results"]}
    assert low == {lid for lid in ("L1", "L2", "L3")
                   if all(r["attributes"]["fireplace"]["probability"] < cut for r in everything if r["listing_id"] == lid)}


def test_corrections_win_in_search_and_can_be_undone(index_copy):
    engine = connect(index_copy, create=False)
    photo = search(engine, "", per_page=1)["results"][0]
    new = next(r for r in VOCAB.rooms if r != photo["room_type"])
    correct(engine, photo["id"], "room_type", new)
    got = search(engine, f"room={new}", per_page=50)["results"]
    assert got[0]["id"] == photo["id"] and got[0]["score"] == 1.0 and got[0]["room_corrected"]
    assert [r["id"] for r in search(engine, "corrected=yes")["results"]] == [photo["id"]]
    correct(engine, photo["id"], "fireplace", "yes")
    assert photo["id"] in [r["id"] for r in search(engine, "fireplace")["results"]]
    correct(engine, photo["id"], "fireplace", "no")  # the model's probability is above 0: the correction's 0 wins
    assert photo["id"] not in [r["id"] for r in search(engine, "fireplace>0", per_page=50)["results"]]
    assert search(engine, "fireplace>0")["total"] == 11
    for bad_target, bad_value, message in [("room_type", "garage", "not a room type"),
                                           ("fireplace", "maybe", "'yes' or 'no'"), ("pool", "yes", "neither")]:
        with pytest.raises(ValueError, match=message):
            correct(engine, photo["id"], bad_target, bad_value)
    assert uncorrect(engine, photo["id"], "room_type") and not uncorrect(engine, photo["id"], "room_type")
    back = search(engine, f"listing={photo['listing_id']}", per_page=50)["results"]
    assert next(r for r in back if r["id"] == photo["id"])["room_type"] == photo["room_type"]


def test_export_labels_is_read_by_both_trainers(index_copy, tmp_path):
    from estatelens.data.attribute_labels import read_attribute_labels
    from estatelens.data.dataset import load_collection

    engine = connect(index_copy, create=False)
    photos = search(engine, "", per_page=50)["results"]
    for i, p in enumerate(photos[:6]):
        correct(engine, p["id"], "room_type", ("kitchen", "bathroom")[i % 2])
    correct(engine, photos[7]["id"], "fireplace", "yes")
    correct(engine, photos[8]["id"], "fireplace", "no")
    counts = export_labels(engine, tmp_path / "labels.csv")
    assert counts == {"photos": 8, "room_type": 6, "fireplace": 2}
    rows = list(csv.DictReader(open(tmp_path / "labels.csv", encoding="utf-8")))
    assert set(rows[0]) == {"path", "label", "fireplace", "group"}
    coll = load_collection(tmp_path / "labels.csv", progress=False)
    assert sorted(s.label for s in coll.samples) == ["bathroom"] * 3 + ["kitchen"] * 3
    assert {s.group for s in coll.samples} <= {"L1", "L2", "L3"}
    fire = read_attribute_labels(tmp_path / "labels.csv", "fireplace")
    assert sorted(s.label for s in fire.samples) == ["no", "yes"]
    only_rooms = export_labels(engine, tmp_path / "rooms.csv", "room_type")
    assert only_rooms == {"photos": 6, "room_type": 6}
    with pytest.raises(ValueError, match="--target"):
        export_labels(engine, tmp_path / "x.csv", "colour")


def test_cli_index_search_export(tmp_path, capsys):
    photos = make_listing_folders(tmp_path / "photos", listings=2, per_listing=2, size=96)
    dbf = tmp_path / "l.db"
    assert main(["index", str(photos), "--db", str(dbf), "--facts", str(photos / "facts.csv"), "--quiet"]) == 0
    assert "4 photos: 4 tagged" in capsys.readouterr().out
    assert main(["index", str(photos), "--db", str(dbf), "--quiet"]) == 0
    assert "4 already indexed" in capsys.readouterr().out
    assert main(["search", "listings", "price<200000", "--db", str(dbf)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 listings for price<200000") and "listing L1" in out
    assert main(["search", "kök gott", "--db", str(dbf), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["interpreted"]["ignored"] == ["gott"]
    assert main(["search", "colour=red", "--db", str(dbf)]) == 2
    assert "no field 'colour'" in capsys.readouterr().err
    for nothing in ("pool", "fireplace>", ">0.3"):  # once the whole index, as if every photo matched
        assert main(["search", nothing, "--db", str(dbf)]) == 2
        said = capsys.readouterr()
        assert "nothing in the query was understood" in said.err and not said.out
    assert main(["search", "x", "--db", str(tmp_path / "missing.db")]) == 2
    assert "no such index" in capsys.readouterr().err
    assert main(["export-labels", "--db", str(dbf), "--out", str(tmp_path / "l.csv")]) == 0
    assert "0 corrected photos" in capsys.readouterr().out


# --- PostgreSQL ----------------------------------------------------------------------------------------

def test_postgresql_index_search_correct_and_reindex(postgres_db, listing_index, tmp_path, rooms_bundle):
    """The same scenario on PostgreSQL and on SQLite gives the same answers."""
    photos = tmp_path / "photos"
    shutil.copytree(listing_index[1], photos)
    (photos / "ÅS-1").mkdir()
    stripes("vertical", 160, seed=9).save(photos / "ÅS-1" / "hall.jpg")
    (photos / "facts.csv").write_text((listing_index[1] / "facts.csv").read_text(encoding="utf-8")
                                      + "ÅS-1,2 150 000,\"72,5\",Örebro\n", encoding="utf-8")
    answers = []
    for target in (postgres_db, tmp_path / "same.db"):
        engine = connect(target)
        assert engine.dialect.name == ("postgresql" if target is postgres_db else "sqlite")
        listings = read_listings(None, photos / "facts.csv")
        s = index_photos(rooms_bundle, [photos], engine, listings=listings, progress=False)
        assert s.n_tagged == 13
        assert [r["listing_id"] for r in search(engine, "city=örebro listing=ås-1 area<72.6 area>72.4")["results"]] == ["ÅS-1"]
        assert search(engine, "price>=2150000")["total"] == 1
        first = search(engine, "", per_page=50)["results"]
        correct(engine, first[3]["id"], "room_type", "kitchen")
        correct(engine, first[4]["id"], "balcony", "yes")
        assert index_photos(rooms_bundle, [photos], engine, progress=False).n_unchanged == 13
        with engine.begin() as conn:  # as if another model had tagged them: re-index re-tags all
            conn.execute(update(db.photos).values(model_version="old"))
        assert index_photos(rooms_bundle, [photos], engine, progress=False).n_tagged == 13
        answers.append([
            [(Path(r["path"]).name, r["listing_id"], r["room_type"], r["room_corrected"], r["score"],
              r["attributes"]["balcony"]["value"]) for r in search(engine, q, per_page=50, level=lvl)["results"]]
            if lvl == "photo" else
            [(r["id"], r["score"], r["facts"]) for r in search(engine, q, per_page=50, level=lvl)["results"]]
            for q, lvl in [("", "photo"), ("kitchen", "photo"), ("balkong", "photo"), ("price<400000 city=uppsala", "photo"),
                           ("kitchen", "listing"), ("corrected=yes", "photo"), ("fireplace<0.5", "photo"),
                           ("without balcony", "listing"), ("city=örebro", "listing")]])
        n = export_labels(engine, tmp_path / f"labels-{engine.dialect.name}.csv")
        assert n == {"photos": 2, "room_type": 1, "balcony": 1}
        engine.dispose()
    assert answers[0] == answers[1]


# Added to photos since schema 1 (schema 2: the out-of-distribution score and open plan; 3: the listing checks).
NEW_COLUMNS = ("unusual", "also", "also_probability", "quality", "quality_reasons", "sharpness", "exposure",
               "tilt_degrees", "colour_cast", "faces", "face_boxes", "hashes", "duplicate_group", "watermark",
               "watermark_probability", "watermark_box")
NEW_INDEXES = ("ix_photos_also", "ix_photos_quality", "ix_photos_duplicate_group", "ix_photos_watermark")


def test_an_index_from_before_the_unusual_column_is_upgraded_when_opened(index_copy):
    import sqlite3

    with sqlite3.connect(index_copy) as conn:  # what schema 1 wrote: none of the newer columns
        assert conn.execute("SELECT count(*) FROM photos WHERE unusual IS NOT NULL").fetchone()[0] == 12
        for index in NEW_INDEXES:
            conn.execute(f"DROP INDEX {index}")
        for column in NEW_COLUMNS:
            conn.execute(f"ALTER TABLE photos DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    engine = connect(index_copy, create=False)
    from sqlalchemy import inspect

    assert set(NEW_INDEXES) <= {i["name"] for i in inspect(engine).get_indexes("photos")}
    assert set(NEW_COLUMNS) <= {c["name"] for c in inspect(engine).get_columns("photos")}
    with engine.connect() as conn:
        assert conn.execute(select(db.meta.c.value).where(db.meta.c.key == "schema")).scalar() == str(db.SCHEMA_VERSION)
        assert conn.execute(select(db.photos.c.unusual)).scalars().all() == [None] * 12  # empty until re-indexed
    found = search(engine, "", per_page=50)
    assert found["total"] > 0 and all(r["unusual"] is None for r in found["results"])
    connect(index_copy, create=False)  # a second opening finds nothing to do


def test_postgresql_index_from_before_the_new_columns_is_upgraded(postgres_db, listing_index, rooms_bundle):
    engine = connect(postgres_db)
    assert index_photos(rooms_bundle, [listing_index[1]], engine, progress=False).n_tagged == 12
    with engine.begin() as conn:  # back to what schema 1 wrote
        for index in NEW_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX {index}")
        for column in NEW_COLUMNS:
            conn.exec_driver_sql(f"ALTER TABLE photos DROP COLUMN {column}")
        conn.execute(update(db.meta).where(db.meta.c.key == "schema").values(value="1"))
    engine.dispose()
    engine = connect(postgres_db, create=False)
    from sqlalchemy import inspect

    assert set(NEW_COLUMNS) <= {c["name"] for c in inspect(engine).get_columns("photos")}
    assert set(NEW_INDEXES) <= {i["name"] for i in inspect(engine).get_indexes("photos")}
    with engine.connect() as conn:
        assert conn.execute(select(db.meta.c.value).where(db.meta.c.key == "schema")).scalar() == str(db.SCHEMA_VERSION)
    assert search(engine, "", per_page=50)["total"] == 12
    assert index_photos(rooms_bundle, [listing_index[1]], engine, progress=False, retag=True).n_tagged == 12
    with engine.connect() as conn:  # re-indexing fills them
        assert None not in conn.execute(select(db.photos.c.unusual)).scalars().all()
    engine.dispose()
