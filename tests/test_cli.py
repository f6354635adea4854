"""The command line as a user runs it: train on a folder, then evaluate the bundle it wrote."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from estatelens.cli import main

from conftest import make_stripes_dataset, write_broken_files


def test_help_explains_every_command(capsys):
    for command in ("tag", "train", "evaluate", "predict", "quantize", "models"):
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
        assert "usage: estatelens " + command in capsys.readouterr().out



@pytest.mark.parametrize("argv", [["tag", "photos", "--batch-size", "0"], ["tag", "photos", "--workers", "-3"],
                                  ["search", "kitchen", "--per-page", "0"], ["train", "data", "--epochs", "0"],
                                  ["tag", "photos", "--batch-size", "many"]])
def test_counts_below_one_are_refused_before_any_work(argv, capsys):
    """A batch size of 0 once tagged nothing and reported that every photo passed."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert argv[2] in err and ("must be 1 or more" in err or "whole number" in err)

def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "estatelens", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("estatelens ")


def test_train_then_evaluate_on_a_tiny_folder(tmp_path, capsys):
    data = make_stripes_dataset(tmp_path / "data", per_class=30, splits=True)
    write_broken_files(data / "train" / "horizontal")
    run = tmp_path / "run"
    # ImageNet EfficientNet-Lite0 with its last two blocks trained, sharp targets, batches of 16:
    # 12 seeds of 12 reached 0.92 or more on the 12 test photos in 2-3 s each. (The tiny RoomNet
    # from scratch, 30 epochs, reached 0.8 at 4 seeds of 8 with bfloat16 autocast and 3 of 8
    # without: a coin toss on another machine.)
    assert main(["train", str(data), "--model", "efficientnet_lite0", "--mode", "finetune", "--epochs", "8",
                 "--batch-size", "16", "--image-size", "96", "--views", "1", "--train-from-block", "-2",
                 "--lr", "1e-2", "--label-smoothing", "0", "--workers", "0", "--out", str(run),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "4 skipped" in out and "report: " in out
    assert (run / "model.estatelens" / "model.onnx").is_file()
    assert (run / "report" / "report.html").is_file()
    trained = json.loads((run / "metrics.json").read_text())
    assert {s["path"].rsplit("/", 1)[-1] for s in trained["skipped"]} >= {"truncated.jpg", "empty.jpg",
                                                                          "notes.jpg", "tiny.jpg"}

    metrics_path = tmp_path / "eval" / "metrics.json"
    assert main(["evaluate", str(data / "test"), "--model", str(run / "model.estatelens"),
                 "--json", str(metrics_path), "--workers", "0"]) == 0
    m = json.loads(metrics_path.read_text())
    assert m["n"] == 12
    for key in ("accuracy", "top2_accuracy", "per_class", "confusion", "skipped"):
        assert key in m
    assert set(m["per_class"]) == {"horizontal", "vertical"}
    assert m["confusion"]["labels"] == ["horizontal", "vertical"]
    assert sum(map(sum, m["confusion"]["matrix"])) == 12
    assert m["accuracy"] > 0.8


def test_evaluate_refuses_labels_the_model_does_not_know(tmp_path, capsys):
    data = make_stripes_dataset(tmp_path / "data", per_class=30, splits=True)
    run = tmp_path / "run"
    main(["train", str(data), "--model", "roomnet", "--mode", "scratch", "--epochs", "1", "--image-size", "64",
          "--workers", "0", "--out", str(run)])
    (data / "test" / "attic").mkdir()
    moved = sorted((data / "test" / "horizontal").glob("*.jpg"))[0]
    moved.rename(data / "test" / "attic" / moved.name)
    assert main(["evaluate", str(data / "test"), "--model", str(run / "model.estatelens")]) == 2
    assert "attic" in capsys.readouterr().err


def test_predict_with_the_imagenet_bundle(tmp_path, capsys):
    from conftest import stripes

    stripes("horizontal", 128).save(tmp_path / "photo.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    assert main(["predict", str(tmp_path / "photo.jpg"), str(tmp_path / "broken.jpg"), "--top", "3"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(str(tmp_path / "photo.jpg")) and out[0].count(",") == 2
    assert "skipped" in out[1]


def test_train_further_from_a_bundle(tmp_path, capsys, stripes_bundle):
    import torch

    from estatelens.bundle import load_bundle

    data = make_stripes_dataset(tmp_path / "data", per_class=20, splits=True)
    run = tmp_path / "further"
    assert main(["train", str(data), "--model", "roomnet", "--mode", "scratch", "--epochs", "1", "--lr", "1e-5",
                 "--image-size", "64", "--workers", "0", "--out", str(run), "--init", str(stripes_bundle)]) == 0
    out = capsys.readouterr().out
    assert f"starting from {stripes_bundle}" in out
    # One epoch at a tiny learning rate moves the learned weights by about 1e-4: they are the
    # bundle's, not a fresh initialisation (batch-norm statistics do move, so they are left out).
    before = torch.load(stripes_bundle / "weights.pt")
    after = torch.load(run / "model.estatelens" / "weights.pt")
    learned = [k for k in before if "running_" not in k and "num_batches" not in k]
    assert len(learned) > 10
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-3) for k in learned)

    other = make_stripes_dataset(tmp_path / "other", per_class=20, splits=True)
    (other / "train" / "vertical").rename(other / "train" / "upright")
    for split in ("val", "test"):
        (other / split / "vertical").rename(other / split / "upright")
    assert main(["train", str(other), "--model", "roomnet", "--mode", "scratch", "--epochs", "1",
                 "--image-size", "64", "--workers", "0", "--out", str(tmp_path / "o"), "--init", str(stripes_bundle)]) == 0
    assert "backbone only" in capsys.readouterr().out
    assert load_bundle(tmp_path / "o" / "model.estatelens").classes == ["horizontal", "upright"]
    assert main(["train", str(other), "--model", "efficientnet_lite0", "--mode", "scratch", "--epochs", "1",
                 "--image-size", "64", "--workers", "0", "--out", str(tmp_path / "x"), "--init", str(stripes_bundle)]) == 2
    assert "roomnet bundle" in capsys.readouterr().err
