"""Train an attribute head (fireplace, balcony, ...) on a bundle's frozen embedding.

Labels are scarce (71 balconies in the shared data), so the head is the smallest thing that can
learn from them: a logistic regression on the embedding the room-type network already computes,
fitted on cached embeddings of each training photo and of a few augmented views of it. The room
type network and head are never touched.

Calibration and the operating threshold come from validation predictions: every train+val photo
is predicted by a head fitted without it (5-fold cross-validation, grouped by file content, so
neither its augmented views nor a byte-identical copy of it leak), those out-of-fold scores are
Platt-scaled, and the threshold is the lowest one whose out-of-fold precision reaches the target
with at least MIN_SUPPORT true positives (most recall at that precision). A head whose
out-of-fold ranking is not clearly better than chance is refused. The final head is fitted on all
train+val photos and carries that scaling and threshold. The test split (less any copy of a
training photo) is scored once, at the end.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..attributes import EMBEDDING_OUTPUT, YES, AttributeHead, graph_fingerprint
from ..bundle import ModelBundle, estatelens_home
from ..data.attribute_labels import AttributeLabels
from ..data.images import PhotoError, read_photo
from ..evaluation.metrics import attribute_metrics
from ..inference import load_photo
from ..data.preprocess import decode_side

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
CV_FOLDS = 5
MIN_SUPPORT = 5  # true positives above a threshold before its precision counts as reached
MIN_Z = 3.0  # how far above chance the cross-validated ROC AUC must be (one-sided z) for a head to ship
_RNG_LOCK = threading.Lock()  # torch's RNG is process-wide; decoding threads take turns drawing views


@dataclass
class AttributeFit:
    head: AttributeHead
    report: dict
    test_labels: np.ndarray  # 0/1 per test photo
    test_probabilities: np.ndarray


# ---------------------------------------------------------------- embeddings, cached per photo

class EmbeddingCache:
    """Embeddings of photo views under $ESTATELENS_HOME/embeddings/<graph>.pkl, keyed by the photo's
    absolute path, size and modification time, the view index and the seed: a second attribute
    on the same photos (or a rerun) costs no network pass."""

    def __init__(self, bundle: ModelBundle, output: str = EMBEDDING_OUTPUT):
        suffix = "" if output == EMBEDDING_OUTPUT else f"-{output}"
        self.path = estatelens_home() / "embeddings" / f"{graph_fingerprint(bundle.onnx_path)}{suffix}.pkl"
        self.data: dict[str, np.ndarray] = {}
        if self.path.is_file():
            try:
                with open(self.path, "rb") as f:
                    self.data = pickle.load(f)
            except (pickle.UnpicklingError, EOFError, OSError):
                self.data = {}  # a damaged cache is only a slower run

    @staticmethod
    def key(path: str, view: int, seed: int) -> str:
        st = os.stat(path)
        from ..data.transforms import AUGMENTATION_VERSION

        augmented = f"{seed}|a{AUGMENTATION_VERSION}" if view else "0"
        return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{view}|{augmented}"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(self.data, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.path)


def _views(path: str, bundle: ModelBundle, views: int, seed: int) -> tuple[list[np.ndarray] | None, str]:
    """The tagger's own input for the photo, then `views` augmented crops of it (train preset)."""
    import torch

    from ..data.transforms import train_preset

    x, _, status, _ = load_photo(path, bundle.preprocessing, decode_side(bundle.preprocessing))
    if x is None:
        return None, status
    out = [x]
    if views:
        try:
            im, _ = read_photo(path, 2 * bundle.preprocessing.size)
        except PhotoError as e:
            return None, e.reason
        preset = train_preset(bundle.preprocessing)
        # Seeded per photo, so a view is the same whichever run or thread computes it.
        photo_seed = int.from_bytes(hashlib.sha1(f"{seed}:{os.path.abspath(path)}".encode()).digest()[:4], "big")
        with _RNG_LOCK:
            state = torch.get_rng_state()
            torch.manual_seed(photo_seed)
            try:
                out += [preset(im).numpy() for _ in range(views)]
            finally:
                torch.set_rng_state(state)
    return out, "ok"


