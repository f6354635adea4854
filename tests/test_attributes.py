"""Attributes (fireplace, balcony, any yes/no question): labels, heads that plug into a bundle,
their columns in `estatelens tag`, and heatmaps that show where the model looked."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from estatelens.attributes import EMBEDDING_OUTPUT, add_embedding_output, has_embedding_output
from estatelens.bundle import load_bundle
from estatelens.cli import main
from estatelens.data.attribute_labels import read_attribute_label_sources, read_attribute_labels
from estatelens.tagging.job import columns
from estatelens.training.attributes import choose_threshold

from conftest import SHARED_DATA, has_shared_data, stripes


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def dim(im: Image.Image) -> Image.Image:
    return Image.fromarray((np.asarray(im, np.float32) * 0.3).astype(np.uint8))


def make_dim_folder(root: Path, per_value: int = 16) -> Path:
    """root/dim/{yes,no,unsure}/: stripes of both orientations, dimmed to 30 % brightness or not.
    Any convolutional embedding carries overall brightness, so the test is about the plumbing,
    not a tiny network's luck. The unsure photos are dim: read as "no", they would show."""
    for value in ("yes", "no"):
        d = root / "dim" / value
        d.mkdir(parents=True)
        for i in range(per_value):
            im = stripes(("vertical", "horizontal")[i % 2], 72, seed=(300 if value == "yes" else 400) + i)
            (dim(im) if value == "yes" else im).save(d / f"{value}_{i:02d}.jpg", quality=92)
    (root / "dim" / "unsure").mkdir()
    for i in range(3):
        dim(stripes("vertical", 72, seed=900 + i)).save(root / "dim" / "unsure" / f"unsure_{i}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def dim_bundle(tmp_path_factory, stripes_bundle) -> tuple[Path, Path]:
    """A copy of the stripes room-type bundle taught the attribute "dim" from a tiny folder:
    (the new bundle, the labelled folder)."""
    root = tmp_path_factory.mktemp("dim")
    data = make_dim_folder(root / "data")
    out = root / "with-dim.estatelens"
    assert main(["train-attribute", "dim", str(data), "--model", str(stripes_bundle), "--out", str(out),
                 "--views", "1", "--report", str(root / "report"), "--quiet"]) == 0
    return out, data


def test_unsure_rows_are_left_out_of_training_and_scoring(tmp_path):
    for name in ("a", "b", "c", "d", "e"):
        stripes("vertical", 48).save(tmp_path / f"{name}.jpg")
    (tmp_path / "labels.csv").write_text(
        "path,fireplace,balcony\na.jpg,yes,no\nb.jpg,no,unsure\nc.jpg,unsure,yes\nd.jpg,NO,no\ne.jpg,y,n\n")
    fire = read_attribute_labels(tmp_path / "labels.csv", "fireplace")
    assert {Path(s.path).name: s.label for s in fire.samples} == {"a.jpg": "yes", "b.jpg": "no", "d.jpg": "no",
                                                                    "e.jpg": "yes"}
    assert [Path(p).name for p in fire.unsure] == ["c.jpg"]
    assert fire.counts()["unsure_left_out"] == 1
    balcony = read_attribute_labels(tmp_path / "labels.csv", "balcony")
    assert "b.jpg" not in {Path(s.path).name for s in balcony.samples}
    with pytest.raises(ValueError, match="row 2, column fireplace.*'maybe'"):
        (tmp_path / "bad.csv").write_text("path,fireplace\na.jpg,maybe\n")
        read_attribute_labels(tmp_path / "bad.csv", "fireplace")
    with pytest.raises(ValueError, match="needs columns path,pool"):
        read_attribute_labels(tmp_path / "labels.csv", "pool")
    with pytest.raises(ValueError, match="lower-case letters"):
        read_attribute_labels(tmp_path / "labels.csv", "Fire place")


def test_labels_from_several_sources_are_read_together_and_must_agree(tmp_path):
    for name in ("a", "b", "c", "d"):
        stripes("vertical", 48).save(tmp_path / f"{name}.jpg")
    (tmp_path / "shared.csv").write_text("path,fireplace\na.jpg,yes\nb.jpg,no\n")
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "more.csv").write_text("path,fireplace,picked\n../b.jpg,no,mined\n../c.jpg,unsure,random\n"
                                              "../d.jpg,yes,random\n")
    both = read_attribute_label_sources([tmp_path / "shared.csv", tmp_path / "ours" / "more.csv"], "fireplace")
    assert sorted((Path(s.path).name, s.label) for s in both.samples) == [("a.jpg", "yes"), ("b.jpg", "no"),
                                                                         ("d.jpg", "yes")]
    assert [Path(p).name for p in both.unsure] == ["c.jpg"]
    (tmp_path / "ours" / "other.csv").write_text("path,fireplace\n../a.jpg,no\n")
    with pytest.raises(ValueError, match="a.jpg: labelled 'yes' in .*shared.csv and 'no' in .*other.csv"):
        read_attribute_label_sources([tmp_path / "shared.csv", tmp_path / "ours" / "other.csv"], "fireplace")


