"""The listing checks (issue 16): photo quality, faces, and where they show (tag --checks, the
index, search, the API). Each check on constructed photos: a drawn room and its blurred, turned,
darkened, brightened, tinted, shrunk and letterboxed copies; a face from the sample photo that
ships with matplotlib (Grace Hopper's portrait) pasted into a room."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from conftest import SHARED_DATA, has_shared_data
from estatelens.cli import main

pytest.importorskip("cv2")
pytest.importorskip("imagehash")

from estatelens.checks.faces import FaceDetector, blur_faces, format_boxes, parse_boxes  # noqa: E402
from estatelens.checks.photo import for_room, make_checker  # noqa: E402
from estatelens.checks.quality import Thresholds, measure, parse_size  # noqa: E402
from estatelens.data.images import read_photo  # noqa: E402


def room(seed: int = 0, size=(1024, 768)) -> Image.Image:
    """A drawn room: two walls meeting in a corner, door and window frames and pictures (vertical
    edges), a floor, furniture blocks, and a camera's blur and noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    im = Image.new("RGB", size)
    d = ImageDraw.Draw(im)
    colour = lambda lo, hi: tuple(int(v) for v in rng.integers(lo, hi, 3))  # noqa: E731
    wall = tuple(int(v) for v in rng.integers(170, 215) + rng.integers(-6, 7, 3))  # white-ish, not a cast
    d.rectangle((0, 0, w, int(h * 0.72)), fill=wall)
    d.rectangle((0, int(h * 0.72), w, h), fill=colour(90, 150))
    d.rectangle((int(w * rng.uniform(0.35, 0.65)), 0, w, int(h * 0.72)), fill=tuple(c - 25 for c in wall))
    for _ in range(4):
        x0, bw = int(rng.uniform(0.05, 0.8) * w), int(rng.uniform(0.08, 0.15) * w)
        d.rectangle((x0, int(rng.uniform(0.1, 0.3) * h), x0 + bw, int(rng.uniform(0.5, 0.72) * h)),
                    fill=colour(30, 160), outline=(245, 245, 245), width=6)
    for _ in range(3):
        x0, y0 = int(rng.uniform(0, 0.8) * w), int(rng.uniform(0.55, 0.75) * h)
        d.rectangle((x0, y0, x0 + int(rng.uniform(0.1, 0.25) * w), min(h, y0 + int(0.2 * h))), fill=colour(20, 200))
    a = np.asarray(im.filter(ImageFilter.GaussianBlur(1.0))).astype(np.float32) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def turned(im: Image.Image, degrees: float) -> Image.Image:
    """Turned anticlockwise by `degrees`, cropped to the largest rectangle without black wedges."""
    w, h = im.size
    t = np.radians(abs(degrees))
    k = 1 / (np.cos(t) + max(w, h) / min(w, h) * np.sin(t))
    cw, ch = w * k, h * k
    return im.rotate(degrees, resample=Image.BILINEAR).crop(
        (int((w - cw) / 2) + 1, int((h - ch) / 2) + 1, int((w + cw) / 2) - 1, int((h + ch) / 2) - 1))


def scaled(im: Image.Image, gains) -> Image.Image:
    return Image.fromarray((np.asarray(im).astype(np.float32) * np.asarray(gains)).clip(0, 255).astype(np.uint8))


def hopper() -> Image.Image:
    import matplotlib

    return Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")).convert("RGB")


def with_face(base: Image.Image, height: float = 0.3, at=(0.55, 0.2)) -> tuple[Image.Image, tuple]:
    """`base` with Grace Hopper's head (from her portrait) pasted in; (photo, true box as fractions)."""
    face = hopper().crop((60, 30, 460, 330))  # her head and shoulders' top: the face fills the middle
    w, h = base.size
    fh = int(height * h)
    fw = int(fh * face.width / face.height)
    x, y = int(at[0] * w), int(at[1] * h)
    out = base.copy()
    out.paste(face.resize((fw, fh), Image.BILINEAR), (x, y))
    return out, (x / w, y / h, (x + fw) / w, (y + fh) / h)