def embed_photos(bundle: ModelBundle, paths: Sequence[str], *, views: int = 4, seed: int = 0,
                 batch_size: int = 16, progress: bool = True,
                 output: str = EMBEDDING_OUTPUT) -> tuple[np.ndarray, list[str]]:
    """(embeddings (N, 1 + views, D) float32, NaN where a photo failed; status per photo); `output`:
    the graph output to read (the embedding, or an attribute tail's)."""
    cache = EmbeddingCache(bundle, output)
    rows: list[np.ndarray | None] = [None] * len(paths)
    status = ["ok"] * len(paths)
    todo = []
    for i, p in enumerate(paths):
        try:
            got = [cache.data.get(EmbeddingCache.key(p, v, seed)) for v in range(views + 1)]
        except OSError:
            status[i] = "file not found"
            continue
        if all(g is not None for g in got):
            rows[i] = np.stack(got).astype(np.float32)
        else:
            todo.append(i)
    with ThreadPoolExecutor(max_workers=2) as pool, \
            tqdm(total=len(todo), desc="embedding", unit="photo", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            loaded = list(pool.map(lambda i: _views(paths[i], bundle, views, seed), chunk))
            batch, owners = [], []
            for i, (arrays, st) in zip(chunk, loaded):
                if arrays is None:
                    status[i] = st
                    continue
                batch += arrays
                owners.append(i)
            if batch:
                _, got = bundle.run_outputs(np.stack(batch), [output])
                emb = got.get(output)
                if emb is None:
                    raise ValueError(f"{bundle.onnx_path}: the graph has no {output} output"
                                     + ("; see attributes.add_embedding_output" if output == EMBEDDING_OUTPUT else ""))
                # Stored as float16, and used as stored, so that a rerun from the cache fits the same head.
                emb = emb.reshape(len(owners), views + 1, -1).astype(np.float16)
                for j, i in enumerate(owners):
                    rows[i] = emb[j].astype(np.float32)
                    for v in range(views + 1):
                        cache.data[EmbeddingCache.key(paths[i], v, seed)] = emb[j, v]
            bar.update(len(chunk))
    if todo:
        cache.save()
    width = next((r.shape[-1] for r in rows if r is not None), 0)
    out = np.full((len(paths), views + 1, width), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            out[i] = r
    return out, status


# ---------------------------------------------------------------- fitting, calibration, threshold

def _logistic(C: float, balance: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(
        C=C, class_weight="balanced" if balance == "full" else None, max_iter=3000, random_state=seed))


def _fit_views(model, emb: np.ndarray, y: np.ndarray):
    """Fit on every view of every photo (the tagger's view and the augmented ones)."""
    n, v, d = emb.shape
    return model.fit(emb.reshape(n * v, d), np.repeat(y, v))


def _out_of_fold(emb: np.ndarray, y: np.ndarray, groups: Sequence[str], C: float, balance: str,
                 seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    folds = min(CV_FOLDS, int(y.sum()), int((1 - y).sum()))
    if folds < 2:
        raise ValueError("need at least 2 photos labelled yes and 2 labelled no in train+val "
                         f"to validate a head (got {int(y.sum())} yes, {int((1 - y).sum())} no)")
    z = np.zeros(len(y))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for tr, te in cv.split(emb[:, 0], y, groups):
        model = _fit_views(_logistic(C, balance, seed), emb[tr], y[tr])
        z[te] = model.decision_function(emb[te, 0])
    return z


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """p = sigmoid(a z + b), fitted to the out-of-fold scores: undoes the class weighting's and the
    regularisation's distortion of the probabilities."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, None], y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def choose_threshold(y: np.ndarray, p: np.ndarray, target_precision: float,
                     min_support: int = MIN_SUPPORT) -> float | None:
    """The lowest threshold whose precision on (y, p) reaches the target with at least
    `min_support` true positives above it, which gives the most recall at that precision; None
    when there is none (one or two lucky photos at the top prove nothing, and neither do fewer
    positives than `min_support` in all)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    support = np.rint(recall * int(np.sum(y)))  # true positives at or above each threshold
    ok = np.flatnonzero((precision >= target_precision) & (support >= min_support))
    return float(thresholds[ok[0]]) if ok.size else None


def better_than_chance(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(ROC AUC of the scores, its one-sided z against 0.5) with the Hanley-McNeil standard error
    under the null hypothesis: a head must rank photos clearly better than chance to ship."""
    from sklearn.metrics import roc_auc_score

    n1, n0 = int(np.sum(y)), int(len(y) - np.sum(y))
    auc = float(roc_auc_score(y, scores))
    se = np.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))
    return auc, (auc - 0.5) / se


def content_groups(paths: Sequence[str], given: Sequence[str | None] = ()) -> list[str]:
    """A validation group per photo: photos with the same file content (a listing photo reused by
    another listing) or the same given group (a listing id) end up in one group, so that copies
    never straddle a fold. Groups are merged transitively (union-find)."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    keys = []
    for i, p in enumerate(paths):
        h = hashlib.sha1()
        try:
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            key = "sha1:" + h.hexdigest()
        except OSError:
            key = "path:" + os.path.abspath(p)
        group = given[i] if i < len(given) else None
        if group:
            parent[find(key)] = find("group:" + group)
        keys.append(key)
    return [find(k) for k in keys]


def partition(samples: Sequence, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(train+val indices, test indices, test paths left out as byte copies of train+val photos,
    validation group per sample) over the samples that `keep` marks (default all)."""
    keep = np.ones(len(samples), dtype=bool) if keep is None else keep
    content = content_groups([s.path for s in samples], [s.group for s in samples])
    split = np.array([s.split for s in samples])
    pool = np.flatnonzero(keep & (split != "test"))
    in_pool = {content[i] for i in pool}
    copy = np.array([c in in_pool for c in content], dtype=bool)
    leaked = [samples[i].path for i in np.flatnonzero(keep & (split == "test") & copy)]
    test = np.flatnonzero(keep & (split == "test") & ~copy)
    return pool, test, leaked, content


def train_attribute(bundle: ModelBundle, labels: AttributeLabels, *, target_precision: float = 0.9,
                    views: int = 4, class_balance: str = "full", seed: int = 0, progress: bool = True,
                    log: Callable[[str], None] = print, embedding: str = EMBEDDING_OUTPUT) -> AttributeFit:
    if not 0 < target_precision < 1:
        raise ValueError(f"target precision must be between 0 and 1, got {target_precision}")
    if labels.name in bundle.classes:
        raise ValueError(f"attribute name {labels.name!r} is one of the model's room types; choose another name")
    if class_balance not in ("none", "full"):
        raise ValueError(f"class_balance must be none or full, not {class_balance!r}")
    t0 = time.time()
    samples = labels.samples
    emb, status = embed_photos(bundle, [s.path for s in samples], views=views, seed=seed, progress=progress,
                               output=embedding)
    failed = [{"path": s.path, "reason": st} for s, st in zip(samples, status) if st != "ok"]
    for f in failed[:5]:
        log(f"  skipped {f['path']}: {f['reason']}")
    keep = np.array([st == "ok" for st in status])
    y_all = np.array([s.label == YES for s in samples], dtype=int)
    pool, test, leaked, content = partition(samples, keep)
    groups = [content[i] for i in pool]
    y_pool = y_all[pool]
    log(f"{labels.name}: {int(y_pool.sum())} yes / {int((1 - y_pool).sum())} no for training and validation, "
        f"{int(y_all[test].sum())} yes / {int((1 - y_all[test]).sum())} no held out for test, "
        f"{len(labels.unsure)} unsure left out, {len(failed)} unreadable"
        + (f", {len(leaked)} test photos left out as copies of training photos" if leaked else ""))

    # A network fine-tuned with this attribute (train --attribute) has learnt the labels of some of
    # these photos: out-of-fold scores on them are optimistic. Calibration, the threshold and the
    # choice of C then come from the others only ("unseen").
    learnt = set(((bundle.info.get("multitask") or {}).get("labelled") or {}).get(labels.name, []))
    if learnt:
        from .multitask import photo_key

        unseen = np.array([photo_key(samples[i].path) not in learnt for i in pool])
        log(f"  the network learnt {labels.name} from {int((~unseen).sum())} of these photos (multi-task): "
            f"calibration and threshold come from the other {int(unseen.sum())} "
            f"({int(y_pool[unseen].sum())} yes)")
    else:
        unseen = np.ones(len(pool), dtype=bool)
    y_cal = y_pool[unseen]
    cv_scores = {}
    best = None
    for C in C_GRID:
        z = _out_of_fold(emb[pool], y_pool, groups, C, class_balance, seed)
        cv_scores[C] = attribute_metrics(y_cal, 1 / (1 + np.exp(-z[unseen])), 0.5)["average_precision"]
        if best is None or cv_scores[C] > cv_scores[best[0]]:
            best = (C, z)
    C, z = best
    a, b = _platt(z[unseen], y_cal)
    auc, zval = better_than_chance(y_cal, z[unseen])
    _, best_z = better_than_chance(y_cal, y_cal)  # a perfect ranking of these photos
    if best_z < MIN_Z:
        raise ValueError(f"{labels.name}: {int(y_pool.sum())} yes and {int((1 - y_pool).sum())} no photos for "
                         f"training and validation are too few to show that a head does better than chance, "
                         f"even if it ranked them all right; label more photos")
    if a <= 0 or zval < MIN_Z:
        raise ValueError(f"{labels.name}: on cross-validation the head did not rank photos clearly better "
                         f"than chance (ROC AUC {auc:.3f}, z {zval:.1f} < {MIN_Z}; average precision "
                         f"{cv_scores[C]:.3f} against a base rate of {y_pool.mean():.3f}, {int(y_pool.sum())} yes "
                         f"of {len(y_pool)}); more labelled photos, or another model's embedding, are needed")
    p_oof = 1 / (1 + np.exp(-(a * z[unseen] + b)))
    threshold = choose_threshold(y_cal, p_oof, target_precision)
    met = threshold is not None
    if not met:
        log(f"  warning: no threshold reaches precision {target_precision} on validation with at least "
            f"{MIN_SUPPORT} true positives, so the head ships without one: `tag` writes "
            f"{labels.name}_probability and leaves {labels.name} empty. Label more photos, or state a lower "
            f"--precision")

    final = _fit_views(_logistic(C, class_balance, seed), emb[pool], y_pool)
    scaler, lr = final[0], final[1]
    w = lr.coef_[0] / scaler.scale_
    w0 = float(lr.intercept_[0] - np.dot(w, scaler.mean_))
    head = AttributeHead(labels.name, a * w, a * w0 + b, threshold, target_precision,
                         graph_fingerprint(bundle.onnx_path), embedding=embedding)

    p_test = head.probability(emb[test, 0]) if len(test) else np.zeros(0)
    report = {
        "attribute": labels.name, "model": str(bundle.path), "embedding": embedding, "labels": labels.counts(),
        "unreadable": failed, "views_per_photo": views, "class_balance": class_balance, "seed": seed,
        "test_copies_of_training_photos_left_out": leaked,
        "C": C, "cv_average_precision": {str(k): round(v, 4) for k, v in cv_scores.items()},
        "cv_roc_auc": round(auc, 4), "cv_auc_z": round(float(zval), 2),
        "platt": [a, b], "threshold": threshold, "target_precision": target_precision,
        "validation": {**attribute_metrics(y_cal, p_oof, threshold), "target_met": met,
                       "min_support": MIN_SUPPORT,
                       "how": f"{CV_FOLDS}-fold out-of-fold predictions on train+val"
                              + (f", scored on the {int(unseen.sum())} photos whose labels the network did not "
                                 f"learn from (multi-task)" if learnt else "")},
        "test": _test_report(head, p_test, y_all[test], [samples[i].path for i in test], labels),
        "seconds": round(time.time() - t0, 1),
    }
    head.info = {"trained": {k: report[k] for k in ("labels", "views_per_photo", "class_balance", "C", "platt")},
                 "validation": report["validation"], "test": report["test"]}
    return AttributeFit(head, report, y_all[test], p_test)


def _test_report(head: AttributeHead, p: np.ndarray, y: np.ndarray, paths: list[str],
                 labels: AttributeLabels) -> dict:
    if len(y) == 0:
        return {"n": 0}
    out = attribute_metrics(y, p, head.threshold)
    # Per source (first folder under the labels' root), e.g. rooms-web, rooms-places, houses.
    # Absolute paths: label sources may name photos one relative, one absolute (../shared/data
    # beside data/labels/), and commonpath refuses a mix.
    roots = [Path(os.path.abspath(s.path)) for s in labels.samples]
    common = Path(os.path.commonpath([str(r.parent) for r in roots])) if roots else Path(".")
    rel = [os.path.relpath(os.path.abspath(q), common) for q in paths]
    source = np.array([Path(r).parts[0] if r.count(os.sep) else "." for r in rel])
    if len(set(source)) > 1:
        out["by_source"] = {s: attribute_metrics(y[source == s], p[source == s], head.threshold)
                            for s in sorted(set(source))}
    return out