def test_unsure_folder_is_left_out_and_published_splits_are_kept(tmp_path):
    data = make_dim_folder(tmp_path, per_value=10)
    labels = read_attribute_labels(data, "dim")
    assert len(labels.samples) == 20 and len(labels.unsure) == 3
    assert all(Path(s.path).parent.name != "unsure" for s in labels.samples)
    counts = labels.counts()
    assert sum(counts[s]["yes"] for s in ("train", "val", "test")) == 10
    assert counts["test"]["yes"] >= 1 and counts["test"]["no"] >= 1  # stratified
    if has_shared_data():
        shared = read_attribute_labels(SHARED_DATA / "attributes.csv", "fireplace")
        test = [s for s in shared.samples if s.split == "test"]
        # rooms-web/test photos stay in the test split, whatever the seeded split does elsewhere
        assert all(s.split == "test" for s in shared.samples if "/rooms-web/test/" in s.path)
        assert sum(s.label == "yes" for s in test if "/rooms-web/test/" in s.path) == 19
        assert len(shared.unsure) == 36


def test_names_of_existing_output_columns_are_refused():
    from estatelens.attributes import check_attribute_name

    for column in columns(sort_into=True, explain=True):
        with pytest.raises(ValueError, match="taken by a column"):
            check_attribute_name(column)
    with pytest.raises(ValueError, match="taken by a column"):
        check_attribute_name("pool_probability")  # would clash with the pool attribute's own column
    assert check_attribute_name("tiled_stove") == "tiled_stove"


def test_threshold_is_the_lowest_that_reaches_the_precision_with_enough_support():
    y = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0])
    p = np.array([.95, .9, .85, .8, .7, .6, .5, .4, .3, .2])
    t = choose_threshold(y, p, 0.75, min_support=1)
    assert (y[p >= t] == 1).mean() >= 0.75
    assert t == 0.8  # 0.95, 0.9, 0.85, 0.8: 3 of 4; going lower to 0.6 gives 4 of 6
    assert choose_threshold(y, p, 0.999, min_support=1) == 0.9  # only the top two are sure
    # two lucky photos at the top prove nothing: with the default support of 5 true positives there
    # is no threshold at all, rather than the most precise one
    assert choose_threshold(y, p, 0.999) is None
    # fewer positives than the support in all: no threshold either, however well they are ranked
    assert choose_threshold(np.r_[np.ones(4), np.zeros(40)], np.linspace(1, 0, 44), 0.9) is None
    many = np.r_[np.ones(8), np.zeros(2), np.ones(2), np.zeros(8)]
    scores = np.linspace(1, 0, 20)
    t = choose_threshold(many, scores, 0.8)
    assert t is not None and (many[scores >= t] == 1).sum() >= 5 and (many[scores >= t] == 1).mean() >= 0.8


