"""Crop detection: the generator's rectangles match the pixels it cut, shortcuts are closed, the
model trains and gives outputs of the right shapes, and the commands write what they say."""
from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from estatelens.cli import main
from estatelens.crops.generator import (CropSettings, border_side, check_source, cut_patches, patch_positions,
                                        render_sample, sample_rect, source_key, split_of, variants_of)
from estatelens.crops.model import CropHeads, CropNet, crop_losses

PLAIN = CropSettings(size=64, patch=12, jpeg_quality=None, match_resampling=False, blur=0.0)


def coordinate_photo(w: int, h: int) -> Image.Image:
    """Red encodes x, green encodes y (smooth ramps), so any pixel says where it came from."""
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8))


def textured_photo(w: int, h: int, seed: int) -> Image.Image:
    """A photo-like image: a gradient, blocks of colour and noise (no uniform borders)."""
    rng = np.random.default_rng(seed)
    img = np.asarray(coordinate_photo(w, h), dtype=np.float32)
    for _ in range(12):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        img[y0:y0 + rng.integers(10, 60), x0:x0 + rng.integers(10, 60)] = rng.integers(0, 256, 3)
    img += rng.normal(0, 10, img.shape)
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("seed", range(6))
def test_rectangles_match_the_pixels_cut(seed):
    photo = coordinate_photo(400, 300)
    rng = np.random.default_rng(seed)
    sample = render_sample(photo, rng, PLAIN, cropped=True)
    x0, y0, x1, y1 = sample.rect
    img = sample.image.astype(np.float32) / 255
    # The sample's edge pixels hold the coordinates of the rectangle's edges (to a pixel or two).
    tol = 3 / 300
    assert abs(img[:, 0, 0].mean() - x0) < tol and abs(img[:, -1, 0].mean() - x1) < tol
    assert abs(img[0, :, 1].mean() - y0) < tol and abs(img[-1, :, 1].mean() - y1) < tol
    assert abs(sample.factor - np.sqrt((x1 - x0) * (y1 - y0))) < 1e-6
    assert 0.5 - 0.03 <= sample.factor <= 0.9 + 0.03
    # Aspect kept: width and height fractions are equal (the source's 4:3 stays 4:3).
    assert abs((x1 - x0) - (y1 - y0)) < 0.03
    # Corners on the 8 px JPEG grid of the source.
    assert round(x0 * 400) % 8 == 0 and round(y0 * 300) % 8 == 0
    # Every patch is the pixels at its offset, and its position target is the cell of the
    # original frame its centre came from (read back from the pixel's coordinates).
    for k, (ox, oy) in enumerate(sample.offsets):
        assert np.array_equal(sample.patches[k], sample.image[oy:oy + PLAIN.patch, ox:ox + PLAIN.patch])
        c = sample.image[oy + PLAIN.patch // 2, ox + PLAIN.patch // 2].astype(np.float32) / 255
        col, row = min(3, int(c[0] * 4)), min(3, int(c[1] * 4))
        assert sample.positions[k] == row * 4 + col or np.any(np.abs(c[:2] * 4 - np.round(c[:2] * 4)) < 0.05)


def test_uncropped_samples_show_the_whole_frame_and_patches_their_own_cell():
    photo = coordinate_photo(400, 300)
    sample = render_sample(photo, np.random.default_rng(0), PLAIN, cropped=False)
    assert sample.factor == 1.0 and list(sample.rect) == [0, 0, 1, 1]
    img = sample.image.astype(np.float32) / 255
    assert img[:, 0, 0].mean() < 0.02 and img[:, -1, 0].mean() > 0.98
    assert list(sample.positions) == list(range(16))


def test_jpeg_reencoding_and_resampling_matching_keep_the_geometry():
    settings = CropSettings(size=96, patch=20)  # JPEG and matched resampling on, as in training
    photo = coordinate_photo(480, 360)
    for seed in range(4):
        s = render_sample(photo, np.random.default_rng(seed), settings, cropped=True)
        img = s.image.astype(np.float32) / 255
        assert abs(img[:, 2, 0].mean() - (s.rect[0] + 2 / 96 * (s.rect[2] - s.rect[0]))) < 0.03
        u = render_sample(photo, np.random.default_rng(seed), settings, cropped=False)
        assert u.image.shape == (96, 96, 3) and abs(u.image[:, -1, 0].mean() / 255 - 1) < 0.03


def test_no_crop_is_ever_enlarged_and_sources_are_filtered():
    s = CropSettings(size=96, patch=20)
    assert s.min_side == 192
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = sample_rect(200, 192, rng, s)
        assert x1 - x0 >= 96 and y1 - y0 >= 96 and 0 <= x0 and x1 <= 200 and y1 <= 192
    jitter = replace(s, aspect_jitter=0.3)
    ratios = [(lambda r: (r[2] - r[0]) / (r[3] - r[1]))(sample_rect(800, 800, rng, jitter)) for _ in range(200)]
    assert min(ratios) < 0.9 and max(ratios) > 1.1 and all(0.7 < r < 1.4 for r in ratios)


def test_check_source(tmp_path):
    s = CropSettings(size=96, patch=20)
    textured_photo(300, 240, 0).save(tmp_path / "ok.jpg", quality=92)
    textured_photo(150, 120, 1).save(tmp_path / "small.jpg")
    textured_photo(600, 200, 2).save(tmp_path / "wide.jpg")
    boxed = np.asarray(textured_photo(300, 240, 3)).copy()
    boxed[:30] = 255  # a white letterbox band, as rooms-web's exporter left on many photos
    Image.fromarray(boxed).save(tmp_path / "letterbox.jpg", quality=92)
    (tmp_path / "notes.txt").write_text("x")
    assert check_source(tmp_path / "ok.jpg", s) == "ok"
    assert check_source(tmp_path / "small.jpg", s).startswith("too small")
    assert check_source(tmp_path / "wide.jpg", s).startswith("aspect ratio 3.00")
    assert "top edge" in check_source(tmp_path / "letterbox.jpg", s)
    assert check_source(tmp_path / "notes.txt", s).startswith("not an image")
    assert border_side(np.full((50, 50), 7.0)) == "top"


def test_split_is_stable_and_near_75_15_10():
    paths = [f"/photos/{i}.jpg" for i in range(3000)]
    splits = [split_of(p) for p in paths]
    assert splits == [split_of(p) for p in paths]
    share = {k: splits.count(k) / len(paths) for k in ("train", "val", "test")}
    assert abs(share["train"] - 0.75) < 0.03 and abs(share["val"] - 0.15) < 0.02 and abs(share["test"] - 0.10) < 0.02
    assert [split_of(p, seed=1) for p in paths[:200]] != splits[:200]  # the seed moves photos


def test_variants_are_half_cropped_and_reproducible(tmp_path):
    textured_photo(300, 240, 0).save(tmp_path / "a.jpg")
    s = CropSettings(size=96, patch=20)
    a, b = variants_of(str(tmp_path / "a.jpg"), s, 4, seed=3), variants_of(str(tmp_path / "a.jpg"), s, 4, seed=3)
    # Keyed by the path below the DATA folder, not the absolute path: a copy elsewhere gives the same samples.
    (tmp_path / "elsewhere" / "data").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    for d in ("data", "elsewhere/data"):
        textured_photo(300, 240, 0).save(tmp_path / d / "a.jpg")
    keys = [source_key(str(tmp_path / d / "a.jpg"), tmp_path / d) for d in ("data", "elsewhere/data")]
    assert keys == ["data/a.jpg", "data/a.jpg"]
    c = variants_of(str(tmp_path / "elsewhere" / "data" / "a.jpg"), s, 2, seed=3, key=keys[1])
    assert np.array_equal(c[0].rect, variants_of(str(tmp_path / "data" / "a.jpg"), s, 2, seed=3, key=keys[0])[0].rect)
    assert [v.cropped for v in a] == [True, False, True, False]
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.rect, y.rect) for x, y in zip(a, b))
    assert not np.array_equal(a[0].rect, variants_of(str(tmp_path / "a.jpg"), s, 4, seed=4)[0].rect)


