"""`estatelens compare`: tables, figures and per-class tables from real (tiny) runs; a crashing run
is recorded and the others go on; a rerun skips what is finished."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image
from torch import nn

from estatelens import compare as compare_module
from estatelens.cli import main
from estatelens.data.dataset import Sample
from estatelens.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from estatelens.models import registry

from conftest import make_stripes_dataset


class TinyCNN(nn.Module):
    """ImageNet-shaped like torchvision's classifiers (a `classifier` whose last layer has 1000
    outputs), so the registry strips and replaces its head the same way."""

    def __init__(self, fail_in_training: bool = False):
        super().__init__()
        self.fail_in_training = fail_in_training
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(16, 1000))

    def forward(self, x):
        if self.fail_in_training and self.training:
            raise RuntimeError("intentional failure for the test")
        return self.classifier(self.features(x))


@pytest.fixture
def tiny_models(monkeypatch, tmp_path):
    """Two registered tiny networks: `tiny_cnn` (with a local 'pretrained' weights file) and
    `broken_cnn`, whose training step always raises."""
    pre = Preprocessing(32, IMAGENET_MEAN, IMAGENET_STD)
    for name, fail in (("tiny_cnn", False), ("broken_cnn", True)):
        monkeypatch.setitem(registry._REGISTRY, name, registry.ModelSpec(
            name, lambda fail=fail: (TinyCNN(fail), 16), pre, description="test network"))
    torch.manual_seed(0)
    weights = tmp_path / "tiny_cnn.pth"
    torch.save(TinyCNN().state_dict(), weights)
    return weights


def _rows(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def test_compare_writes_tables_and_figures_records_a_crash_and_skips_finished_runs(tmp_path, tiny_models, monkeypatch):
    data = make_stripes_dataset(tmp_path / "data", per_class=15, splits=True)
    out = tmp_path / "cmp"
    argv = ["compare", str(data), "--models", "roomnet,tiny_cnn,broken_cnn", "--modes", "features,scratch",
            "--weights", f"tiny_cnn={tiny_models}", "--epochs", "2", "--image-size", "64", "--batch-size", "6",
            "--workers", "0", "--speed-seconds", "0.1", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    calls = []
    real_fit = compare_module.fit
    monkeypatch.setattr(compare_module, "fit", lambda col, run_dir, config, **kw: (
        calls.append((config.model, config.mode)), real_fit(col, run_dir, config, **kw))[1])

    assert main(argv) == 1  # a run failed; the others finished
    assert calls == [("tiny_cnn", "features"), ("roomnet", "scratch"), ("tiny_cnn", "scratch"),
                     ("broken_cnn", "scratch")]

    rows = {(r["model"], r["mode"]): r for r in _rows(out / "summary.csv")}
    assert len(rows) == 6
    assert rows[("roomnet", "features")]["status"] == "unavailable"
    assert "from scratch only" in rows[("roomnet", "features")]["stopped_by"]
    assert rows[("broken_cnn", "features")]["status"] == "unavailable"
    broken = rows[("broken_cnn", "scratch")]
    assert broken["status"] == "failed" and "intentional failure for the test" in broken["stopped_by"]
    assert "RuntimeError" in (out / "runs" / "broken_cnn-scratch" / "error.txt").read_text()
    finished = [rows[k] for k in (("tiny_cnn", "features"), ("roomnet", "scratch"), ("tiny_cnn", "scratch"))]
    for r in finished:
        assert r["status"] == "ok"
        for col in ("parameters", "onnx_bytes", "train_seconds", "prepare_seconds", "epochs_run", "best_val_accuracy", "best_epoch",
                    "test_accuracy", "test_top2", "macro_f1", "photos_per_second", "stopped_by"):
            assert r[col] != "", (r["model"], r["mode"], col)
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0 and float(r["photos_per_second"]) > 0
    # features mode trains only the head on a frozen backbone: same network size as scratch
    assert rows[("tiny_cnn", "features")]["parameters"] == rows[("tiny_cnn", "scratch")]["parameters"] == str(
        sum(p.numel() for p in TinyCNN().features.parameters()) + 16 * 2 + 2)

    # per-class accuracy is the share of each class called right: weighted by the photos of each
    # class it gives back the overall accuracy, on test as on the metrics.json of the run
    per_class = _rows(out / "per_class.csv")
    for r in finished:
        mine = [p for p in per_class if (p["model"], p["mode"]) == (r["model"], r["mode"])]
        weighted = sum(float(p["test_accuracy"]) * int(p["test_n"]) for p in mine) / sum(int(p["test_n"]) for p in mine)
        assert weighted == pytest.approx(float(r["test_accuracy"]))
        run_metrics = json.loads((out / "runs" / f"{r['model']}-{r['mode']}" / "metrics.json").read_text())
        assert {p["class"]: float(p["test_accuracy"]) for p in mine} == pytest.approx(
            {c: m["recall"] for c, m in run_metrics["per_class"].items()})
    # --weights is for the pretrained modes only: the scratch run starts from random weights
    key = json.loads((out / "runs" / "tiny_cnn-scratch" / "result.json").read_text())["key"]
    assert key["config"]["weights"] is None and key["config"]["mode"] == "scratch"
    assert {(r["model"], r["mode"]) for r in per_class} == {(r["model"], r["mode"]) for r in finished}
    assert {r["class"] for r in per_class} == {"horizontal", "vertical"}
    for r in per_class:
        assert 0.0 <= float(r["train_accuracy"]) <= 1.0 and 0.0 <= float(r["test_accuracy"]) <= 1.0
        assert int(r["train_n"]) == 9 and int(r["test_n"]) == 3

    for name in ("curves-features.png", "curves-scratch.png", "accuracy_vs_speed.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 300
    md = (out / "summary.md").read_text()
    assert "| tiny_cnn | features |" in md and "### roomnet (scratch)" in md and "| horizontal |" in md
    html = (out / "report.html").read_text()
    assert "unavailable: no pretrained weights exist for roomnet" in html and "accuracy_vs_speed.png" in html
    summary = json.loads((out / "summary.json").read_text())
    histories = {(r["model"], r["mode"]): r.get("history") for r in summary["runs"]}
    assert len(histories[("roomnet", "scratch")]) == 2
    # finished runs keep their bundle, not their resumable checkpoints
    run = out / "runs" / "roomnet-scratch"
    assert (run / "model.estatelens" / "model.onnx").is_file() and not (run / "checkpoint.pt").exists()

    # A rerun skips the finished runs, retries the failed one and rewrites the same table.
    results_before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*-*/result.json")}
    calls.clear()
    assert main(argv) == 1
    assert calls == [("broken_cnn", "scratch")]
    for run in ("tiny_cnn-features", "roomnet-scratch", "tiny_cnn-scratch"):
        p = out / "runs" / run / "result.json"
        assert p.stat().st_mtime_ns == results_before[p], run
    assert {(r["model"], r["mode"]): r["test_accuracy"] for r in _rows(out / "summary.csv")} == \
        {k: r["test_accuracy"] for k, r in rows.items()}

    # Another budget is another run: nothing is skipped then.
    calls.clear()
    main(argv[:argv.index("--epochs") + 1] + ["1"] + argv[argv.index("--epochs") + 2:])
    assert len(calls) == 4


def test_unknown_model_or_mode_stops_before_any_training(tmp_path, stripes_dataset):
    assert main(["compare", str(stripes_dataset), "--models", "roomnet,no_such_net", "--out", str(tmp_path / "c")]) == 2
    assert main(["compare", str(stripes_dataset), "--models", "roomnet", "--modes", "scratch,fast",
                 "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c" / "runs").exists() or not any((tmp_path / "c" / "runs").iterdir())


def test_weights_with_scratch_mode_are_refused():
    from estatelens.training.config import TrainConfig

    with pytest.raises(ValueError, match="pretrained modes"):
        TrainConfig(model="resnet18", mode="scratch", weights="r18.pth")


def test_missing_weights_file_is_a_reason_not_a_crash(tmp_path):
    reason = compare_module.unavailable_reason("resnet18", "finetune", str(tmp_path / "nope.pth"))
    assert "nope.pth" in reason and "not found" in reason
    assert compare_module.unavailable_reason("resnet18", "scratch", None) is None
    assert "trains from scratch only" in compare_module.unavailable_reason("roomnet", "features", None)


def test_per_class_sample_caps_every_class_and_keeps_order():
    samples = [Sample(f"{c}{i}.jpg", c, "train") for c in "ab" for i in range(10)] + [Sample("c0.jpg", "c", "train")]
    picked = compare_module.per_class_sample(samples, 3, seed=1)
    assert [s.label for s in picked].count("a") == 3 and [s.label for s in picked].count("c") == 1
    assert picked == [s for s in samples if s in picked]
    assert compare_module.per_class_sample(samples, 3, seed=1) == picked
    assert compare_module.per_class_sample(samples, 0) == samples


def test_a_run_that_hits_its_budget_is_marked_and_a_late_failure_is_retried_without_retraining(
        tmp_path, monkeypatch):
    from estatelens.training import engine

    data = make_stripes_dataset(tmp_path / "data", per_class=15, splits=True)
    out = tmp_path / "cmp"
    argv = ["compare", str(data), "--models", "roomnet", "--modes", "scratch", "--epochs", "3",
            "--max-minutes", "0.0001", "--image-size", "64", "--batch-size", "6", "--workers", "0",
            "--speed-seconds", "0.1", "--out", str(out)]
    epochs = []
    real_epoch = engine.train_one_epoch
    monkeypatch.setattr(engine, "train_one_epoch", lambda *a, **kw: (epochs.append(1), real_epoch(*a, **kw))[1])
    real_evaluate = compare_module.evaluate_bundle
    failures = iter([RuntimeError("scoring broke")])

    def evaluate_once_broken(*a, **kw):
        for e in failures:
            raise e
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(compare_module, "evaluate_bundle", evaluate_once_broken)
    assert main(argv) == 1
    assert epochs == [1]  # the budget stopped it after the first epoch
    assert _rows(out / "summary.csv")[0]["status"] == "failed"
    assert (out / "runs" / "roomnet-scratch" / "checkpoint.pt").is_file()

    # the retry scores the trained network; the budget is spent, so nothing trains again
    assert main(argv) == 0
    assert epochs == [1]
    row = _rows(out / "summary.csv")[0]
    assert row["status"] == "ok" and row["stopped_by"] == "TIME BUDGET" and row["epochs_run"] == "1"
    assert "TIME BUDGET" in (out / "summary.md").read_text()
