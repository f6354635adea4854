import json

import numpy as np
import pytest
from PIL import Image

from estatelens.evaluation.metrics import classification_metrics, expected_calibration_error
from estatelens.evaluation.report import write_report

NAMES = ["kitchen", "bathroom", "bedroom"]

# Worked by hand:
#   row  true  probs            pred  top-2     conf
#   0    0     .7 .2 .1         0     {0,1} ok  .7
#   1    1     .5 .4 .1         0     {0,1} ok  .5
#   2    2     .1 .3 .6         2     {2,1} ok  .6
#   3    2     .2 .5 .3         1     {1,2} ok  .5
#   4    1     .6 .1 .3         0     {0,2} no  .6
Y = np.array([0, 1, 2, 2, 1])
P = np.array([[.7, .2, .1], [.5, .4, .1], [.1, .3, .6], [.2, .5, .3], [.6, .1, .3]])


def test_hand_computed_three_class_example():
    m = classification_metrics(Y, P, NAMES)
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["top2_accuracy"] == pytest.approx(4 / 5)
    assert m["confusion"] == {"labels": NAMES, "matrix": [[1, 0, 0], [2, 0, 0], [0, 1, 1]]}
    # kitchen: 1 TP, 2 FP, 0 FN; bathroom: 0 TP; bedroom: 1 TP, 0 FP, 1 FN
    assert m["per_class"]["kitchen"] == pytest.approx({"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "support": 1})
    assert m["per_class"]["bathroom"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["bedroom"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1"] == pytest.approx((0.5 + 0 + 2 / 3) / 3)
    expected_ll = -np.mean(np.log([.7, .4, .6, .3, .1]))
    assert m["log_loss"] == pytest.approx(expected_ll)
    # Bins (15 equal): conf .5 (2 wrong), .6 (1 right, 1 wrong), .7 (1 right)
    assert m["ece"] == pytest.approx(2 / 5 * .5 + 2 / 5 * abs(.5 - .6) + 1 / 5 * .3)
    assert sum(m["reliability"]["count"]) == 5
    assert len(m["reliability"]["bin_edges"]) == 16
    json.dumps(m, allow_nan=False)  # plain python types only


def test_per_class_lists_absent_classes_and_all_values_are_plain_python():
    m = classification_metrics(np.array([0, 0]), np.array([[.9, .05, .05], [.8, .1, .1]]), NAMES)
    assert m["per_class"]["bedroom"]["support"] == 0
    assert m["top2_accuracy"] == 1.0  # only one label present must not confuse sklearn
    assert m["macro_f1"] == 1.0  # classes absent from the data don't dilute it

    # A 3-class model scored on photos of 2 classes: a wrong answer naming the absent class lowers
    # the recall of the true class, and the absent class adds no F1 of 0 to the mean.
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([[.9, .05, .05], [.1, .1, .8], [.1, .8, .1],
                                                                 [.1, .8, .1]]), NAMES)
    assert m["per_class"]["kitchen"]["recall"] == 0.5
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)

    def walk(v):
        assert v is None or type(v) in (int, float, str, list, dict), type(v)
        for x in v.values() if isinstance(v, dict) else v if isinstance(v, list) else ():
            walk(x)

    walk(m)


def test_ece_calibrated_and_overconfident():
    # 10 predictions at confidence 0.8, 8 right: perfectly calibrated.
    y = np.array([0] * 8 + [1] * 2)
    p = np.tile([0.8, 0.2], (10, 1))
    ece, rel = expected_calibration_error(y, p, n_bins=10)
    assert ece == pytest.approx(0.0)
    assert sum(rel["count"]) == 10 and rel["count"].count(0) == 9
    # Same confidence at 0.9 but only half right: overconfident by 0.4.
    y = np.array([0] * 5 + [1] * 5)
    ece, rel = expected_calibration_error(y, np.tile([0.9, 0.1], (10, 1)), n_bins=10)
    assert ece == pytest.approx(0.4)
    i = rel["count"].index(10)
    assert rel["confidence"][i] == pytest.approx(0.9) and rel["accuracy"][i] == pytest.approx(0.5)
    assert all(c is None for j, c in enumerate(rel["confidence"]) if j != i)


def test_binary_and_single_class():
    m = classification_metrics(np.array([0, 1, 1]), np.array([[.6, .4], [.3, .7], [.8, .2]]), ["a", "b"])
    assert m["top2_accuracy"] == 1.0 and m["accuracy"] == pytest.approx(2 / 3)
    m = classification_metrics(np.array([0, 0]), np.ones((2, 1)), ["only"])
    assert m["accuracy"] == 1.0 and m["top2_accuracy"] == 1.0 and m["ece"] == pytest.approx(0.0)


def test_empty_input():
    m = classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 3)), NAMES)
    assert m["n"] == 0
    assert m["accuracy"] is None and m["top2_accuracy"] is None and m["macro_f1"] is None
    assert m["ece"] is None and m["log_loss"] is None
    assert m["confusion"]["matrix"] == [[0] * 3] * 3
    assert m["per_class"]["kitchen"]["support"] == 0
    json.dumps(m, allow_nan=False)


