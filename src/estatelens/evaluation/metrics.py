"""Classification metrics for a labelled evaluation set, as plain JSON-ready numbers.

Everything returned here is python `int`/`float`/`list`/`dict`/`None`, so the result can go
straight into `json.dumps` (metrics.json, the HTML report, experiment logs) without numpy types.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, top_k_accuracy_score

# Floor for the probability of the true class in the log loss: a confidently wrong softmax can
# round to exactly 0 in float32, which would make the mean infinite and unreportable.
LOG_LOSS_EPS = 1e-12


def _check_inputs(y_true, probs, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels as int64 (N,), probs as float64 (N, C)) or raise ValueError saying what is wrong."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D (N,), got shape {y.shape}")
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} rows but y_true has {y.shape[0]} labels")
    if n_classes is not None and p.shape[1] != n_classes:
        raise ValueError(f"probs has {p.shape[1]} columns but {n_classes} class names were given")
    if p.shape[1] < 1:
        raise ValueError("probs must have at least one column (class)")
    if y.size:
        if y.dtype.kind == "f":
            # Labels that went through a float array (e.g. pandas) are fine if they are whole numbers.
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ValueError("y_true must hold integer class indices")
        elif y.dtype.kind not in "iub":
            raise ValueError(f"y_true must hold integer class indices, got dtype {y.dtype}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= p.shape[1]:
            bad = lo if lo < 0 else hi
            raise ValueError(f"y_true contains label {bad} but probs has only {p.shape[1]} classes (0..{p.shape[1] - 1})")
        if not np.all(np.isfinite(p)):
            raise ValueError("probs contains NaN or infinite values")
    return y.astype(np.int64), p


def expected_calibration_error(y_true, probs, n_bins: int = 15) -> tuple[float | None, dict]:
    """Expected calibration error over the top-1 confidence, with `n_bins` equal-width bins.

    ECE = sum_b (count_b / N) * |accuracy_b - mean_confidence_b| (Guo et al., 2017).
    Bins are (lo, hi] except the first, which also takes confidence 0.
    Returns (ece, reliability) where reliability holds per-bin "bin_edges", "confidence",
    "accuracy" (None for empty bins) and "count"; ece is None when there are no samples.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    y, p = _check_inputs(y_true, probs)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf = p.max(axis=1) if len(y) else np.zeros(0)
    correct = (p.argmax(axis=1) == y) if len(y) else np.zeros(0, dtype=bool)
    # Inner edges only, side="left": a confidence equal to an edge belongs to the lower bin,
    # and anything outside [0, 1] (unnormalised scores) clamps to the end bins instead of failing.
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    counts = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins)

    mean_conf: list[float | None] = []
    mean_acc: list[float | None] = []
    ece = 0.0
    for c, cs, a in zip(counts, conf_sum, acc_sum):
        if c == 0:
            mean_conf.append(None)
            mean_acc.append(None)
            continue
        mean_conf.append(float(cs / c))
        mean_acc.append(float(a / c))
        ece += (c / len(y)) * abs(a / c - cs / c)
    reliability = {
        "bin_edges": [float(e) for e in edges],
        "confidence": mean_conf,
        "accuracy": mean_acc,
        "count": [int(c) for c in counts],
    }
    return (float(ece) if len(y) else None), reliability


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], n_bins: int = 15) -> dict:
    """Accuracy, top-2, macro F1, per-class P/R/F1, confusion matrix, calibration and log loss.

    `y_true`: int class indices (N,); `probs`: softmax probabilities (N, C); `class_names`: C names.
    With N == 0 the counts are zero and every rate is None, so an empty split still reports.
    """
    names = [str(c) for c in class_names]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class names must be unique; repeated: {dup}")
    y, p = _check_inputs(y_true, probs, n_classes=len(names))
    n, n_classes = len(y), len(names)
    labels = np.arange(n_classes)
    pred = p.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)

    # Per-class numbers are listed for every class, including ones absent from this split,
    # so tables line up across runs; zero_division=0 keeps them numbers rather than warnings.
    if n:
        prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        with warnings.catch_warnings():
            # sklearn warns about any 1x1 matrix, even when labels= already makes it the right shape.
            warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
            cm = confusion_matrix(y, pred, labels=labels)
    else:
        prec = rec = f1 = np.zeros(n_classes)
        support = np.zeros(n_classes, dtype=np.int64)
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    per_class = {
        name: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(names)
    }
    ece, reliability = expected_calibration_error(y, p, n_bins=n_bins)

    if n == 0:
        accuracy = top2 = macro_f1 = log_loss = None
    else:
        accuracy = float(np.mean(pred == y))
        if n_classes <= 2:
            # The true class is always among the top 2 of at most 2 classes; sklearn would warn
            # here and wants 1-D scores for the binary case, so answer directly.
            top2 = 1.0
        else:
            # labels= keeps sklearn from inferring the classes (or "binary") from y_true alone.
            top2 = float(top_k_accuracy_score(y, p, k=2, labels=labels))
        # Macro F1 over the classes the data holds: scoring a 7-class model on a 5-class test set
        # must not average in two F1s of 0 for classes with no photos. A wrong answer naming an
        # absent class still counts, as a miss in the recall of the photo's true class.
        present = np.unique(y)
        macro_f1 = float(f1_score(y, pred, labels=present, average="macro", zero_division=0))
        log_loss = float(-np.mean(np.log(np.clip(p[np.arange(n), y], LOG_LOSS_EPS, 1.0))))

    return {
        "n": int(n),
        "accuracy": accuracy,
        "top2_accuracy": top2,
        "macro_f1": macro_f1,
        "per_class": per_class,
        "confusion": {"labels": names, "matrix": cm.astype(int).tolist()},
        "ece": ece,
        "reliability": reliability,
        "log_loss": log_loss,
    }


def _wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95 % Wilson interval of a proportion k/n: honest error bars on precision and recall when
    they rest on a dozen positives."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(centre - half), 4), round(float(centre + half), 4)]


def attribute_metrics(y_true, probs, threshold: float | None) -> dict:
    """A yes/no attribute: average precision and ROC AUC (threshold-free), and precision, recall,
    F1 and counts at `threshold` (None: no operating point, nothing said yes), with 95 % intervals;
    `y_true` 0/1, `probs` P(yes)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=np.float64)
    pred = p >= threshold if threshold is not None else np.zeros(len(p), dtype=bool)
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    both = 0 < y.sum() < len(y)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return {
        "n": int(len(y)), "positives": int(y.sum()), "negatives": int(len(y) - y.sum()),
        "average_precision": round(float(average_precision_score(y, p)), 4) if y.sum() else None,
        "roc_auc": round(float(roc_auc_score(y, p)), 4) if both else None,
        "threshold": None if threshold is None else round(float(threshold), 4),
        "precision": None if precision is None else round(precision, 4),
        "precision_95ci": _wilson(tp, tp + fp),
        "recall": None if recall is None else round(recall, 4),
        "recall_95ci": _wilson(tp, tp + fn),
        "f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp else 0.0,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "brier": round(float(brier_score_loss(y, p)), 4) if len(y) else None,
    }