def test_cut_patches_centred_without_rng():
    img = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    patches, offsets = cut_patches(img, PLAIN)
    assert patches.shape == (16, 12, 12, 3) and list(offsets[0]) == [2, 2] and list(offsets[5]) == [18, 18]
    assert list(patch_positions(offsets, np.array([0, 0, 1, 1], np.float32), PLAIN)) == list(range(16))
    # The right half of the frame: every patch lies in columns 2 and 3 of the original.
    right = patch_positions(offsets, np.array([0.5, 0, 1, 1], np.float32), PLAIN)
    assert set(right % 4) == {2, 3} and list(right // 4) == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4


# --- the model -------------------------------------------------------------------------------------

class TinyBackbone(torch.nn.Module):
    def __init__(self, dim: int = 24):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, dim, 3, stride=2), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("patches", [True, False])
def test_model_trains_a_few_steps_with_outputs_of_the_right_shape(patches):
    torch.manual_seed(0)
    heads = CropHeads(24, 24 if patches else None, dropout=0.0)
    net = CropNet(TinyBackbone(), TinyBackbone() if patches else None, heads)
    x, p = torch.rand(6, 3, 32, 32), torch.rand(6, 16, 3, 8, 8)
    cropped = torch.tensor([1, 0, 1, 0, 1, 0])
    rect = torch.tensor([[0.1, 0.2, 0.7, 0.8], [0, 0, 1, 1]] * 3)
    factor = torch.tensor([0.6, 1.0] * 3)
    positions = torch.randint(0, 16, (6, 16))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        t = net.thumb_backbone(x)
        pf = net.patch_backbone(p.flatten(0, 1)).reshape(6, 16, -1) if patches else None
        loss = crop_losses(heads(t, pf), cropped, rect, factor, positions if patches else None)
        opt.zero_grad()
        loss["total"].backward()
        opt.step()
        losses.append(loss["total"].item())
    assert losses[-1] < losses[0] * 0.8
    assert ("positions" in loss) == patches
    out = net.eval()(x, p)
    assert out[0].shape == (6,) and out[1].shape == (6, 4) and out[2].shape == (6,)
    assert bool(((out[0] >= 0) & (out[0] <= 1)).all())
    r = out[1]
    assert bool((r[:, 0] < r[:, 2]).all() and (r[:, 1] < r[:, 3]).all() and (r >= 0).all() and (r <= 1).all())
    if patches:
        assert out[3].shape == (6, 16, 16) and torch.allclose(out[3].sum(-1), torch.ones(6, 16))
    else:
        assert len(out) == 3


