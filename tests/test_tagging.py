"""`estatelens tag` on real (small) folders: every row and status, sorting on disk, resuming, formats."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from estatelens.bundle import load_bundle
from estatelens.cli import main
from estatelens.data.images import read_photo
from estatelens.data.transforms import Preprocessing, eval_array, eval_preset
from estatelens.tagging import TagJob, run_tagging
from estatelens.tagging import job as job_module
from estatelens.tagging.job import columns, journal_path

from conftest import SHARED_DATA, has_shared_data, stripes, write_broken_files


def make_photo_folder(root: Path) -> dict[str, str]:
    """Good photos of both classes (some in a subfolder, some not square) next to every kind of
    broken file. Returns {relative path: expected class or expected reason part}."""
    expected = {}
    for i in range(6):
        for orientation in ("horizontal", "vertical"):
            rel = f"{'sub/' if i % 2 else ''}{orientation}_{i}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            im = stripes(orientation, 96, seed=500 + i + (0 if orientation == "horizontal" else 50))
            if i == 5:
                im = im.resize((120, 80))
            im.save(root / rel, quality=92)
            expected[rel] = orientation
    broken = write_broken_files(root / "broken")
    del broken  # whole.jpg is a good horizontal photo; the rest are broken
    expected.update({"broken/whole.jpg": "horizontal", "broken/truncated.jpg": "truncated",
                     "broken/empty.jpg": "empty", "broken/notes.jpg": "not an image",
                     "broken/tiny.jpg": "too small"})
    (root / "readme.txt").write_text("photos of the flat\n")
    expected["readme.txt"] = "not an image file"
    return expected


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def test_tag_reports_every_file_with_its_status(tmp_path, stripes_oracle):
    photos = tmp_path / "photos"
    expected = make_photo_folder(photos)
    out = tmp_path / "tags.csv"
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(out), "--quiet"]) == 0
    rows = read_csv_rows(out)
    assert list(rows[0]) == columns(sort_into=False)
    by_rel = {os.path.relpath(r["path"], photos): r for r in rows}
    assert set(by_rel) == set(expected)  # one row per file, nothing lost, nothing twice
    assert len(rows) == len(expected)
    correct = 0
    for rel, want in expected.items():
        row = by_rel[rel]
        if want in ("horizontal", "vertical"):
            assert row["status"] == "ok", row
            correct += row["room_type"] == want
            w, h = Image.open(photos / rel).size
            assert (int(row["width"]), int(row["height"])) == (w, h)
            p1, p2 = float(row["probability_1"]), float(row["probability_2"])
            assert row["class_1"] == row["room_type"] and float(row["probability"]) == p1
            assert p1 >= p2 and abs(p1 + p2 - 1) < 2e-3  # two classes: top-2 covers everything
            assert row["class_3"] == ""  # a two-class model has no third class
        else:
            assert want in row["status"], row
            assert row["room_type"] == "" and row["probability"] == ""
    assert correct == 13
    assert not journal_path(out).exists()


def test_xlsx_json_jsonl_parquet_hold_the_same_rows(tmp_path, stripes_oracle):
    openpyxl = pytest.importorskip("openpyxl")
    photos = tmp_path / "photos"
    expected = make_photo_folder(photos)
    bundle = load_bundle(stripes_oracle)
    outs = {}
    for ext in (".xlsx", ".json", ".jsonl", ".csv"):
        outs[ext] = tmp_path / f"tags{ext}"
        run_tagging(bundle, TagJob([str(photos)], str(outs[ext]), workers=1, progress=False))
    ws = openpyxl.load_workbook(outs[".xlsx"]).active
    values = list(ws.values)
    assert list(values[0]) == columns(sort_into=False)
    assert len(values) == 1 + len(expected)
    assert ws.auto_filter.ref == f"A1:O{len(expected) + 1}"  # 15 columns: path ... also, also_probability ... height
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["A"].width >= 40  # the path column is wide enough to read
    xlsx_rows = [dict(zip(values[0], v)) for v in values[1:]]
    json_rows = json.loads(outs[".json"].read_text())
    jsonl_rows = [json.loads(line) for line in outs[".jsonl"].read_text().splitlines()]
    csv_rows = read_csv_rows(outs[".csv"])
    assert [r["path"] for r in xlsx_rows] == [r["path"] for r in json_rows] == [r["path"] for r in jsonl_rows] \
        == [r["path"] for r in csv_rows]
    for a, b in zip(xlsx_rows, json_rows):
        assert a["status"] == b["status"] and a["room_type"] == b["room_type"]
        assert (a["probability"] is None and b["probability"] is None) or abs(a["probability"] - b["probability"]) < 1e-9
    pq = pytest.importorskip("pyarrow.parquet")
    parquet = tmp_path / "tags.parquet"
    run_tagging(bundle, TagJob([str(photos)], str(parquet), workers=1, progress=False))
    table = pq.read_table(parquet).to_pylist()
    assert [r["path"] for r in table] == [r["path"] for r in json_rows]
    assert [r["probability"] for r in table] == [r["probability"] for r in json_rows]


@pytest.mark.skipif(not has_shared_data(), reason="needs ../shared/data")
def test_parquet_holds_every_column_of_the_shipped_model_with_checks(tmp_path):
    """The bundled model's rows carry numbers the stripes oracle's do not (the unusual score, the
    checks' measures, the crop rectangle): Parquet types each column by its values, as the JSON
    Lines output holds them."""
    pq = pytest.importorskip("pyarrow.parquet")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("102_bedroom.jpg", "102_kitchen.jpg", "102_frontal.jpg", "102_bathroom.jpg"):
        (photos / name).write_bytes((SHARED_DATA / "houses" / "photos" / name).read_bytes())
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    bundle = load_bundle("rooms")
    rows = {}
    for ext in (".parquet", ".jsonl"):
        out = tmp_path / f"tags{ext}"
        run_tagging(bundle, TagJob([str(photos)], str(out), workers=1, progress=False, checks=True, crops="crops"))
        rows[ext] = (pq.read_table(out).to_pylist() if ext == ".parquet"
                     else [json.loads(line) for line in out.read_text().splitlines()])
    assert len(rows[".parquet"]) == 5
    table = pq.read_table(tmp_path / "tags.parquet")
    for a, b in zip(rows[".parquet"], rows[".jsonl"]):
        assert a.keys() == b.keys()
        for c, v in b.items():
            if isinstance(v, float):
                assert a[c] == pytest.approx(v), c
                assert str(table.schema.field(c).type) == "double", c
            elif v is not None and not isinstance(v, (str, bool, int)):
                assert a[c] == json.dumps(v), c
            else:
                assert a[c] == v, c
    ok = [r for r in rows[".parquet"] if r["status"] == "ok"]
    assert len(ok) == 4 and all(isinstance(r["unusual"], float) and isinstance(r["width"], int) for r in ok)


def test_unknown_output_format_fails_before_any_work(tmp_path, stripes_oracle, capsys):
    assert main(["tag", str(tmp_path), "--model", str(stripes_oracle), "--out", str(tmp_path / "t.docx")]) == 2
    assert "unknown output format" in capsys.readouterr().err


def test_sort_into_copies_links_and_never_overwrites(tmp_path, stripes_oracle):
    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    stripes("horizontal", 96, seed=1).save(photos / "a" / "room.jpg")
    stripes("horizontal", 96, seed=2).save(photos / "b" / "room.jpg")  # same name, other photo
    stripes("vertical", 96, seed=3).save(photos / "b" / "other.jpg")
    (photos / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    sorted_dir = tmp_path / "sorted"
    (sorted_dir / "horizontal").mkdir(parents=True)
    (sorted_dir / "horizontal" / "room.jpg").write_bytes(b"someone else's file")
    out = tmp_path / "tags.csv"
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(out), "--quiet",
                 "--sort-into", str(sorted_dir)]) == 0
    rows = {os.path.relpath(r["path"], photos): r for r in read_csv_rows(out)}
    assert (sorted_dir / "horizontal" / "room.jpg").read_bytes() == b"someone else's file"
    placed = {rel: Path(r["sorted_to"]) for rel, r in rows.items() if r["sorted_to"]}
    assert set(placed) == {"a/room.jpg", "b/room.jpg", "b/other.jpg"}
    assert rows["b/broken.jpg"]["sorted_to"] == ""
    for rel, dest in placed.items():
        assert dest.parent.name == rows[rel]["room_type"]
        assert dest.read_bytes() == (photos / rel).read_bytes()
        assert not dest.is_symlink() and dest.stat().st_ino != (photos / rel).stat().st_ino  # copies
    assert len({p.name for p in placed.values()}) == 3  # room.jpg twice became room-2/room-3

    linked = tmp_path / "linked"
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(tmp_path / "t2.csv"),
                 "--quiet", "--sort-into", str(linked), "--link"]) == 0
    for r in read_csv_rows(tmp_path / "t2.csv"):
        if r["sorted_to"]:
            assert os.path.samefile(r["sorted_to"], r["path"])
    symbolic = tmp_path / "symbolic"
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(tmp_path / "t3.csv"),
                 "--quiet", "--sort-into", str(symbolic), "--symlink"]) == 0
    links = [p for p in symbolic.rglob("*.jpg")]
    assert len(links) == 3 and all(p.is_symlink() for p in links)


def test_min_confidence_sends_unsure_photos_to_uncertain(tmp_path, stripes_oracle):
    photos = tmp_path / "photos"
    make_photo_folder(photos)
    bundle = load_bundle(stripes_oracle)
    first = tmp_path / "all.json"
    run_tagging(bundle, TagJob([str(photos)], str(first), workers=1, progress=False))
    probs = sorted(r["probability"] for r in json.loads(first.read_text()) if r["status"] == "ok")
    cut = (probs[len(probs) // 2 - 1] + probs[len(probs) // 2]) / 2
    if probs[len(probs) // 2 - 1] == probs[len(probs) // 2]:
        pytest.skip("probabilities tie at the median")
    out = tmp_path / "cut.json"
    sorted_dir = tmp_path / "sorted"
    run_tagging(bundle, TagJob([str(photos)], str(out), sort_into=str(sorted_dir), min_confidence=cut,
                               workers=1, progress=False))
    rows = [r for r in json.loads(out.read_text()) if r["status"] == "ok"]
    for r in rows:
        if r["probability"] < cut:
            assert r["room_type"] == "uncertain" and Path(r["sorted_to"]).parent.name == "uncertain"
            assert r["class_1"] in ("horizontal", "vertical")  # the guess is still there
        else:
            assert r["room_type"] == r["class_1"]
    assert sum(r["room_type"] == "uncertain" for r in rows) == len(probs) // 2


class _Interrupt:
    """Wraps tag_photos so that the run is stopped (as by Ctrl-C) after `after` photos."""

    def __init__(self, after: int | None, real):
        self.after, self.real, self.paths = after, real, []

    def __call__(self, bundle, paths, **kwargs):
        for k, row in enumerate(self.real(bundle, paths, **kwargs)):
            if self.after is not None and k == self.after:
                raise KeyboardInterrupt
            self.paths.append(row.path)
            yield row


def test_interrupted_run_resumes_and_tags_each_photo_once(tmp_path, stripes_oracle, monkeypatch):
    photos = tmp_path / "photos"
    expected = make_photo_folder(photos)
    bundle = load_bundle(stripes_oracle)
    out, sorted_dir = tmp_path / "tags.csv", tmp_path / "sorted"
    job = TagJob([str(photos)], str(out), sort_into=str(sorted_dir), batch_size=4, workers=1, progress=False)
    real = job_module.tag_photos

    first = _Interrupt(10, real)
    monkeypatch.setattr(job_module, "tag_photos", first)
    with pytest.raises(KeyboardInterrupt):
        run_tagging(bundle, job)
    journal = journal_path(out)
    assert journal.exists() and not out.exists()
    journaled = [json.loads(line)["path"] for line in journal.read_text().splitlines()[1:]]
    assert len(journaled) == 8  # two full batches of 4 were saved; the photos after them were not

    second = _Interrupt(None, real)
    monkeypatch.setattr(job_module, "tag_photos", second)
    summary = run_tagging(bundle, job, log=lambda m: None)
    assert summary.n_resumed == 8
    assert sorted(second.paths) == sorted(set(map(str, (photos / r for r in expected))) - set(journaled))
    rows = read_csv_rows(out)
    assert sorted(os.path.relpath(r["path"], photos) for r in rows) == sorted(expected)
    # Photos copied before the interruption but not yet journaled are recognised, not copied twice.
    n_ok = sum(r["status"] == "ok" for r in rows)
    assert len([p for p in sorted_dir.rglob("*") if p.is_file()]) == n_ok
    assert not journal.exists()

    # The same result as a run that was never interrupted.
    monkeypatch.setattr(job_module, "tag_photos", real)
    clean = tmp_path / "clean.csv"
    run_tagging(bundle, TagJob([str(photos)], str(clean), batch_size=4, workers=1, progress=False))
    assert [(r["path"], r["room_type"]) for r in read_csv_rows(clean)] == [(r["path"], r["room_type"]) for r in rows]


def test_a_journal_from_other_settings_is_not_mixed_in(tmp_path, stripes_oracle, monkeypatch, capsys):
    photos = tmp_path / "photos"
    expected = make_photo_folder(photos)
    out = tmp_path / "tags.csv"
    monkeypatch.setattr(job_module, "tag_photos", _Interrupt(5, job_module.tag_photos))
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(out), "--quiet",
                 "--batch-size", "2"]) == 130
    monkeypatch.undo()
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(out), "--quiet",
                 "--min-confidence", "0.9"]) == 2
    assert "--restart" in capsys.readouterr().err
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(out), "--quiet",
                 "--min-confidence", "0.9", "--restart"]) == 0
    assert len(read_csv_rows(out)) == len(expected)


def test_a_text_file_lists_the_photos(tmp_path, stripes_oracle):
    photos = tmp_path / "photos"
    make_photo_folder(photos)
    listing = tmp_path / "list.txt"
    listing.write_text("# two photos and one that is gone\nphotos/horizontal_0.jpg\n\n"
                       f"{photos / 'sub' / 'vertical_1.jpg'}\nphotos/missing.jpg\n")
    out = tmp_path / "tags.jsonl"
    assert main(["tag", str(listing), "--model", str(stripes_oracle), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["horizontal_0.jpg", "vertical_1.jpg", "missing.jpg"]
    assert [r["status"] for r in rows] == ["ok", "ok", "file not found"]



def test_a_photo_named_twice_is_tagged_once(tmp_path, stripes_oracle, monkeypatch):
    """Named itself, through another spelling of its path, in a list, and inside a folder also named:
    one row, one copy in the sorted folders (it was three rows and name-2, name-3 copies)."""
    photos = tmp_path / "photos"
    expected = make_photo_folder(photos)
    one = photos / "horizontal_0.jpg"
    listing = tmp_path / "list.txt"
    listing.write_text("photos/horizontal_0.jpg\nphotos/sub/../horizontal_0.jpg\nphotos/missing.jpg\nphotos/missing.jpg\n")
    out, sorted_dir = tmp_path / "tags.csv", tmp_path / "sorted"
    monkeypatch.chdir(tmp_path)
    assert main(["tag", str(one), "photos", "./photos/horizontal_0.jpg", str(listing), str(photos / "sub"),
                 "--model", str(stripes_oracle), "--out", str(out), "--quiet", "--sort-into", str(sorted_dir)]) == 0
    rows = read_csv_rows(out)
    names = sorted(Path(r["path"]).name for r in rows)
    assert names == sorted([*(Path(k).name for k in expected), "missing.jpg"])
    assert len(list(sorted_dir.rglob("horizontal_0*.jpg"))) == 1

def test_fast_preprocessing_matches_the_torchvision_preset(tmp_path):
    for size, crop in ((64, 1.0), (56, 0.875)):
        pre = Preprocessing(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), crop)
        level = 1 / (255 * np.asarray(pre.std, dtype=np.float32))[:, None, None]  # one grey level
        for shape in ((97, 131), (131, 97), (64, 64), (300, 200)):
            im = stripes("vertical", 160).resize(shape)
            diff = np.abs(eval_array(im, pre) - eval_preset(pre)(im).numpy()) / level
            assert eval_array(im, pre).shape == (3, size, size)
            assert diff.max() <= 1.01 and diff.mean() < 0.5  # sharp synthetic stripes; photos: ~0.005


def test_read_photo_gives_the_full_size_even_when_decoding_small(tmp_path):
    im = stripes("horizontal", 400).resize((800, 600))
    im.save(tmp_path / "big.jpg", quality=90)
    decoded, size = read_photo(tmp_path / "big.jpg", 100)
    assert size == (800, 600) and decoded.size[0] < 800  # draft mode decoded it at a smaller scale
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: a viewer shows it turned by 90 degrees
    im.save(tmp_path / "turned.jpg", exif=exif)
    decoded, size = read_photo(tmp_path / "turned.jpg")
    assert size == (600, 800) and decoded.size == (600, 800)


def test_int8_bundle_agrees_with_the_float_bundle(tmp_path, stripes_bundle):
    from estatelens.quantize import quantize_bundle

    photos = tmp_path / "photos"
    expected = make_photo_folder(photos)
    good = [str(photos / rel) for rel, want in expected.items() if want in ("horizontal", "vertical")]
    q = quantize_bundle(stripes_bundle, tmp_path / "q.estatelens", good, weights="fp16")
    assert q.info["quantization"]["calibration_photos"] == len(good)
    f = load_bundle(stripes_bundle)
    pf, pq = f.predict_files(good), q.predict_files(good)
    assert (pf.argmax(1) == pq.argmax(1)).mean() >= 0.9
    assert np.abs(pf - pq).max() < 0.25
    assert len(np.unique(pq)) > 20  # probabilities stay continuous, not on an int8 grid
    assert (q.path / "model.onnx").stat().st_size < (f.path / "model.onnx").stat().st_size


@pytest.mark.skipif(not has_shared_data(), reason="needs ../shared/data (houses photos)")
def test_the_bundled_model_tags_held_out_listing_photos(tmp_path):
    from estatelens.data.dataset import load_collection

    bundle = load_bundle("rooms")
    assert bundle.classes == ["bathroom", "bedroom", "dining_room", "entrance_hall", "exterior",
                              "kitchen", "living_room"]
    assert sum(p.stat().st_size for p in bundle.path.iterdir()) < 20e6
    assert "quantization" in bundle.info
    # The houses the bundled model never saw: the test split of the same seeded split it was built with.
    held_out = load_collection(SHARED_DATA / "houses" / "photos.csv", progress=False).split("test")
    assert len(held_out) >= 40
    out = tmp_path / "houses.csv"
    assert main(["tag", *(s.path for s in held_out), "--out", str(out), "--quiet"]) == 0
    rows = read_csv_rows(out)
    assert [r["path"] for r in rows] == [s.path for s in held_out]
    assert all(r["status"] == "ok" for r in rows)
    accuracy = np.mean([r["room_type"] == s.label for r, s in zip(rows, held_out)])
    assert accuracy >= 0.85


def test_odd_file_names_and_locations_do_not_stop_or_double_a_run(tmp_path, stripes_oracle, monkeypatch):
    openpyxl = pytest.importorskip("openpyxl")
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [os.fsdecode(b"caf\xe9.jpg"),  # not UTF-8: Python carries the byte as a lone surrogate
             "a\x01b.jpg",                  # a control character, legal in a Linux file name
             "=1+2.jpg", "plain.jpg"]      # would be a formula in a spreadsheet
    for i, name in enumerate(names):
        stripes("vertical", 80, seed=i).save(os.path.join(photos, name), format="JPEG")
    monkeypatch.chdir(tmp_path)
    for ext in (".csv", ".xlsx", ".json"):
        assert main(["tag", "photos", "--model", str(stripes_oracle), "--out", f"t{ext}", "--quiet",
                     "--sort-into", "photos/sorted"]) == 0
        rows = read_csv_rows(tmp_path / "t.csv") if ext == ".csv" else None
        if ext == ".xlsx":
            values = list(openpyxl.load_workbook(tmp_path / "t.xlsx").active.values)[1:]
            rows = [dict(zip(columns(True), v)) for v in values]
        if ext == ".json":
            rows = json.loads((tmp_path / "t.json").read_text())
        # the sort-into folder inside the input folder is not tagged on later runs
        assert len(rows) == 4 and all(r["status"] == "ok" and r["room_type"] == "vertical" for r in rows)
    shown = sorted(os.path.basename(r["path"]) for r in rows)
    assert "caf\\xe9.jpg" in shown and "=1+2.jpg" in shown
    assert len(list((tmp_path / "photos" / "sorted" / "vertical").iterdir())) == 4

    # Interrupted in one folder with a relative path, resumed from another with an absolute one:
    # every photo once.
    monkeypatch.setattr(job_module, "tag_photos", _Interrupt(2, job_module.tag_photos))
    with pytest.raises(KeyboardInterrupt):
        run_tagging(load_bundle(stripes_oracle), TagJob(["photos"], "r.csv", batch_size=1, workers=1, progress=False))
    monkeypatch.undo()
    monkeypatch.chdir("/")
    run_tagging(load_bundle(stripes_oracle), TagJob([str(photos)], str(tmp_path / "r.csv"), batch_size=1,
                                                    workers=1, progress=False), log=lambda m: None)
    rows = read_csv_rows(tmp_path / "r.csv")
    assert len(rows) == 4 + 4  # the four photos and the four copies in photos/sorted, each once
    assert len({os.path.abspath(os.path.join(tmp_path, r["path"])) for r in rows}) == 8


def test_a_journal_killed_before_its_first_line_does_not_block_reruns(tmp_path, stripes_oracle):
    photos = tmp_path / "photos"
    make_photo_folder(photos)
    out = tmp_path / "tags.csv"
    journal_path(out).write_text("")
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(out), "--quiet"]) == 0
    assert len(read_csv_rows(out)) == 18


def test_a_folder_or_list_that_is_not_there_is_an_error_not_a_row(tmp_path, stripes_oracle, capsys):
    """`tag nonexist` wrote a 'file not found' row and exited 0: a script could not tell a typo from
    a bad photo. A missing photo named on its own is still a row (test_tag_crops_adds_the_columns)."""
    out = tmp_path / "tags.csv"
    for gone in ("photoz", "list-of-photos.txt"):
        assert main(["tag", str(tmp_path / gone), "--model", str(stripes_oracle), "--out", str(out), "--quiet"]) == 2
        assert f"{gone}: no such folder, list or photo" in capsys.readouterr().err
        assert not out.exists()