def test_better_than_chance_is_a_calibrated_z():
    from estatelens.training.attributes import better_than_chance

    rng = np.random.default_rng(0)
    zs = [better_than_chance(rng.random(200) < 0.2, rng.random(200))[1] for _ in range(300)]
    assert abs(np.mean(zs)) < 0.2 and 0.8 < np.std(zs) < 1.2  # under the null: about N(0, 1)
    y = np.r_[np.ones(30), np.zeros(170)]
    auc, z = better_than_chance(y, y + rng.normal(0, 0.5, 200))
    assert auc > 0.8 and z > 5


def test_a_head_that_learns_nothing_is_refused(tmp_path, stripes_bundle):
    from estatelens.bundle import load_bundle as load
    from estatelens.data.attribute_labels import read_attribute_labels as read
    from estatelens.training.attributes import train_attribute

    rows = ["path,lucky"]
    for i in range(40):  # the same kind of photo, labelled yes or no at random
        stripes(("vertical", "horizontal")[i % 2], 64, seed=2000 + i).save(tmp_path / f"{i}.jpg")
        rows.append(f"{i}.jpg,{'yes' if np.random.default_rng(i).random() < 0.5 else 'no'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="better than chance"):
        train_attribute(load(stripes_bundle), read(tmp_path / "labels.csv", "lucky"), views=0, progress=False)
    # three "yes" photos, however clear, cannot show it: a message that says so, not "chance"
    rows = ["path,dim"] + [f"{i}.jpg,{'yes' if i < 3 else 'no'}" for i in range(40)]
    (tmp_path / "few.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="too few to show"):
        train_attribute(load(stripes_bundle), read(tmp_path / "few.csv", "dim"), views=0, progress=False)


def test_new_attribute_plugs_into_the_bundle_and_appears_in_tag_output(tmp_path, dim_bundle, stripes_bundle):
    bundle_path, _ = dim_bundle
    bundle = load_bundle(bundle_path)
    assert [h.name for h in bundle.attributes] == ["dim"]
    head = bundle.attributes[0]
    assert 0 < head.threshold < 1 and head.target_precision == 0.9
    assert head.info["trained"]["labels"]["unsure_left_out"] == 3
    assert load_bundle(stripes_bundle).attributes == []  # --out leaves the source bundle as it was

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        orientation = ("vertical", "horizontal")[i % 2]
        dim(stripes(orientation, 80, seed=700 + i)).save(photos / f"d{i}.jpg")
        stripes(orientation, 80, seed=800 + i).save(photos / f"b{i}.jpg")
    (photos / "broken.jpg").write_bytes(b"not a photo")
    out, plain = tmp_path / "tags.csv", tmp_path / "plain.csv"
    assert main(["tag", str(photos), "--model", str(bundle_path), "--out", str(out), "--quiet"]) == 0
    assert main(["tag", str(photos), "--model", str(stripes_bundle), "--out", str(plain), "--quiet"]) == 0
    rows, before = read_csv_rows(out), {r["path"]: r for r in read_csv_rows(plain)}
    assert list(rows[0]) == columns(False, bundle.attributes)
    assert list(rows[0])[5:7] == ["dim", "dim_probability"]  # next to the room type (and `unusual`)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 12
    for r in ok:
        p = float(r["dim_probability"])
        assert r["dim"] == ("yes" if p >= head.threshold else "no")
        # one backbone pass: the room-type columns are the same as without the head
        assert r["room_type"] == before[r["path"]]["room_type"]
        assert r["probability"] == before[r["path"]]["probability"]
    dimmed = [float(r["dim_probability"]) for r in ok if Path(r["path"]).name.startswith("d")]
    bright = [float(r["dim_probability"]) for r in ok if Path(r["path"]).name.startswith("b")]
    assert min(dimmed) > max(bright)
    assert all(r["dim"] == "yes" for r in ok if Path(r["path"]).name.startswith("d"))
    bad = next(r for r in rows if r["path"].endswith("broken.jpg"))
    assert bad["status"] != "ok" and bad["dim"] == "" and bad["dim_probability"] == ""


def test_train_attribute_report_and_in_place_rules(tmp_path, capsys, dim_bundle):
    bundle_path, data = dim_bundle
    report = json.loads((bundle_path.parent / "report" / "metrics.json").read_text())
    assert report["labels"]["unsure_left_out"] == 3
    assert report["validation"]["n"] + report["test"]["n"] == 32
    assert report["test"]["positives"] >= 1 and report["test"]["average_precision"] is not None
    # a bundled model given by name is never changed in place
    capsys.readouterr()
    assert main(["train-attribute", "dim", str(data), "--model", "rooms", "--quiet"]) == 2
    assert "rooms is a bundled model; give --out" in capsys.readouterr().err
    # --out onto an existing bundle is refused rather than overwritten
    (tmp_path / "taken.estatelens").mkdir()
    assert main(["train-attribute", "dim", str(data), "--model", str(bundle_path),
                 "--out", str(tmp_path / "taken.estatelens"), "--quiet"]) == 2
    assert list((tmp_path / "taken.estatelens").iterdir()) == []


def test_a_head_from_another_network_is_refused(tmp_path, dim_bundle, stripes_bundle):
    bundle_path, _ = dim_bundle
    other = tmp_path / "other.estatelens"
    shutil.copytree(stripes_bundle, other)
    (other / "attributes").mkdir()
    shutil.copy(bundle_path / "attributes" / "dim.json", other / "attributes")
    # same network, same bytes: the head is valid there
    assert [h.name for h in load_bundle(other).attributes] == ["dim"]
    # a changed graph (here: retrained, so other weights) refuses it with a message saying what to do
    data = (other / "model.onnx").read_bytes()
    (other / "model.onnx").write_bytes(data + b"\0")
    with pytest.raises(ValueError, match="trained on another network.*train-attribute dim"):
        load_bundle(other).attributes


def test_embedding_output_added_to_an_older_graph_keeps_its_probabilities(tmp_path, stripes_bundle):
    import onnx

    old = tmp_path / "old.estatelens"
    shutil.copytree(stripes_bundle, old)
    model = onnx.load(str(old / "model.onnx"))
    for node in model.graph.node:  # as bundles were exported before attributes: no such tensor
        node.input[:] = ["pooled" if t == EMBEDDING_OUTPUT else t for t in node.input]
        node.output[:] = ["pooled" if t == EMBEDDING_OUTPUT else t for t in node.output]
    kept = [o for o in model.graph.output if o.name != EMBEDDING_OUTPUT]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(model, str(old / "model.onnx"))
    assert not has_embedding_output(old / "model.onnx")
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    before = load_bundle(old).predict_batch(x)
    assert add_embedding_output(old / "model.onnx") is True
    assert add_embedding_output(old / "model.onnx") is False  # once only
    probs, emb = load_bundle(old).run_batch(x)
    np.testing.assert_array_equal(probs, before)
    _, reference = load_bundle(stripes_bundle).run_batch(x)
    np.testing.assert_allclose(emb, reference, rtol=1e-5, atol=1e-6)


def test_explain_writes_overlays_the_size_of_the_photo_where_the_attribute_is(tmp_path, dim_bundle):
    from estatelens.explain import Explainer

    bundle_path, _ = dim_bundle
    photo = tmp_path / "wide.jpg"
    pixels = np.asarray(stripes("vertical", 96, seed=5).resize((150, 96)), np.float32)
    pixels[:, :75] *= 0.3  # the left half is dim, the right half is not
    Image.fromarray(pixels.astype(np.uint8)).save(photo, quality=92)
    out = tmp_path / "heat"
    assert main(["explain", str(photo), "--model", str(bundle_path), "--out", str(out), "--every-attribute"]) == 0
    explanation = Explainer(load_bundle(bundle_path)).explain(photo, every_attribute=True)
    room = explanation.heatmaps[0].label
    assert sorted(p.name for p in out.iterdir()) == ["wide.dim.jpg", f"wide.{room}.jpg"]
    for f in out.iterdir():
        assert Image.open(f).size == (150, 96)
    cam = next(hm.cam for hm in explanation.heatmaps if hm.target == "dim")
    assert cam.ndim == 2 and min(cam.shape) > 1
    # the network sees the centre square (x 27..123); its left part is the dim part of the photo
    half = cam.shape[1] // 2
    assert cam[:, :half].mean() > cam[:, half:].mean()
    assert main(["explain", str(tmp_path / "missing.jpg"), "--model", str(bundle_path), "--out", str(out)]) == 1


def test_overlay_colours_the_photo_where_the_heat_is_and_dims_what_the_network_does_not_see(tmp_path):
    from estatelens.explain import Explanation, Heatmap, write_overlays

    photo = tmp_path / "room.png"  # lossless, so that untouched pixels compare exactly
    Image.fromarray(np.full((60, 100, 3), 200, np.uint8)).save(photo)
    cam = np.zeros((4, 4), np.float32)
    cam[:, :2] = 1.0  # hot on the left half of the centre square, cold on the right
    [f] = write_overlays(Explanation(str(photo), (100, 60), [Heatmap("pool", "yes", 0.9, cam)]), tmp_path / "o")
    assert f.name == "room.pool.jpg"
    out = np.asarray(Image.open(f), np.float32)
    assert out.shape == (60, 100, 3)
    square = out[:, 20:80]  # the centre 60 x 60 square the network sees
    assert np.abs(square[:, 40:] - 200).max() < 12  # no heat: the photo as it was (JPEG aside)
    assert np.abs(square[:, :15] - 200).sum(2).mean() > 60  # full heat: coloured
    assert np.abs(out[:, :15] - 200 * 0.45).max() < 12  # outside the square: dimmed


def test_tag_explain_writes_heatmaps_for_every_tagged_photo(tmp_path, dim_bundle):
    bundle_path, _ = dim_bundle
    photos = tmp_path / "photos"
    for sub in ("a", "b"):  # the same file name in two folders: overlays must not collide
        (photos / sub).mkdir(parents=True)
        stripes("vertical", 80, seed=11 if sub == "a" else 12).save(photos / sub / "IMG_0001.jpg")
    (photos / "a" / "empty.jpg").write_bytes(b"")
    out, heat = tmp_path / "tags.csv", photos / "heatmaps"  # inside the input: never tagged itself
    assert main(["tag", str(photos), "--model", str(bundle_path), "--out", str(out), "--explain", str(heat),
                 "--quiet"]) == 0
    rows = {Path(r["path"]).relative_to(photos).as_posix(): r for r in read_csv_rows(out)}
    assert set(rows) == {"a/IMG_0001.jpg", "b/IMG_0001.jpg", "a/empty.jpg"}
    assert rows["a/empty.jpg"]["heatmaps"] == ""
    written = set()
    for rel in ("a/IMG_0001.jpg", "b/IMG_0001.jpg"):
        files = rows[rel]["heatmaps"].split(";")
        assert files[0].endswith(f".{rows[rel]['room_type']}.jpg")
        assert len(files) == 1 + (rows[rel]["dim"] == "yes")
        for f in files:
            assert Image.open(f).size == (80, 80)
        written.update(files)
    assert len(written) == len(list(heat.iterdir()))  # two photos, no overwrites


@pytest.mark.skipif(not has_shared_data(), reason="../shared/data is not here")
def test_bundled_model_tags_fireplace_balcony_and_empty(tmp_path):
    bundle = load_bundle("rooms")
    heads = {h.name: h for h in bundle.attributes}
    assert sorted(heads) == ["balcony", "empty", "fireplace"]
    for name in ("fireplace", "empty"):
        assert 0 < heads[name].threshold < 1 and heads[name].target_precision == 0.9
    photos = sorted((SHARED_DATA / "houses" / "photos").glob("1?_*.jpg"))[:8]
    out = tmp_path / "tags.jsonl"
    assert main(["tag", *map(str, photos), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8
    for r in rows:
        for name, head in heads.items():
            assert 0 <= r[f"{name}_probability"] <= 1
            assert r[name] == head.says(r[f"{name}_probability"])  # "yes"/"no", or None without a threshold


@pytest.mark.skipif(not has_shared_data(), reason="../shared/data is not here")
def test_bundled_empty_head_on_the_rooms_it_never_learnt_from(tmp_path):
    """`empty` (unfurnished rooms, data/labels/empty.csv, labelled by eye): its test rows, held out
    of its training, ranked and thresholded as the head ships."""
    from sklearn.metrics import average_precision_score

    labels = Path(__file__).resolve().parents[1] / "data" / "labels" / "empty.csv"
    with open(labels, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test" and r["empty"] in ("yes", "no")]
    paths = [str((labels.parent / r["path"]).resolve()) for r in rows]
    y = np.array([r["empty"] == "yes" for r in rows])
    assert y.sum() >= 10 and (~y).sum() >= 50
    out = tmp_path / "tags.jsonl"
    assert main(["tag", *paths, "--out", str(out), "--quiet"]) == 0
    tagged = {Path(t["path"]).resolve(): t for t in map(json.loads, out.read_text().splitlines())}
    p = np.array([tagged[Path(q)]["empty_probability"] for q in paths])
    said = np.array([tagged[Path(q)]["empty"] == "yes" for q in paths])
    assert average_precision_score(y, p) >= 0.9
    assert said[y].sum() >= 5 and y[said].mean() >= 0.9  # most empty rooms found; what it says, right


def test_split_folders_above_or_below_the_name_and_absolute_paths(tmp_path):
    for split in ("train", "test"):
        for value in ("yes", "no"):
            d = tmp_path / "above" / split / "dim" / value
            d.mkdir(parents=True)
            stripes("vertical", 48, seed=len(str(d))).save(d / "a.jpg")
    labels = read_attribute_labels(tmp_path / "above", "dim")
    assert sorted((s.split, s.label) for s in labels.samples) == [
        ("test", "no"), ("test", "yes"), ("train", "no"), ("train", "yes")]
    # a CSV listing absolute paths under some /.../test/... folder: that folder says nothing
    photos = tmp_path / "test" / "photos"
    photos.mkdir(parents=True)
    rows = ["path,dim"]
    for i in range(20):
        stripes("vertical", 48, seed=i).save(photos / f"{i}.jpg")
        rows.append(f"{photos / f'{i}.jpg'},{'yes' if i % 2 else 'no'}")
    (tmp_path / "abs.csv").write_text("\n".join(rows) + "\n")
    splits = [s.split for s in read_attribute_labels(tmp_path / "abs.csv", "dim").samples]
    assert splits.count("train") >= 12 and splits.count("test") <= 4


def test_bad_photos_copies_and_failures_in_train_attribute(tmp_path, capsys, dim_bundle, stripes_bundle):
    _, data = dim_bundle
    mixed = tmp_path / "data"
    shutil.copytree(data, mixed)
    (mixed / "dim" / "no" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "b.estatelens"
    assert main(["train-attribute", "dim", str(mixed), "--model", str(stripes_bundle), "--out", str(out),
                 "--views", "0", "--report", str(tmp_path / "r"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "1 unreadable" in printed and "broken.jpg" in printed
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert [Path(u["path"]).name for u in report["unreadable"]] == ["broken.jpg"]

    # a run that fails leaves neither a bundle nor a half-made folder behind
    failed = tmp_path / "failed.estatelens"
    assert main(["train-attribute", "vertical", str(data / "dim"), "--model", str(stripes_bundle),
                 "--out", str(failed), "--quiet"]) == 2
    assert "one of the model's room types" in capsys.readouterr().err
    assert not failed.exists() and not list(tmp_path.glob("*.tmp"))


def test_a_test_photo_that_copies_a_training_photo_is_left_out(tmp_path, stripes_bundle):
    from estatelens.training.attributes import train_attribute

    rows = ["path,dim,split"]
    for i in range(30):
        im = stripes(("vertical", "horizontal")[i % 2], 64, seed=3000 + i)
        (dim(im) if i < 15 else im).save(tmp_path / f"{i}.jpg")
        rows.append(f"{i}.jpg,{'yes' if i < 15 else 'no'},{'test' if i % 5 == 0 else 'train'}")
    shutil.copy(tmp_path / "1.jpg", tmp_path / "copy.jpg")  # 1.jpg is a training photo
    rows.append("copy.jpg,yes,test")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    fit = train_attribute(load_bundle(stripes_bundle), read_attribute_labels(tmp_path / "labels.csv", "dim"),
                          views=0, progress=False, log=lambda _: None)
    assert [Path(p).name for p in fit.report["test_copies_of_training_photos_left_out"]] == ["copy.jpg"]
    assert fit.report["test"]["n"] == 6


def test_explain_without_weights_says_what_is_missing(tmp_path, capsys, dim_bundle):
    bundle_path, _ = dim_bundle
    bare = tmp_path / "bare.estatelens"
    shutil.copytree(bundle_path, bare)
    (bare / "weights.pt").unlink()
    photo = tmp_path / "p.jpg"
    stripes("vertical", 64).save(photo)
    assert main(["explain", str(photo), "--model", str(bare), "--out", str(tmp_path / "o")]) == 2
    assert "no weights.pt" in capsys.readouterr().err


def test_interrupted_tag_explain_resumes_without_losing_or_redoing_heatmaps(tmp_path, dim_bundle, monkeypatch):
    from estatelens.tagging import TagJob, run_tagging
    from estatelens.tagging import job as job_module
    from estatelens.tagging.job import journal_path

    from test_tagging import _Interrupt

    bundle_path, _ = dim_bundle
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(10):
        im = stripes(("vertical", "horizontal")[i % 2], 64, seed=40 + i)
        (dim(im) if i % 3 == 0 else im).save(photos / f"{i}.jpg")
    out, heat = tmp_path / "tags.csv", tmp_path / "heat"
    job = TagJob([str(photos)], str(out), batch_size=4, workers=1, progress=False, explain=str(heat))
    bundle = load_bundle(bundle_path)
    monkeypatch.setattr(job_module, "tag_photos", _Interrupt(6, job_module.tag_photos))
    with pytest.raises(KeyboardInterrupt):
        run_tagging(bundle, job)
    journal = journal_path(out)
    saved = [f for line in journal.read_text().splitlines()[1:] for f in json.loads(line)["heatmaps"].split(";")]
    assert saved  # the interrupted run had journaled photos with their heatmaps
    written_before = {str(f): f.stat().st_mtime_ns for f in heat.iterdir()}
    # the same output with other options is another run: refused rather than mixed in
    with pytest.raises(ValueError, match="different inputs, model or options"):
        run_tagging(bundle, TagJob([str(photos)], str(out), batch_size=4, workers=1, progress=False))
    monkeypatch.undo()
    run_tagging(bundle, job, log=lambda m: None)
    rows = read_csv_rows(out)
    assert len(rows) == 10 and all(r["status"] == "ok" for r in rows)
    listed = [f for r in rows for f in r["heatmaps"].split(";")]
    assert sorted(listed) == sorted(str(f) for f in heat.iterdir())  # every overlay listed, none lost
    # the journaled photos' overlays were not made again; the photos after the last saved batch were
    assert all(Path(f).stat().st_mtime_ns == written_before[f] for f in saved)


def test_train_attribute_in_place_keeps_other_heads_and_a_failure_changes_nothing(tmp_path, dim_bundle):
    bundle_path, data = dim_bundle
    mine = tmp_path / "mine"  # a bundle folder without the .estatelens suffix, used in place
    shutil.copytree(bundle_path, mine)
    link = tmp_path / "link.estatelens"
    link.symlink_to(mine)
    before = {f.name: f.read_bytes() for f in mine.iterdir() if f.is_file()}
    # a second attribute added in place, through a link: the first head stays
    shutil.copytree(data / "dim", tmp_path / "dark")
    assert main(["train-attribute", "dark", str(tmp_path / "dark"), "--model", str(link), "--views", "0",
                 "--report", str(tmp_path / "r"), "--quiet"]) == 0
    assert sorted(h.name for h in load_bundle(mine).attributes) == ["dark", "dim"]
    assert link.is_symlink() and not (tmp_path / "mine.estatelens").exists()
    assert {f.name: f.read_bytes() for f in mine.iterdir() if f.is_file()} == before  # graph untouched
    # a run that fails (a room type's name) changes nothing and leaves no temporary folder
    assert main(["train-attribute", "vertical", str(data / "dim"), "--model", str(mine), "--quiet"]) == 2
    assert sorted(h.name for h in load_bundle(mine).attributes) == ["dark", "dim"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_head_without_threshold_gives_probabilities_and_no_yes_or_no(tmp_path, dim_bundle):
    bundle_path, _ = dim_bundle
    b = tmp_path / "b.estatelens"
    shutil.copytree(bundle_path, b)
    head = json.loads((b / "attributes" / "dim.json").read_text())
    head["threshold"] = None
    (b / "attributes" / "dim.json").write_text(json.dumps(head))
    photo = tmp_path / "p.jpg"
    dim(stripes("vertical", 64)).save(photo)
    out = tmp_path / "t.csv"
    assert main(["tag", str(photo), "--model", str(b), "--out", str(out), "--explain", str(tmp_path / "h"),
                 "--quiet"]) == 0
    [row] = read_csv_rows(out)
    assert row["dim"] == "" and 0 <= float(row["dim_probability"]) <= 1
    assert row["heatmaps"].count(";") == 0  # the room type only: nothing "fires" without a threshold


def test_the_test_report_groups_sources_named_one_relative_one_absolute(tmp_path, monkeypatch):
    """Two label CSVs, one naming photos by relative paths and one by absolute ones (the shared
    labels and data/labels/ in tools/build_default_model.sh): the report still groups by source."""
    import numpy as np

    from estatelens.attributes import AttributeHead
    from estatelens.data.attribute_labels import AttributeLabels
    from estatelens.data.dataset import Sample
    from estatelens.training.attributes import _test_report

    monkeypatch.chdir(tmp_path)
    (tmp_path / "web").mkdir()
    (tmp_path / "places").mkdir()
    rel = [f"web/{i}.jpg" for i in range(6)]
    absolute = [str(tmp_path / "places" / f"{i}.jpg") for i in range(6)]
    labels = AttributeLabels("fireplace", [Sample(p, "yes" if i % 2 else "no", "test") for i, p in enumerate(rel + absolute)])
    y = np.array([i % 2 for i in range(12)])
    p = np.linspace(0.05, 0.95, 12)
    head = AttributeHead("fireplace", np.zeros(4, np.float32), 0.0, threshold=0.5, target_precision=0.9, graph="g")
    report = _test_report(head, p, y, rel + absolute, labels)
    assert set(report["by_source"]) == {"web", "places"}


def test_a_multitask_network_is_calibrated_on_photos_whose_labels_it_did_not_learn(tmp_path, stripes_bundle):
    """After `train --attribute`, the bundle names the photos whose labels the network learnt;
    train-attribute then takes calibration, threshold and C from the others only."""
    import shutil

    from estatelens.bundle import load_bundle as load
    from estatelens.data.attribute_labels import read_attribute_labels as read
    from estatelens.training.attributes import train_attribute
    from estatelens.training.multitask import photo_key

    data = make_dim_folder(tmp_path / "data", per_value=30)
    labels = read(data, "dim")
    bundle_dir = tmp_path / "mt.estatelens"
    shutil.copytree(stripes_bundle, bundle_dir)
    bundle = load(bundle_dir)
    pool = [s for s in labels.samples if s.split != "test"]
    learnt = [photo_key(s.path) for s in pool[::2]]  # the network "learnt" every other photo
    bundle.update_info(multitask={"attributes": {}, "labelled": {"dim": learnt}})
    lines = []
    fit = train_attribute(load(bundle_dir), labels, views=0, progress=False, log=lines.append)
    unseen = len(pool) - len(learnt)
    assert fit.report["validation"]["n"] == unseen and "did not learn" in fit.report["validation"]["how"]
    assert any(f"from the other {unseen}" in line for line in lines)
    # a bundle that learnt no labels is calibrated on every train+val photo, as before
    plain = train_attribute(load(stripes_bundle), labels, views=0, progress=False, log=lambda s: None)
    assert plain.report["validation"]["n"] == len(pool)
