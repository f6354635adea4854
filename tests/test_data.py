"""The data layer: bad files are reported, not fatal; splits are deterministic and group-safe."""
from __future__ import annotations

import csv
import os
import shutil
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from estatelens.data import images
from estatelens.data.dataset import Sample, assign_splits, load_collection
from estatelens.data.images import PhotoError, check_photo, open_rgb

from conftest import stripes, write_broken_files, write_odd_but_valid_files


def test_broken_files_are_listed_with_their_reason_and_left_out(tmp_path):
    root = tmp_path / "data"
    expected = write_broken_files(root / "kitchen")
    (root / "bedroom").mkdir()
    for i in range(3):
        stripes("vertical", 64, seed=i).save(root / "bedroom" / f"ok{i}.jpg")
    (root / "kitchen" / "readme.txt").write_text("not a photo")

    col = load_collection(root, progress=False)

    reasons = {s["path"].split("/")[-1]: s["reason"] for s in col.skipped}
    for name, part in expected.items():
        assert part in reasons[name], (name, reasons.get(name))
    assert "not an image file" in reasons["readme.txt"]
    kept = sorted(s.path.split("/")[-1] for s in col.samples)
    assert kept == ["ok0.jpg", "ok1.jpg", "ok2.jpg", "whole.jpg"]


def test_odd_colour_modes_decode_to_rgb(tmp_path):
    for name in write_odd_but_valid_files(tmp_path):
        im = open_rgb(tmp_path / name)
        assert im.mode == "RGB" and im.size == (80, 80), name
    # 16-bit greyscale is scaled down to the same 8-bit values, not clipped to white
    arr = np.asarray(open_rgb(tmp_path / "sixteen_bit.png"))[..., 0].astype(int)
    grey = np.asarray(stripes("vertical", 80).convert("L")).astype(int)
    assert np.abs(arr - grey).max() <= 1
    # transparent pixels become white-ish, not black
    assert np.asarray(open_rgb(tmp_path / "alpha.png")).mean() > np.asarray(
        open_rgb(tmp_path / "grey.jpg")).mean() * 0.9


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (120, 60), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "rotated.jpg", exif=exif)
    assert open_rgb(tmp_path / "rotated.jpg").size == (60, 120)


def test_draft_mode_decodes_large_jpeg_near_the_needed_size(tmp_path):
    stripes("horizontal", 1024).save(tmp_path / "big.jpg")
    im = open_rgb(tmp_path / "big.jpg", min_side=224)
    assert 224 <= min(im.size) < 512


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    stripes("horizontal", 200).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(PhotoError, match="decompression bomb"):
        open_rgb(tmp_path / "bomb.png")
    assert not check_photo(tmp_path / "bomb.png").ok


def test_any_decoder_exception_becomes_a_photo_error(tmp_path, monkeypatch):
    stripes("horizontal", 64).save(tmp_path / "odd.jpg")

    def broken_open(*a, **kw):
        raise ValueError("broken header")

    monkeypatch.setattr(images.Image, "open", broken_open)
    with pytest.raises(PhotoError, match="corrupt image .*broken header"):
        open_rgb(tmp_path / "odd.jpg")


def test_missing_file_is_a_photo_error(tmp_path):
    with pytest.raises(PhotoError, match="not found"):
        open_rgb(tmp_path / "nope.jpg")


def _samples(n_per_class=50, groups=False):
    out = []
    for label in ("a", "b", "c"):
        for i in range(n_per_class):
            out.append(Sample(f"/x/{label}{i}.jpg", label, None, f"house{label}{i // 4}" if groups else None))
    return out


def test_split_is_stratified_and_deterministic():
    s1 = assign_splits(_samples(), seed=3)
    s2 = assign_splits(_samples(), seed=3)
    as_dict = lambda samples: {s.path: s.split for s in samples}  # noqa: E731
    assert as_dict(s1) == as_dict(s2)
    for label in "abc":
        counts = defaultdict(int)
        for s in s1:
            if s.label == label:
                counts[s.split] += 1
        assert counts == {"train": 40, "val": 5, "test": 5}
    assert as_dict(assign_splits(_samples(), seed=4)) != as_dict(s1)
    # losing one photo leaves every other photo's split where it was, but for the cut points
    fewer = as_dict(assign_splits(_samples()[1:], seed=3))
    moved = [p for p, split in fewer.items() if as_dict(s1)[p] != split]
    assert len(moved) <= 2