def overlap(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / ((a[2] - a[0]) * (a[3] - a[1]))


# --- quality ------------------------------------------------------------------------------------

def test_a_clean_room_passes_and_each_degraded_copy_fails_for_its_reason():
    base = room(0)
    clean = measure(base)
    assert clean.passed, clean.reasons
    assert abs(clean.tilt_degrees) < 1 and -1 < clean.exposure < 0.9

    def reasons(im):
        return [r.split(" (")[0] for r in measure(im).reasons]

    assert reasons(base.filter(ImageFilter.GaussianBlur(7))) == ["blurred"]
    left, right = measure(turned(base, 6)), measure(turned(base, -6))
    assert [r.split(" (")[0] for r in left.reasons] == ["tilted"] == [r.split(" (")[0] for r in right.reasons]
    assert left.tilt_degrees < -4 < 4 < right.tilt_degrees  # the sign says which way it leans
    assert abs(measure(turned(base, 2)).tilt_degrees) < 4  # a slight lean passes
    assert "too dark" in reasons(scaled(base, 0.25))
    assert "overexposed" in reasons(scaled(base, 3.0))
    assert reasons(scaled(base, (1.0, 0.8, 0.55))) == ["colour cast"]  # tungsten light
    assert reasons(ImageOps.grayscale(base).convert("RGB")) == []  # greyscale is not a cast
    assert reasons(base.resize((400, 300))) == ["too small"]
    boxed = Image.new("RGB", (1024, 1024), "white")
    boxed.paste(base, (0, 128))
    assert reasons(boxed) == []  # white letterbox bars are not blown highlights


def test_thresholds_and_the_portal_minimum_are_settings():
    base = room(1)
    assert measure(base).passed
    strict = Thresholds(min_long_side=1600, min_short_side=1200)
    assert measure(base, thresholds=strict).reasons == ["too small (1024x768, minimum 1600x1200)"]
    assert measure(base, size=(2048, 1536), thresholds=strict).passed  # decoded small, judged on its full size
    assert parse_size("1024x768") == (1024, 768) == parse_size("768x1024")
    for bad in ("big", "0x10", "10x"):
        with pytest.raises(ValueError, match="--min-size"):
            parse_size(bad)


def test_an_exterior_is_not_judged_for_colour_cast():
    checks = {"quality": "fail", "quality_reasons": "colour cast (35)", "colour_cast": 35.0}
    assert for_room(checks, "exterior")["quality"] == "pass"
    assert for_room(checks, "kitchen") == checks


@pytest.mark.skipif(not has_shared_data(), reason="../shared/data is not here")
def test_a_real_listing_photo_and_its_degraded_copies():
    path = SHARED_DATA / "houses" / "photos" / "102_kitchen.jpg"
    im, size = read_photo(path, 256)
    q = measure(im, size)
    assert q.sharpness > 40 and abs(q.tilt_degrees) < 4 and -1.2 < q.exposure < 0.9
    assert measure(im.filter(ImageFilter.GaussianBlur(4)), size).sharpness < q.sharpness / 4
    assert abs(measure(turned(im, -6), size).tilt_degrees - 6) < 1.5



@pytest.mark.skipif(not has_shared_data(), reason="../shared/data is not here")
def test_quality_does_not_depend_on_the_watermark_check_being_asked_for():
    """`--watermarks` makes the tagger decode at the watermark network's larger reading size; the
    quality measures, taken at 256 px, must come out as with `--checks` alone (they once read
    twice the sharpness there and turned a pass into a fail)."""
    plain, with_marks = make_checker(True), make_checker(True, watermarks=True)
    assert with_marks.min_side > plain.min_side
    photos = SHARED_DATA / "houses" / "photos"
    for name in ("120_bathroom.jpg", "108_bathroom.jpg", "102_kitchen.jpg", "102_frontal.jpg", "105_bedroom.jpg"):
        small, size = read_photo(photos / name, plain.min_side)
        large, _ = read_photo(photos / name, with_marks.min_side)
        a, b = plain(small, size), with_marks(large, size)
        assert (a["quality"], a["quality_reasons"]) == (b["quality"], b["quality_reasons"]), name
        assert b["sharpness"] == pytest.approx(a["sharpness"], rel=0.05), name
        assert abs(a["colour_cast"] - b["colour_cast"]) < 2 and abs(a["exposure"] - b["exposure"]) < 0.05, name
        # a PNG is decoded whole however small it is asked for: the same measures again
        png = Image.open(photos / name).convert("RGB")
        assert plain(png, size)["sharpness"] == pytest.approx(a["sharpness"], rel=0.1), name

# --- faces --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_the_sample_portrait_has_one_face_and_a_room_none(detector):
    (box,) = detector.detect(np.asarray(hopper().resize((256, 300))))
    assert 0.2 < box[0] < box[2] < 0.8 and 0.1 < box[1] < box[3] < 0.6  # her face, not her uniform
    for seed in range(4):
        assert detector.detect(np.asarray(room(seed).resize((341, 256)))) == []


def test_a_face_pasted_into_a_room_is_found_where_it_is(detector):
    photo, truth = with_face(room(2), 0.3)
    boxes = detector.detect(np.asarray(photo.resize((341, 256))))
    assert len(boxes) == 1 and overlap(boxes[0], truth) > 0.3
    assert parse_boxes(format_boxes(boxes)) == [tuple(round(v, 3) for v in boxes[0])]
    assert format_boxes([]) is None and parse_boxes(None) == []


def test_blur_faces_blurs_the_boxes_and_leaves_the_rest(tmp_path):
    photo, truth = with_face(room(3), 0.3)
    photo.save(tmp_path / "p.png")
    out = blur_faces(tmp_path / "p.png", tmp_path / "out" / "p.png", [truth], margin=0.0)
    before, after = np.asarray(photo).astype(int), np.asarray(Image.open(out)).astype(int)
    w, h = photo.size
    x0, y0, x1, y1 = int(truth[0] * w) + 2, int(truth[1] * h) + 2, int(truth[2] * w) - 2, int(truth[3] * h) - 2
    inside = np.abs(after[y0:y1, x0:x1] - before[y0:y1, x0:x1]).mean()
    mask = np.ones(before.shape[:2], bool)
    mask[int(truth[1] * h) - 1:int(truth[3] * h) + 2, int(truth[0] * w) - 1:int(truth[2] * w) + 2] = False
    assert inside > 10 and np.array_equal(after[mask], before[mask])
    assert FaceDetector().detect(np.asarray(Image.open(out).resize((341, 256)))) == []  # no longer a face


# --- tag --checks -------------------------------------------------------------------------------

def _planted_folder(root):
    """Two listings: distinct rooms, a re-saved smaller copy of one in the other listing, a
    blurred room, a small photo, a room with a face, and a broken file."""
    for d in ("L1", "L2"):
        (root / d).mkdir(parents=True)
    for i in range(4):
        room(10 + i).save(root / "L1" / f"room{i}.jpg", quality=90)
    room(10).resize((800, 600)).save(root / "L2" / "copy-of-room0.jpg", quality=70)
    room(20).filter(ImageFilter.GaussianBlur(7)).save(root / "L2" / "blurred.jpg", quality=90)
    room(21).resize((500, 375)).save(root / "L2" / "small.jpg", quality=90)
    with_face(room(22), 0.3)[0].save(root / "L2" / "face.jpg", quality=90)
    (root / "L2" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def _rows_by_name(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {os.path.basename(r["path"]): r for r in csv.DictReader(f)}


def test_tag_checks_adds_quality_faces_and_duplicate_groups(tmp_path, stripes_oracle, capsys):
    photos = _planted_folder(tmp_path / "photos")
    out = tmp_path / "tags.csv"
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(out), "--quiet",
                 "--checks", "--blur-faces", str(tmp_path / "blurred")]) == 0
    rows = _rows_by_name(out)
    assert len(rows) == 9
    for col in ("sharpness", "exposure", "tilt_degrees", "colour_cast", "quality", "quality_reasons", "faces",
                "face_boxes", "duplicate_group", "blurred_to"):
        assert col in rows["room0.jpg"], col
    assert [rows[f"room{i}.jpg"]["quality"] for i in range(4)] == ["pass"] * 4
    assert rows["blurred.jpg"]["quality_reasons"].startswith("blurred")
    assert rows["small.jpg"]["quality_reasons"].startswith("too small (500x375")
    group = rows["room0.jpg"]["duplicate_group"]
    assert group and rows["copy-of-room0.jpg"]["duplicate_group"] == group
    assert [n for n, r in rows.items() if r["duplicate_group"]] == sorted(["room0.jpg", "copy-of-room0.jpg"],
                                                                          key=list(rows).index)
    assert rows["face.jpg"]["faces"] == "1" and rows["room1.jpg"]["faces"] == "0"
    blurred = rows["face.jpg"]["blurred_to"]
    assert blurred and os.path.isfile(blurred) and not rows["room1.jpg"]["blurred_to"]
    assert list((tmp_path / "blurred").iterdir()) == [__import__("pathlib").Path(blurred)]
    assert rows["broken.jpg"]["status"] != "ok" and rows["broken.jpg"]["quality"] == ""
    said = capsys.readouterr().out
    assert "quality fail" in said and "duplicate" in said

    # The same run without --checks has none of the columns.
    plain = tmp_path / "plain.csv"
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(plain), "--quiet"]) == 0
    assert "quality" not in next(iter(_rows_by_name(plain).values()))