# --- the commands ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crop_run(tmp_path_factory):
    """train-crops on 40 small synthetic photos, for a few epochs (Lite0 at 64 px, frozen)."""
    root = tmp_path_factory.mktemp("crops")
    for i in range(40):
        textured_photo(160, 130, i).save(root / f"p{i}.jpg", quality=92)
    out = root / "run"
    assert main(["train-crops", str(root), "--out", str(out), "--size", "64", "--patch", "16", "--epochs", "3",
                 "--variants", "2", "--threads", "2", "--cache-dir", str(root / "cache"), "--quiet"]) == 0
    return root, out


def test_train_crops_writes_a_bundle_metrics_and_report(crop_run):
    root, out = crop_run
    m = json.loads((out / "metrics.json").read_text())
    assert sum(m["sources"].values()) == 40 and m["samples"]["train"] == 2 * m["sources"]["train"]
    for name in ("full", "thumbnail_only", "trivial", "shortcut_probe"):
        s = m["test"][name]
        assert s["n"] == 2 * m["sources"]["test"] and 0 <= s["accuracy"] <= 1
    assert m["test"]["trivial"]["auc"] == 0.5
    assert 0 <= m["test"]["full"]["patch_accuracy"] <= 1 and "patch_accuracy" not in m["test"]["thumbnail_only"]
    assert m["test"]["trivial"]["patch_accuracy_cropped"] < 1.0  # a crop moves patches off their own cell
    assert (out / "crops.estatelens" / "crops.json").is_file() and (out / "report.md").read_text().startswith("# Crop")
    assert json.loads((out / "crops.estatelens" / "crops.json").read_text())["patch_dim"] == 1280


def test_tag_crops_adds_the_columns(crop_run, tmp_path):
    root, out = crop_run
    dest = tmp_path / "tags.csv"
    assert main(["tag", str(root / "p1.jpg"), str(root / "p2.jpg"), str(tmp_path / "missing.jpg"),
                 "--crops", "--crop-model", str(out / "crops.estatelens"), "--out", str(dest), "--quiet"]) == 0
    rows = list(csv.DictReader(open(dest, encoding="utf-8-sig")))
    assert len(rows) == 3
    for r in rows[:2]:
        assert 0 <= float(r["cropped_probability"]) <= 1 and 0 < float(r["crop_factor"]) <= 1
        x0, y0, x1, y1 = (float(r[k]) for k in ("crop_x0", "crop_y0", "crop_x1", "crop_y1"))
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert rows[2]["status"] == "file not found" and rows[2]["cropped_probability"] == ""
    assert main(["tag", str(root / "p1.jpg"), "--crops", "--crop-model", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "x.csv")]) == 2