def test_group_never_straddles_two_splits():
    samples = assign_splits(_samples(groups=True), seed=1)
    splits_of_group = defaultdict(set)
    for s in samples:
        splits_of_group[s.group].add(s.split)
    assert all(len(v) == 1 for v in splits_of_group.values())
    assert {s.split for s in samples} == {"train", "val", "test"}


def test_csv_with_groups_and_val_carved_from_train(tmp_path):
    rows = []
    for label in ("kitchen", "bathroom"):
        (tmp_path / label).mkdir()
        for i in range(20):
            name = f"{label}/{i}.jpg"
            stripes("horizontal" if label == "kitchen" else "vertical", 48, seed=i).save(tmp_path / name)
            rows.append({"path": name, "label": label, "split": "test" if i < 4 else "train", "group": f"h{i // 2}"})
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "split", "group"])
        w.writeheader()
        w.writerows(rows)
    col = load_collection(tmp_path / "labels.csv", progress=False)
    assert len(col.split("test")) == 8
    assert len(col.split("val")) > 0 and len(col.split("train")) > len(col.split("val"))
    groups = defaultdict(set)
    for s in col.samples:
        groups[(s.label, s.group)].add(s.split)
    assert all(len(v) == 1 for v in groups.values())


def test_duplicates_across_splits_are_reported_as_leakage(tmp_path):
    seed = 0  # distinct seeds, so the copy below is the only duplicate
    for split in ("train", "val", "test"):
        for label in ("a", "b"):
            d = tmp_path / split / label
            d.mkdir(parents=True)
            for i in range(3):
                seed += 1
                stripes("horizontal", 48, seed=seed).save(d / f"{i}.jpg")
    shutil.copy(tmp_path / "train" / "a" / "0.jpg", tmp_path / "test" / "a" / "copy.jpg")
    col = load_collection(tmp_path, progress=False)
    assert len(col.leakage) == 1
    assert col.leakage[0]["splits"] == ["test", "train"]
    assert col.summary()["n_leaked_duplicates"] == 1
    assert col.leakage[0]["kind"] == "identical"
    assert col.copies_of_other_splits("test") == {str(tmp_path / "test" / "a" / "copy.jpg")}


def test_near_copies_across_splits_are_leakage_too(tmp_path):
    """An augmented export puts a resized, recompressed or mirrored copy of a training photo in
    test: found by its perceptual hashes, and set apart when the test split is scored."""
    pytest.importorskip("imagehash")
    rng = np.random.default_rng(0)
    scenes = [Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((320, 240), Image.BICUBIC)
              for _ in range(12)]
    for k, im in enumerate(scenes):
        d = tmp_path / ("train", "val", "test")[k % 3] / "ab"[k // 6]
        d.mkdir(parents=True, exist_ok=True)
        im.save(d / f"{k}.jpg", quality=90)
    train_photo = scenes[0]  # train/a/0.jpg
    train_photo.resize((160, 120)).transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "test" / "a" / "copy.jpg", quality=40)
    col = load_collection(tmp_path, progress=False)
    near = [leak for leak in col.leakage if leak["kind"] == "near copy"]
    assert len(col.leakage) == 1 and len(near) == 1, col.leakage
    assert sorted(near[0]["paths"]) == sorted([str(tmp_path / "train" / "a" / "0.jpg"), str(tmp_path / "test" / "a" / "copy.jpg")])
    assert near[0]["splits"] == ["test", "train"] and near[0]["hash_bits"] <= 7
    assert col.copies_of_other_splits("test") == {str(tmp_path / "test" / "a" / "copy.jpg")}
    assert col.copies_of_other_splits("val") == set()
    assert col.summary()["n_leaked_near_copies"] == 1


def test_mixed_split_rows_are_an_error():
    samples = [Sample("/a.jpg", "a", "train"), Sample("/b.jpg", "a", None)]
    with pytest.raises(ValueError, match="some photos have a split"):
        assign_splits(samples)


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no labelled photos"):
        load_collection(tmp_path, progress=False)