def test_tag_refuses_a_bad_min_size(tmp_path, stripes_oracle, capsys):
    assert main(["tag", str(tmp_path), "--model", str(stripes_oracle), "--out", str(tmp_path / "t.csv"),
                 "--checks", "--min-size", "huge"]) == 2
    assert "--min-size" in capsys.readouterr().err


# --- the index, search and the API --------------------------------------------------------------

@pytest.fixture(scope="module")
def checked_index(tmp_path_factory, stripes_oracle):
    from estatelens.bundle import load_bundle
    from estatelens.index import connect, index_photos

    root = tmp_path_factory.mktemp("checked")
    photos = _planted_folder(root / "photos")
    engine = connect(str(root / "listings.db"))
    summary = index_photos(load_bundle(str(stripes_oracle)), [str(photos)], engine,
                           progress=False, checks=make_checker(True, faces=True), log=lambda *_: None)
    assert summary.n_duplicate_groups == 1
    return root / "listings.db", engine


def _names(found):
    return sorted(os.path.basename(r["path"]) for r in found["results"])


def test_search_finds_failed_photos_faces_and_copies_across_listings(checked_index):
    from estatelens.index import search

    engine = checked_index[1]
    assert _names(search(engine, "quality=fail", per_page=50)) == ["blurred.jpg", "small.jpg"]
    assert _names(search(engine, "faces>0", per_page=50)) == ["face.jpg"]
    assert _names(search(engine, "duplicates", per_page=50)) == ["copy-of-room0.jpg", "room0.jpg"]
    assert _names(search(engine, "duplicates=across", per_page=50)) == ["copy-of-room0.jpg", "room0.jpg"]
    assert "room0.jpg" not in _names(search(engine, "no duplicates", per_page=50))
    rec = {os.path.basename(r["path"]): r for r in search(engine, "", per_page=50)["results"]}
    c = rec["room0.jpg"]["checks"]
    assert c["quality"] == "pass" and c["duplicate_listings"] == ["L2"] and len(c["duplicates"]) == 1
    assert rec["small.jpg"]["checks"]["quality_reasons"][0].startswith("too small")


