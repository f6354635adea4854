"""The Python entry point: estatelens.Tagger gives what `estatelens tag` writes."""
from __future__ import annotations

import csv

import pytest

import estatelens
from conftest import make_listing_folders, write_broken_files
from estatelens.cli import main


@pytest.fixture
def sample_photos(tmp_path):
    """12 stripes photos in listing folders, and a CSV of facts that is no photo."""
    return make_listing_folders(tmp_path / "photos", size=200)


def test_tagger_rows_are_the_cli_rows(tmp_path, sample_photos):
    tagger = estatelens.Tagger("rooms", threads=1)
    assert "kitchen" in tagger.classes and "fireplace" in tagger.attributes
    rows = tagger.tag(sample_photos)
    assert len(rows) > 0 and all(set(r) == set(tagger.columns) for r in rows)
    out = tmp_path / "tags.csv"
    assert main(["tag", str(sample_photos), "--out", str(out), "--quiet", "--threads", "1"]) == 0
    with open(out, newline="", encoding="utf-8-sig") as f:  # the CSV opens in Excel: it starts with a BOM
        written = list(csv.DictReader(f))
    assert [r["path"] for r in written] == [r["path"] for r in rows]
    assert [r["room_type"] or None for r in written] == [r["room_type"] for r in rows]  # CSV: None is empty
    assert [r["status"] for r in written] == [r["status"] for r in rows]
    for w, r in zip(written, rows):
        if r["status"] == "ok":
            assert float(w["probability"]) == pytest.approx(r["probability"], abs=1e-3)
    assert list(written[0]) == rows.columns


def test_bad_files_are_rows_that_say_why(tmp_path):
    reasons = write_broken_files(tmp_path / "mixed")
    rows = estatelens.Tagger(threads=1).tag(tmp_path / "mixed")
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in rows}
    assert by_name["whole.jpg"]["status"] == "ok"
    for name, reason in reasons.items():
        assert reason in by_name[name]["status"], (name, by_name[name]["status"])


def test_to_pandas_and_run(tmp_path, sample_photos):
    pd = pytest.importorskip("pandas")
    tagger = estatelens.Tagger(threads=1, min_confidence=0.999)
    rows = tagger.tag([sample_photos])
    df = rows.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == tagger.columns and len(df) == len(rows)
    ok = df["status"] == "ok"  # facts.csv is a row too, with its reason
    assert ok.sum() == 12 and (df.loc[ok, "room_type"] == "uncertain").all()  # stripes: unlike any room
    summary = tagger.run(sample_photos, tmp_path / "out.jsonl", sort_into=tmp_path / "sorted", progress=False)
    assert summary.n_rows == len(rows) and (tmp_path / "sorted").is_dir()


def test_load_bundle_and_bad_options():
    assert estatelens.load_bundle("rooms").classes == estatelens.Tagger(threads=1).classes
    with pytest.raises(ValueError, match="min_confidence"):
        estatelens.Tagger(min_confidence=2)
    with pytest.raises(AttributeError):
        estatelens.Nope  # noqa: B018