@pytest.mark.parametrize(
    "y, p, names, match",
    [
        (Y, P[:, :2], NAMES, "probs has 2 columns but 3 class names"),
        (Y[:4], P, NAMES, "probs has 5 rows but y_true has 4"),
        (np.array([0, 1, 5, 2, 1]), P, NAMES, "label 5"),
        (Y, P[0], NAMES, "2-D"),
        (Y, P, ["a", "a", "b"], "unique"),
    ],
)
def test_shape_and_label_errors(y, p, names, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, p, names)


def _photo(path, colour):
    Image.new("RGB", (200, 150), colour).save(path)
    return str(path)


def test_write_report(tmp_path):
    paths = [
        _photo(tmp_path / "k.jpg", (200, 50, 50)),
        str(tmp_path / "missing.jpg"),  # wrong and most confident among the unreadable: must be skipped
        _photo(tmp_path / "b.png", (50, 50, 200)),
        _photo(tmp_path / "b2.png", (50, 200, 50)),
        str(tmp_path / "broken.jpg"),
    ]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    history = [
        {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.4},
        {"epoch": 2, "train_loss": 0.7, "train_acc": 0.7, "val_loss": None},
    ]
    m = classification_metrics(Y, P, NAMES)
    out = tmp_path / "report"
    report = write_report(
        out, title="Eval <test>", metrics=m, class_names=NAMES, y_true=Y, probs=P, paths=paths,
        history=history, summary={"model": "lite0", "config": {"lr": 1e-3, "sizes": [224, 240]}},
        skipped=[{"path": "x/y.gif", "reason": "not an image"}],
    )
    assert report == out / "report.html"
    text = report.read_text()
    for name in NAMES:
        assert name in text
    assert "Eval &lt;test&gt;" in text
    assert "x/y.gif" in text and "missing.jpg" in text  # caller's skips and unreadable thumbnails
    assert '{"lr": 0.001, "sizes": [224, 240]}'.replace('"', "&quot;") in text
    for png in ("curves.png", "per_class.png", "confusion.png", "reliability.png", "mistakes.png"):
        assert f'src="{png}"' in text
        with Image.open(out / png) as im:
            im.verify()
    assert json.loads((out / "metrics.json").read_text()) == m


def test_write_report_empty_and_many_classes(tmp_path):
    m = classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 2)), ["a", "b"])
    report = write_report(tmp_path / "empty", title="empty", metrics=m, class_names=["a", "b"],
                          y_true=np.zeros(0, dtype=int), probs=np.zeros((0, 2)), paths=[], history=[])
    assert report.exists()
    assert not (tmp_path / "empty" / "curves.png").exists()
    assert not (tmp_path / "empty" / "mistakes.png").exists()

    # Many classes: must not crash (annotations and tick labels are dropped).
    c = 120
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(c)]
    y = rng.integers(0, c, 200)
    p = rng.dirichlet(np.ones(c), 200)
    write_report(tmp_path / "many", title="many", metrics=classification_metrics(y, p, names), class_names=names)
    with Image.open(tmp_path / "many" / "confusion.png") as im:
        im.verify()