def test_crops_explain_draws_the_figure(crop_run, tmp_path, capsys):
    root, out = crop_run
    assert main(["crops", "explain", str(root / "p3.jpg"), "--model", str(out / "crops.estatelens"),
                 "--out", str(tmp_path), "--simulate", "0.7"]) == 0
    fig = tmp_path / "p3.crop.png"
    assert fig.is_file() and Image.open(fig).size[0] > 600
    line = capsys.readouterr().out
    assert "cropped" in line and "(true: " in line
    assert main(["crops", "explain", str(root / "p3.jpg"), "--model", str(out / "crops.estatelens"),
                 "--out", str(tmp_path), "--simulate", "1.5"]) == 2


def test_low_level_statistics_see_sharpness_and_the_block_grid():
    from PIL import ImageFilter

    from estatelens.crops.train import LOW_LEVEL, low_level_statistics

    sharp = textured_photo(96, 96, 5)
    soft = sharp.filter(ImageFilter.GaussianBlur(1.5))
    a, b = low_level_statistics(np.asarray(sharp)), low_level_statistics(np.asarray(soft))
    assert len(a) == len(LOW_LEVEL) and a[0] > 1.5 * b[0] and a[2] > b[2]
    blocks = np.kron(np.random.default_rng(0).integers(0, 255, (12, 12, 1)), np.ones((8, 8, 3))).astype(np.uint8)
    stats = low_level_statistics(blocks)
    assert stats[4] > 5 and stats[5] > 5  # steps only across block edges


def test_the_bundled_crop_model_is_what_tag_crops_uses(tmp_path):
    from estatelens.crops.detector import CropDetector, find_crop_bundle

    bundled = find_crop_bundle("crops")
    info = json.loads((bundled / "crops.json").read_text())
    assert info["backbone"] == "efficientnet_lite0" and info["patch_dim"] is not None
    textured_photo(400, 300, 11).save(tmp_path / "a.jpg")
    dest = tmp_path / "t.json"
    assert main(["tag", str(tmp_path / "a.jpg"), "--crops", "--out", str(dest), "--quiet"]) == 0
    row = json.loads(dest.read_text())[0]
    direct = CropDetector("crops").predict_file(tmp_path / "a.jpg")
    assert row["cropped_probability"] == round(direct.cropped_probability, 4)
    assert 0 <= row["crop_x0"] < row["crop_x1"] <= 1 and 0 < row["crop_factor"] <= 1


def test_the_detector_sees_a_photo_as_training_saw_an_uncropped_sample(crop_run, tmp_path):
    """Inference preprocessing = training's: the whole photo resized once, patches centred."""
    from estatelens.crops.detector import CropDetector

    root, out = crop_run
    det = CropDetector(out / "crops.estatelens")
    plain = replace(det.settings, jpeg_quality=None, match_resampling=False, blur=0.0)
    photo = textured_photo(200, 150, 21)
    sample = render_sample(photo, np.random.default_rng(0), plain, cropped=False, jitter=False)
    thumb, patches = det.inputs(photo)
    assert np.allclose(thumb, det._norm(sample.image[None], "thumb")[0])
    assert np.allclose(patches, det._norm(sample.patches, "patch"))
    # The thumbnail-only bundle of the same run: one input, no patch positions.
    only = CropDetector(out / "crops-thumbnail.estatelens")
    pred = only.predict_photo(photo)
    assert pred.positions is None and len(only.session.get_inputs()) == 1 and 0 <= pred.cropped_probability <= 1
    assert json.loads((out / "crops.estatelens" / "crops.json").read_text())["held_out"]["seed"] == 0


def test_simulated_crops_refuse_photos_too_small(crop_run, tmp_path):
    root, out = crop_run
    textured_photo(100, 90, 1).save(tmp_path / "small.jpg")
    assert main(["crops", "explain", str(tmp_path / "small.jpg"), "--model", str(out / "crops.estatelens"),
                 "--out", str(tmp_path), "--simulate", "0.5"]) == 2


def test_crops_reach_every_edge_and_keep_the_grid():
    s = CropSettings(size=96, patch=20)
    rng = np.random.default_rng(1)
    rects = [sample_rect(413, 389, rng, s) for _ in range(3000)]
    assert all(x0 % 8 == 0 and y0 % 8 == 0 for x0, y0, _, _ in rects)
    left, right = sum(r[0] == 0 for r in rects), sum(r[2] == 413 for r in rects)
    top, bottom = sum(r[1] == 0 for r in rects), sum(r[3] == 389 for r in rects)
    assert min(left, right, top, bottom) > 50 and abs(left - right) < 0.5 * max(left, right)
