"""Score a model bundle on labelled photos and write metrics.json and the HTML report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from ..bundle import ModelBundle
from ..data.dataset import Sample
from ..inference import predict_samples
from .metrics import classification_metrics
from .report import write_report


def evaluate_bundle(bundle: ModelBundle, samples: Sequence[Sample], *, skipped: Sequence[dict] = (),
                    report_dir: str | Path | None = None, title: str = "Evaluation",
                    history: Sequence[dict] | None = None, summary: dict | None = None,
                    json_path: str | Path | None = None, workers: int = 2, progress: bool = True,
                    copies: Collection[str] = ()) -> dict:
    """Metrics over `samples` (labels must be among the bundle's classes), with `skipped` files
    listed. Photos that fail to decode now are added to `skipped`, not scored. `copies`: paths
    of samples with a copy among the training photos (PhotoCollection.copies_of_other_splits):
    accuracy and macro F1 without them are added as "without_copies"."""
    unknown = sorted({s.label for s in samples} - set(bundle.classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of the model ({', '.join(bundle.classes)})")
    probs, ok = predict_samples(bundle, samples, workers=workers, progress=progress)
    skipped = list(skipped) + [{"path": s.path, "reason": "failed to decode"} for s, good in zip(samples, ok) if not good]
    kept = [s for s, good in zip(samples, ok) if good]
    y = np.array([bundle.classes.index(s.label) for s in kept], dtype=np.int64)
    probs = probs[ok]
    metrics = classification_metrics(y, probs, bundle.classes)
    fresh = np.array([s.path not in copies for s in kept], dtype=bool)
    if len(fresh) and not fresh.all():
        sub = classification_metrics(y[fresh], probs[fresh], bundle.classes)
        metrics["without_copies"] = {"n": int(fresh.sum()), "copies_left_out": int((~fresh).sum()),
                                     "accuracy": sub["accuracy"], "macro_f1": sub["macro_f1"]}
        if summary is not None:
            summary = {**summary, "without copies of training photos": metrics["without_copies"]}
    metrics["skipped"] = skipped
    metrics["model"] = str(bundle.path)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(metrics, indent=2))
    if report_dir:
        metrics["report"] = str(write_report(
            report_dir, title=title, metrics=metrics, class_names=bundle.classes, y_true=y, probs=probs,
            paths=[s.path for s in kept], history=history, summary=summary, skipped=skipped))
    return metrics