def test_merge_val_trains_on_train_and_val_and_keeps_test_apart(tmp_path):
    from estatelens.data.dataset import merge_val_into_train

    for split, n in (("train", 16), ("val", 8), ("test", 4)):
        for label in ("a", "b"):
            d = tmp_path / split / label
            d.mkdir(parents=True)
            for i in range(n):
                stripes("horizontal" if label == "a" else "vertical", 40, seed=i + 100 * n).save(d / f"{i}.jpg")
    col = load_collection(tmp_path, progress=False)
    test_before = {s.path for s in col.split("test")}
    merged = merge_val_into_train(col, seed=0)
    assert {s.path for s in merged.split("test")} == test_before
    assert len(merged.split("train")) + len(merged.split("val")) == 48
    assert len(merged.split("val")) == 6  # 1/9 of 24 per class, stratified
    assert any("/val/" in s.path for s in merged.split("train"))


def test_a_moved_dataset_keeps_its_split(tmp_path):
    from conftest import make_stripes_dataset

    a = load_collection(make_stripes_dataset(tmp_path / "here", per_class=20), progress=False)
    b = load_collection(make_stripes_dataset(tmp_path / "elsewhere" / "deeper", per_class=20), progress=False)
    split_of = lambda col, root: {os.path.relpath(s.path, root): s.split for s in col.samples}  # noqa: E731
    assert split_of(a, tmp_path / "here") == split_of(b, tmp_path / "elsewhere" / "deeper")


def test_several_sources_combine_each_split_its_own_way(tmp_path):
    from conftest import make_stripes_dataset
    from estatelens.data.dataset import combine_collections, merge_val_into_train

    folder = make_stripes_dataset(tmp_path / "folder", per_class=10, splits=True)
    listing = tmp_path / "listing"
    listing.mkdir()
    rows = []
    for house in range(20):  # a houses-style CSV: the label column is `room`, the group `house_id`
        for room in ("kitchen", "exterior"):
            name = f"{house}_{room}.jpg"
            stripes("horizontal" if room == "kitchen" else "vertical", 48, seed=house).save(listing / name)
            rows.append({"path": name, "house_id": str(house), "room": room})
    with open(listing / "photos.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "house_id", "room"])
        w.writeheader()
        w.writerows(rows)
    a = merge_val_into_train(load_collection(folder, progress=False))
    b = load_collection(listing / "photos.csv", progress=False)
    both = combine_collections([a, b])
    assert both.classes == ["exterior", "horizontal", "kitchen", "vertical"]
    assert len(both.samples) == len(a.samples) + len(b.samples) == 20 + 40
    assert both.split("test") == a.split("test") + b.split("test")
    assert {s.path for s in a.split("test")} == {str(p) for p in (folder / "test").rglob("*.jpg")}
    house_splits = defaultdict(set)
    for s in b.samples:
        assert s.group is not None
        house_splits[s.group].add(s.split)
    assert all(len(v) == 1 for v in house_splits.values())  # a house never straddles two splits
    assert {sp for v in house_splits.values() for sp in v} == {"train", "val", "test"}


def test_overlaid_text_marks_part_of_the_photo_and_leaves_the_rest():
    import torch

    from estatelens.data.transforms import RandomOverlayText

    im = Image.new("RGB", (320, 240), (90, 120, 60))
    torch.manual_seed(0)
    marked = [np.asarray(RandomOverlayText(p=1.0)(im), dtype=np.int16) for _ in range(8)]
    base = np.asarray(im, dtype=np.int16)
    for m in marked:
        assert m.shape == base.shape
        changed = np.abs(m - base).max(axis=2) > 0
        assert 0.001 < changed.mean() < 0.6  # some text, never the whole photo
    assert len({np.abs(m - base).sum() for m in marked}) > 4  # words, places and styles vary
    assert np.array_equal(np.asarray(RandomOverlayText(p=0.0)(im)), np.asarray(im))


def test_train_preset_gives_a_normalised_tensor_of_the_model_size_from_any_photo():
    import torch

    from estatelens.data.preprocess import Preprocessing
    from estatelens.data.transforms import train_preset

    pre = Preprocessing(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1.0)
    preset = train_preset(pre, text_p=1.0, jpeg_p=1.0, greyscale_p=1.0, lowres_p=1.0)
    torch.manual_seed(1)
    for size in ((40, 30), (97, 131), (640, 480)):
        x = preset(stripes("vertical", 160).resize(size))
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32
        assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert torch.allclose(x[0], x[1]) and torch.allclose(x[1], x[2])  # greyscale stays greyscale
