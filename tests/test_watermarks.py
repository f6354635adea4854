"""Watermarks (issue 16, item 1): the synthetic overlay generator, the training targets, and the
bundled network on constructed photos (an agency's mark composited onto a room photo)."""
from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import SHARED_DATA, has_shared_data
from estatelens.watermarks.detector import MODEL, WatermarkDetector, to_input
from estatelens.watermarks.generator import KINDS, font, make_sample, overlay
from estatelens.watermarks.train import SyntheticSet, cell_targets


def photo(seed: int = 0, size=(384, 256)) -> Image.Image:
    """A plain photo-like image: smooth gradients and soft blocks, no text."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(x / w * 3 + c) * np.cos(y / h * 2 + c) for c in range(3)], -1)
    im = Image.fromarray((base + rng.normal(0, 4, base.shape)).clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rng.uniform(0, 0.7) * w), int(rng.uniform(0, 0.7) * h)
        d.rectangle((x0, y0, x0 + int(0.25 * w), y0 + int(0.25 * h)), fill=tuple(int(v) for v in rng.integers(40, 220, 3)))
    return im


def marked_photo(seed: int = 7) -> Image.Image:
    """A constructed photo with an agency's URL and phone number along the bottom, white with a
    dark outline at 80 % opacity, as portals receive them."""
    base = photo(seed, (1024, 683)).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((40, 560), "www.casa-sol-homes.es  +34 612 345 678", font=font(random.Random(1), 44),
                                fill=(255, 255, 255, 210), stroke_width=2, stroke_fill=(0, 0, 0, 210))
    base.alpha_composite(layer)
    return base.convert("RGB")


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_overlay_kind_draws_something_and_its_mask_says_where(kind):
    for seed in range(6):
        rng = random.Random(seed)
        layer, got = overlay(rng, (600, 400), kind)
        assert got == kind and layer.size == (600, 400) and layer.mode == "RGBA"
        alpha = np.asarray(layer.getchannel("A"))
        assert alpha.max() > 0, f"{kind} seed {seed}: nothing drawn"
        s = make_sample(photo(seed), random.Random(seed), 256, marked=True, kind=kind)
        assert min(s.image.size) == 256 and s.mask.shape == (s.image.height, s.image.width)
        assert s.mask.any() and s.kind == kind and 0.1 <= s.opacity <= 1.0


def test_a_clean_sample_goes_through_the_same_steps_and_has_no_mask():
    s = make_sample(photo(3), random.Random(3), 256, marked=False)
    assert s.kind == "clean" and not s.mask.any() and min(s.image.size) == 256
    # Both classes are re-encoded: a clean sample differs from a plain resize of its photo.
    plain = np.asarray(photo(3).resize(s.image.size, Image.BILINEAR), np.float32)
    assert np.abs(np.asarray(s.image, np.float32) - plain).mean() > 0.5


def test_cell_targets_mark_the_8x8_cells_the_overlay_touches():
    mask = np.zeros((64, 96), bool)
    mask[10, 17] = True  # cell (1, 2)
    mask[60:64, 88:96] = True  # cell (7, 11)
    t = cell_targets(mask)
    assert t.shape == (8, 12) and t.sum() == 2 and t[1, 2] == 1 and t[7, 11] == 1
    x = to_input(Image.new("RGB", (16, 8), (255, 0, 127)))
    assert x.shape == (3, 8, 16) and np.isclose(x[0].max(), 1.0) and np.isclose(x[1].min(), -1.0)


def test_scene_text_samples_never_get_an_overlay(tmp_path):
    """--scene-text: from `clean_from` on, every sample is clean (its shop signs are the scene's),
    while the samples before it keep their coin flip."""
    path = tmp_path / "street.jpg"
    photo(5, (400, 300)).save(path)
    data = SyntheticSet([str(path)] * 24, seed=0, clean_from=12)
    kinds = [data[i][2] for i in range(24)]
    assert all(k == "clean" for k in kinds[12:]) and all(float(data[i][1].sum()) == 0 for i in range(12, 24))
    assert any(k != "clean" for k in kinds[:12])  # 12 coin flips: all tails 1 in 4,096 (seeded: not flaky)


def test_fonts_render_latin_cyrillic_and_greek():
    rng = random.Random(0)
    for text in ("Inmobiliaria Sol", "Недвижимость", "ακίνητα"):
        f = font(rng, 24)
        box = f.getbbox(text)
        assert box[2] - box[0] > 24, text


def test_the_box_follows_the_hot_cells():
    det = WatermarkDetector.__new__(WatermarkDetector)
    det.threshold = 0.5
    p = np.full((8, 12), 0.05)
    p[6:8, 8:12] = 0.9  # a mark in the bottom-right corner
    p[0, 0] = 0.4  # below the threshold but above half of it, and not touching: not in the box
    assert det._box(p) == (8 / 12, 6 / 8, 1.0, 1.0)


@pytest.mark.skipif(not MODEL.is_file(), reason="no bundled watermark network")
def test_the_bundled_network_finds_a_composited_mark_and_where():
    det = WatermarkDetector()
    clean, marked = photo(7, (1024, 683)), marked_photo(7)
    size = (round(1024 * det.side / 683), det.side)  # as the checks read it
    work = lambda im: np.asarray(im.convert("RGB").resize(size, Image.BILINEAR))  # noqa: E731
    r_clean, r_marked = det.detect(work(clean)), det.detect(work(marked))
    assert r_marked.probability >= det.threshold > r_clean.probability
    x0, y0, x1, y1 = r_marked.box
    assert y1 > 0.8 and y0 > 0.6 and x0 < 0.3  # along the bottom, where it was drawn
    cols = det.columns(work(marked))
    assert cols["watermark"] == "yes" and cols["watermark_box"]


@pytest.mark.skipif(not (MODEL.is_file() and has_shared_data()), reason="needs the bundled network and ../shared/data")
def test_real_corner_marks_score_above_clean_photos():
    """Photos labelled by eye (data/labels/watermark.csv): the MLS-marked houses photos score
    higher on average than the clean ones, as the photos are read by tag --checks."""
    import csv
    from pathlib import Path

    from estatelens.data.images import read_photo

    labels = Path(__file__).resolve().parents[1] / "data" / "labels" / "watermark.csv"
    with open(labels, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["path"].startswith("houses/") and r["watermark"] != "unsure"]
    det = WatermarkDetector()
    score = {"yes": [], "no": []}
    for r in rows[:80]:
        im, _ = read_photo(str(SHARED_DATA / r["path"]), det.side)
        score[r["watermark"]].append(det.detect(det.reading_image(im)).probability)
    assert len(score["yes"]) >= 20 and len(score["no"]) >= 5
    assert np.median(score["yes"]) > np.median(score["no"])


@pytest.mark.skipif(not MODEL.is_file(), reason="no bundled watermark network")
def test_tag_and_index_watermarks_then_search_them(tmp_path, stripes_oracle):
    import csv

    from estatelens.bundle import load_bundle
    from estatelens.checks.photo import make_checker
    from estatelens.cli import main
    from estatelens.index import connect, index_photos, search

    pytest.importorskip("cv2")
    photos = tmp_path / "photos"
    photos.mkdir()
    photo(7, (1024, 683)).save(photos / "clean.jpg", quality=90)
    marked_photo(7).save(photos / "marked.jpg", quality=90)
    out = tmp_path / "tags.csv"
    assert main(["tag", str(photos), "--model", str(stripes_oracle), "--out", str(out), "--quiet", "--watermarks"]) == 0
    with open(out, newline="", encoding="utf-8-sig") as f:
        rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}
    assert rows["marked.jpg"]["watermark"] == "yes" and rows["clean.jpg"]["watermark"] == "no"
    assert float(rows["marked.jpg"]["watermark_probability"]) > float(rows["clean.jpg"]["watermark_probability"])
    assert rows["marked.jpg"]["watermark_box"] and not rows["clean.jpg"]["watermark_box"]
    assert rows["clean.jpg"]["quality"]  # --watermarks implies --checks

    engine = connect(str(tmp_path / "listings.db"))
    index_photos(load_bundle(str(stripes_oracle)), [str(photos)], engine, progress=False,
                 checks=make_checker(True, watermarks=True), log=lambda *_: None)
    found = search(engine, "watermark=yes", per_page=10)["results"]
    assert [r["path"].rsplit("/", 1)[-1] for r in found] == ["marked.jpg"]
    assert found[0]["checks"]["watermark_probability"] >= WatermarkDetector().threshold
    assert [r["path"].rsplit("/", 1)[-1] for r in search(engine, "watermark=no", per_page=10)["results"]] == ["clean.jpg"]


@pytest.mark.skipif(not MODEL.is_file(), reason="no bundled watermark network")
def test_the_checks_read_the_photo_at_the_watermark_networks_size():
    """The network reads at its own size (watermark.json read_side, larger than the checks' working
    size): the tagger decodes that large, and the network gets that size while the quality checks
    keep theirs."""
    pytest.importorskip("cv2")
    from estatelens.checks.photo import make_checker
    from estatelens.checks.quality import WORK_SIDE

    plain, marked = make_checker(True), make_checker(True, watermarks=True)
    side = marked._watermarks.side
    assert plain.min_side == WORK_SIDE and marked.min_side == max(WORK_SIDE, side)
    seen = []
    detect = marked._watermarks.detect
    marked._watermarks.detect = lambda rgb: seen.append(rgb.shape) or detect(rgb)
    big = marked_photo(7)  # 1024 x 683
    cols, plain_cols = marked(big, big.size), plain(big, big.size)
    assert seen == [(side, round(1024 * side / 683), 3)]
    assert cols["sharpness"] == plain_cols["sharpness"]  # the quality checks' image is unchanged
    assert cols["watermark"] == "yes"


@pytest.mark.skipif(not MODEL.is_file(), reason="no bundled watermark network")
def test_the_network_reads_every_photo_at_its_own_size():
    """Larger photos are reduced and smaller ones enlarged to the reading size (a small photo's
    corner mark would otherwise be a few pixels)."""
    pytest.importorskip("cv2")
    det = WatermarkDetector()
    for size in ((300, 200), (1024, 683), (det.side, det.side)):
        a = det.reading_image(photo(1, size))
        assert min(a.shape[:2]) == det.side and a.dtype == np.uint8
        assert abs(a.shape[1] / a.shape[0] - size[0] / size[1]) < 0.01
    grey = photo(1, (600, 400)).convert("L")
    assert det.reading_image(grey).shape == (det.side, det.side * 3 // 2, 3)
