"""`estatelens adapt`: a bundle learns a new market's photos from a few labels, keeps what it knew."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from estatelens.bundle import load_bundle
from estatelens.cli import main

from conftest import make_stripes_dataset, stripes


def diagonal(size: int = 64, seed: int = 0) -> Image.Image:
    """Stripes at 45 degrees, dimmed to a fifth: a kind of photo the stripes model never saw.
    (Any convolutional embedding carries overall brightness, so a linear head can find the class
    whatever the tiny network happened to learn.)"""
    big = stripes("vertical", size * 2, seed=seed).rotate(45, resample=Image.BILINEAR)
    im = big.crop((size // 2, size // 2, size // 2 + size, size // 2 + size))
    return Image.fromarray((np.asarray(im, np.float32) * 0.2).astype(np.uint8))


@pytest.fixture(scope="module")
def stripes_net(tmp_path_factory) -> Path:
    """A bundle whose network is right on every stripes photo, with an embedding and a linear head
    as the real ones have: features (changes down, changes across, brightness, contrast), and a head
    that compares the first two. No training to wait for, so the test is about adapting."""
    import torch

    from estatelens.bundle import save_bundle
    from estatelens.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

    class Features(torch.nn.Module):
        def forward(self, x):
            grey = x.mean(1)
            down = (grey[:, 1:, :] - grey[:, :-1, :]).abs().mean((1, 2))
            across = (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean((1, 2))
            return torch.stack([down, across, grey.mean((1, 2)), grey.std((1, 2))], 1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = Features()
            self.head = torch.nn.Sequential(torch.nn.Dropout(0.0), torch.nn.Linear(4, 2))
            with torch.no_grad():
                self.head[1].weight.copy_(torch.tensor([[3.0, -3.0, 0, 0], [-3.0, 3.0, 0, 0]]))
                self.head[1].bias.zero_()

        def forward_with_embedding(self, x):
            e = self.backbone(x)
            return self.head(e), e

        def forward(self, x):
            return self.forward_with_embedding(x)[0]

    path = tmp_path_factory.mktemp("net") / "stripes"
    return save_bundle(path, Net(), ["horizontal", "vertical"], Preprocessing(64, IMAGENET_MEAN, IMAGENET_STD),
                       {"model": "stripes-net"}).path


def make_market(root: Path, n: int = 30, seed: int = 5000) -> Path:
    (root / "diagonal").mkdir(parents=True)
    for i in range(n):
        diagonal(64, seed + i).save(root / "diagonal" / f"d{i:03d}.jpg", quality=92)
    return root


def tag(bundle: Path, paths: list[Path], out: Path) -> list[dict]:
    assert main(["tag", *map(str, paths), "--model", str(bundle), "--out", str(out), "--quiet"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_adapt_learns_a_new_class_from_a_few_photos_and_keeps_the_old_ones(tmp_path, stripes_net, capsys):
    stripes_bundle = stripes_net
    old = make_stripes_dataset(tmp_path / "old", per_class=20, splits=True)
    market = make_market(tmp_path / "market")
    out = tmp_path / "market.estatelens"
    assert main(["adapt", str(market), "--model", str(stripes_bundle), "--rehearse", str(old), "--out", str(out),
                 "--views", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "new classes: diagonal" in printed and "held-apart labelled photos" in printed

    adapted = load_bundle(out)
    assert adapted.classes == ["horizontal", "vertical", "diagonal"]
    report = adapted.info["adapted"]
    assert report["holdout"]["before"] == 0.0 and report["holdout"]["after"] >= 0.8
    # The network is untouched: the same graph, so attribute heads and speed stay as they were.
    assert (out / "model.onnx").read_bytes() == (stripes_bundle / "model.onnx").read_bytes()

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for i in range(10):
        diagonal(64, 9000 + i).save(fresh / f"diagonal_{i}.jpg")
        stripes(("horizontal", "vertical")[i % 2], 64, seed=9100 + i).save(fresh / f"{('horizontal', 'vertical')[i % 2]}_{i}.jpg")
    rows = tag(out, sorted(fresh.iterdir()), tmp_path / "tags.jsonl")
    before = {r["path"]: r["room_type"] for r in tag(stripes_bundle, sorted(fresh.iterdir()), tmp_path / "old.jsonl")}
    said = {r["path"]: r["room_type"] for r in rows}
    diag = [p for p in said if Path(p).name.startswith("diagonal")]
    plain = [p for p in said if p not in diag]
    assert np.mean([said[p] == "diagonal" for p in diag]) >= 0.8
    # Not forgotten: on the kinds of photo it knew, the adapted bundle is still right.
    assert all(before[p] == Path(p).name.split("_")[0] for p in plain), before
    assert np.mean([said[p] == before[p] for p in plain]) >= 0.9
    assert all(abs(sum(r[f"probability_{k}"] for k in (1, 2, 3)) - 1) < 2e-3 for r in rows)  # rounded to 4 places

    # The adapted bundle carries its rehearsal set, now with the market in it: adapting it again
    # needs no --rehearse.
    again = tmp_path / "again.estatelens"
    more = make_market(tmp_path / "more", n=10, seed=7000)
    assert main(["adapt", str(more), "--model", str(out), "--out", str(again), "--holdout", "0", "--quiet"]) == 0
    assert load_bundle(again).classes == ["horizontal", "vertical", "diagonal"]


def test_rehearsal_leaves_out_test_photos_and_a_missing_class_is_refused(tmp_path, stripes_net, capsys):
    stripes_bundle = stripes_net
    from estatelens.rehearsal import load_rehearsal

    old = make_stripes_dataset(tmp_path / "old", per_class=10, splits=True)
    market = make_market(tmp_path / "market", n=10)
    out = tmp_path / "m.estatelens"
    assert main(["adapt", str(market), "--model", str(stripes_bundle), "--rehearse", str(old), "--out", str(out),
                 "--views", "0", "--holdout", "0", "--quiet"]) == 0
    r = load_rehearsal(out)
    n_old_train_val = sum(1 for p in old.rglob("*.jpg") if p.parts[-3] != "test")
    assert (r.labels < 2).sum() == 2 * n_old_train_val  # each photo as seen and in one augmented view
    # An adapted head reads this graph's embedding: quantising under it would silently break it.
    assert main(["quantize", str(out), "--calibration", str(old), "--out", str(tmp_path / "q.estatelens")]) == 2
    assert "quantise the bundle first, then adapt" in capsys.readouterr().err

    only_h = tmp_path / "only-h"
    (only_h / "horizontal").mkdir(parents=True)
    for i in range(3):
        stripes("horizontal", 64, seed=i).save(only_h / "horizontal" / f"{i}.jpg")
    capsys.readouterr()
    assert main(["adapt", str(market), "--model", str(stripes_bundle), "--rehearse", str(only_h),
                 "--out", str(tmp_path / "x.estatelens"), "--quiet"]) == 2
    assert "--rehearse has no photos of vertical" in capsys.readouterr().err
    assert main(["adapt", str(market), "--model", str(stripes_bundle), "--out", str(tmp_path / "y.estatelens"),
                 "--quiet"]) == 2
    assert "carries no rehearsal.npz" in capsys.readouterr().err
    assert not (tmp_path / "x.estatelens").exists() and not (tmp_path / "y.estatelens").exists()


def test_a_room_head_fitted_on_another_network_is_refused(tmp_path, stripes_net):
    stripes_bundle = stripes_net
    import shutil

    from estatelens.room_head import RoomHead, save_room_head

    copy = tmp_path / "copy.estatelens"
    shutil.copytree(stripes_bundle, copy)
    b = load_bundle(copy)
    save_room_head(copy, RoomHead(b.classes, np.zeros((2, 4), np.float32), np.zeros(2, np.float32), 1.0, "0" * 16))
    stripes("vertical", 64).save(tmp_path / "v.jpg")
    with pytest.raises(ValueError, match="fitted on another network"):
        load_bundle(copy).predict_files([str(tmp_path / "v.jpg")])


def test_labels_are_matched_to_the_bundles_classes_and_typos_refused(tmp_path, stripes_net, capsys):
    """`Kitchen ` from a hand-made CSV is the class kitchen; `bedrom` would have become a class of
    its own that no photo is ever meant to get."""
    from estatelens.commands.adapt import match_classes
    from estatelens.data.dataset import Sample

    rooms = ["bathroom", "bedroom", "dining_room", "entrance_hall", "exterior", "kitchen", "living_room"]
    got = match_classes([Sample("a.jpg", "Kitchen"), Sample("b.jpg", "living room"), Sample("c.jpg", "garage")], rooms)
    assert [s.label for s in got] == ["kitchen", "living_room", "garage"]  # garage: a new class, like no other
    with pytest.raises(ValueError, match="'bedrom' .* did you mean 'bedroom'"):
        match_classes([Sample("a.jpg", "bedrom")], rooms)
    assert [s.label for s in match_classes([Sample("a.jpg", "bedrom")], rooms, new=["bedrom"])] == ["bedrom"]

    folder = tmp_path / "market"
    folder.mkdir()
    rows = ["path,label"]
    for i in range(4):
        stripes("horizontal", 64, seed=i).save(folder / f"h{i}.jpg")
        stripes("vertical", 64, seed=10 + i).save(folder / f"v{i}.jpg")
        rows += [f"h{i}.jpg,Horizontal ", f"v{i}.jpg,verticle"]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "typo.estatelens"
    assert main(["adapt", str(folder / "labels.csv"), "--model", str(stripes_net), "--out", str(out), "--quiet"]) == 2
    said = capsys.readouterr()
    assert "label 'Horizontal' read as the class 'horizontal' (4 photos)" in said.out
    assert "'verticle' (4 photos) is not a class of the model: did you mean 'vertical'?" in said.err
    assert not out.exists()