def test_api_photo_checks_and_listing_publishability(checked_index, tmp_path):
    from fastapi.testclient import TestClient

    from estatelens.web import create_app

    app = create_app(str(checked_index[0]), token="t", upload_dir=tmp_path / "uploads")
    with TestClient(app) as client:
        assert client.get("/api/vocabulary").json()["checks"] is True
        l1, l2 = client.get("/api/listings/L1").json(), client.get("/api/listings/L2").json()
        assert l1["checks"] == {"checked": 4, "unusable": 0, "quality_fail": 0, "watermarks_checked": 0, "with_watermark": 0,
                                "faces_checked": 4, "with_faces": 0, "duplicates_within": 0,
                                "copied_from_other_listings": 1, "publishable": False}
        assert l2["checks"]["quality_fail"] == 2 and l2["checks"]["with_faces"] == 1
        face = next(p for p in l2["photos"] if p["path"].endswith("face.jpg"))
        assert client.get(f"/api/photos/{face['id']}").json()["checks"]["faces"] == 1
        assert client.get("/api/search", params={"q": "quality=fail"}).json()["total"] == 2


def test_an_upload_is_checked_like_the_index_it_joins(checked_index, tmp_path):
    """An index built with the checks checks its uploads too: quality and faces are stored, and a
    re-upload of a listing's photo joins that photo's duplicate group (the index is not regrouped);
    a blurred upload fails quality."""
    import io
    import sqlite3

    from fastapi.testclient import TestClient

    from estatelens.web import create_app

    db = tmp_path / "listings.db"
    with sqlite3.connect(checked_index[0]) as src, sqlite3.connect(db) as out:
        src.backup(out)

    def jpeg(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
        return buf.getvalue()

    app = create_app(str(db), token="t", upload_dir=tmp_path / "uploads")
    auth = {"Authorization": "Bearer t"}
    with TestClient(app) as client:
        before = {os.path.basename(r["path"]): r
                  for r in client.get("/api/search", params={"q": "duplicates"}).json()["results"]}
        group = client.get(f"/api/photos/{before['room0.jpg']['id']}").json()["checks"]["duplicate_group"]
        r = client.post("/api/photos", files={"file": ("again.jpg", jpeg(room(10).resize((640, 480))), "image/jpeg")},
                        data={"listing_id": "L3"}, headers=auth)
        assert r.status_code == 201
        checks = r.json()["checks"]
        assert checks["quality"] == "pass" and checks["faces"] == 0 and checks["duplicate_group"] == group
        assert client.get("/api/search", params={"q": "duplicates"}).json()["total"] == 3
        assert client.get("/api/listings/L3").json()["checks"]["copied_from_other_listings"] == 1

        # a copy of a photo that had none starts a new group with it
        r = client.post("/api/photos", files={"file": ("again1.jpg", jpeg(room(11)), "image/jpeg")}, headers=auth)
        new_group = r.json()["checks"]["duplicate_group"]
        assert new_group is not None and new_group != group
        assert client.get("/api/search", params={"q": "duplicates"}).json()["total"] == 5

        fresh = client.post("/api/photos", files={"file": ("new.jpg", jpeg(room(40).filter(ImageFilter.GaussianBlur(7))),
                                                           "image/jpeg")}, headers=auth).json()
        assert fresh["checks"]["quality"] == "fail" and fresh["checks"]["quality_reasons"][0].startswith("blurred")
        assert fresh["checks"]["duplicate_group"] is None


def test_a_listing_with_a_file_that_is_no_photo_is_not_publishable(checked_index, capsys):
    """A broken file in a listing was counted as one of its photos and the listing called
    publishable; and the CLI said '0 with a watermark' of an index never checked for them."""
    from estatelens.index.search import publishability

    good = {"quality": "pass", "watermark": None, "faces": 0, "duplicates": [], "duplicate_listings": []}
    photos = [{"status": "ok", "checks": good}, {"status": "empty file (0 bytes)", "checks": None}]
    said = publishability(photos)
    assert said["unusable"] == 1 and said["checked"] == 1 and not said["publishable"]
    assert publishability(photos[:1])["publishable"]
    assert main(["search", "listings", "--db", str(checked_index[0])]) == 0
    out = capsys.readouterr().out
    assert "watermarks not checked" in out and "with a watermark" not in out and "with faces" in out
