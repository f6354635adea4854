"""Adapt a bundle to a new market from a few labelled photos, without forgetting the rest.

What changes is the room-type head only: a linear layer on the pooled embedding, refitted on
- the new photos (a few hundred, each with augmented views: portal crops, greyscale, text),
- a rehearsal set the bundle carries (`rehearsal.npz`: embeddings of a class-balanced sample of its
  own training photos), so that every class the new labels do not cover keeps its old boundary,
- pulled towards the old head's weights (an L2 penalty, chosen on validation photos of both kinds).
The network is not touched, so the embedding is the same: every attribute head keeps working, and
the rehearsal set stays valid for the next adaptation. Fine-tuning the network itself would move
the embedding under the attribute heads (they would all need their labels again) and take far more
than minutes on two cores.

Without labels (`unlabelled`), the photos the current head is sure of, in all of their augmented
views at once, become pseudo-labelled training rows (self-training), weighted below real labels.
"""
from __future__ import annotations

import os
import shutil
from collections import Counter
from typing import Callable, Sequence

import numpy as np

from ..attributes import graph_fingerprint
from ..bundle import ModelBundle, bundle_folder, commit_folder, load_bundle, staging_folder, write_json
from ..data.dataset import Sample, _split_stratified
from ..rehearsal import REHEARSAL_FILE, Rehearsal, load_rehearsal, save_rehearsal
from ..room_head import RoomHead, save_room_head
from .attributes import embed_photos

PENALTIES = (1e-4, 1e-3, 1e-2)  # L2 pull towards the old head, per training row
PSEUDO_WEIGHT = 0.5  # a pseudo-labelled row counts half a labelled one


def build_rehearsal(bundle: ModelBundle, samples: Sequence[Sample], per_class: int = 120, views: int = 1,
                    seed: int = 0, progress: bool = True) -> Rehearsal:
    """Embeddings of up to `per_class` photos of each of the bundle's classes (seeded choice),
    each as the tagger sees it and in `views` augmented views."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in bundle.classes:
        of_c = [s for s in samples if s.label == c]
        chosen += [of_c[i] for i in sorted(rng.permutation(len(of_c))[:per_class])]
    emb, status = embed_photos(bundle, [s.path for s in chosen], views=views, seed=seed, progress=progress)
    ok = np.array([st == "ok" for st in status])
    x = emb[ok].reshape(-1, emb.shape[-1])
    y = np.repeat([bundle.classes.index(s.label) for s, good in zip(chosen, ok) if good], views + 1)
    clean = np.tile(np.arange(views + 1) == 0, int(ok.sum()))
    return Rehearsal(x, y, list(bundle.classes), clean)


def old_head(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray, float]:
    """(weight (C, D), bias (C,), temperature) of the head the bundle answers with now."""
    if bundle.room_head is not None:
        h = bundle.room_head
        return h.weight.astype(np.float32), h.bias.astype(np.float32), h.temperature
    state = bundle.weights("to adapt from (the room-type head's weights)")
    keys = sorted(k for k in state if k.startswith("head.") and k.endswith(".weight"))
    if not keys:
        raise ValueError(f"{bundle.path}: weights.pt has no head.*.weight")
    w = state[keys[-1]].float().numpy()
    b = state[keys[-1][:-len("weight")] + "bias"].float().numpy()
    return w, b, float(bundle.info.get("temperature", 1.0))


def _fit(x, y, weights, w0, b0, penalty: float, steps: int = 300):
    import torch
    import torch.nn.functional as F

    x, y, sw = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(weights)
    W0, B0 = torch.from_numpy(w0), torch.from_numpy(b0)
    W, B = W0.clone().requires_grad_(True), B0.clone().requires_grad_(True)
    opt = torch.optim.Adam([W, B], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = (F.cross_entropy(x @ W.T + B, y, reduction="none") * sw).sum() / sw.sum()
        loss = loss + penalty * ((W - W0).pow(2).sum() + (B - B0).pow(2).sum())
        loss.backward()
        opt.step()
    return W.detach().numpy(), B.detach().numpy()


def _accuracy(w, b, x, y) -> float | None:
    return None if len(y) == 0 else float(np.mean((x @ w.T + b).argmax(1) == y))


def adapt_bundle(bundle: ModelBundle, labelled: Sequence[Sample], out: str | os.PathLike, *,
                 unlabelled: Sequence[str] = (), holdout: float = 0.2, views: int = 4, seed: int = 0,
                 min_confidence: float = 0.9, root: str | os.PathLike | None = None,
                 rehearsal: Rehearsal | None = None, progress: bool = True,
                 log: Callable[[str], None] = print) -> dict:
    """Write an adapted copy of `bundle` to `out`; returns the report (also in its bundle.json).

    labelled: photos with their room type (any of the bundle's classes, or new ones); `holdout` of
    them (stratified, seeded) are kept apart to score the old and the new head on.
    unlabelled: photos of the market without labels, for self-training.
    rehearsal: the photos of the bundle's own classes to rehearse on (default: its rehearsal.npz);
    the adapted bundle carries it on, with the new photos added."""
    import torch

    from .calibration import fit_temperature

    out = bundle_folder(out)
    if out.exists():
        raise ValueError(f"{out}: already exists; choose another --out")
    rehearsal = rehearsal or load_rehearsal(bundle.path)
    if rehearsal is None:
        raise ValueError(f"{bundle.path}: carries no {REHEARSAL_FILE}, so adapting would forget the "
                         f"classes the new labels do not cover; give --rehearse DATA (photos of its classes)")
    if not labelled and not unlabelled:
        raise ValueError("nothing to adapt on: give labelled photos, unlabelled photos, or both")
    new_classes = sorted({s.label for s in labelled} - set(bundle.classes))
    classes = list(bundle.classes) + new_classes
    idx = {c: i for i, c in enumerate(classes)}
    w0, b0, t0 = old_head(bundle)
    w0 = np.vstack([w0, np.zeros((len(new_classes), w0.shape[1]), np.float32)])
    b0 = np.concatenate([b0, np.full(len(new_classes), b0.min() - 2.0, np.float32)])  # new: unlikely at first

    fractions = (0.85 * (1 - holdout), 0.15 * (1 - holdout), holdout)
    parts = _split_stratified(list(labelled), fractions, seed, root) if labelled else []
    by = {sp: [s for s in parts if s.split == sp] for sp in ("train", "val", "test")}

    def embed(samples, n_views):
        if not samples:
            return np.zeros((0, n_views + 1, w0.shape[1]), np.float32), np.zeros(0, np.int64), []
        e, status = embed_photos(bundle, [s.path for s in samples], views=n_views, seed=seed, progress=progress)
        ok = np.array([st == "ok" for st in status])
        bad = [(s.path, st) for s, st in zip(samples, status) if st != "ok"]
        return e[ok], np.array([idx[s.label] for s, g in zip(samples, ok) if g], np.int64), bad

    e_tr, y_tr, bad_tr = embed(by["train"], views)
    e_va, y_va, bad_va = embed(by["val"], 0)
    e_te, y_te, bad_te = embed(by["test"], 0)
    for path, why in bad_tr + bad_va + bad_te:
        log(f"left out {path}: {why}")
    x_va, x_te = e_va[:, 0], e_te[:, 0]

    # The rehearsal set: most of it trains, a seeded sixth scores forgetting.
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rehearsal.labels))
    r_val, r_fit = order[: len(order) // 6], order[len(order) // 6:]
    remap = np.array([idx[c] for c in rehearsal.classes])
    xr, yr = rehearsal.embeddings, remap[rehearsal.labels]

    xs = [xr[r_fit], e_tr.reshape(-1, e_tr.shape[-1])]
    ys = [yr[r_fit], np.repeat(y_tr, views + 1)]
    ws = [np.ones(len(r_fit), np.float32), np.ones(len(y_tr) * (views + 1), np.float32)]
    pseudo = {}
    if unlabelled:
        xu, yu, pseudo = _pseudo_labels(bundle, unlabelled, w0, b0, views, seed, min_confidence, progress)
        xs.append(xu)
        ys.append(yu)
        ws.append(np.full(len(yu), PSEUDO_WEIGHT, np.float32))
    x_fit, y_fit, sw = np.vstack(xs).astype(np.float32), np.concatenate(ys), np.concatenate(ws)

    choices = []
    for penalty in PENALTIES:
        w, b = _fit(x_fit, y_fit, sw, w0, b0, penalty)
        new_acc = _accuracy(w, b, x_va, y_va)
        old_acc = _accuracy(w, b, xr[r_val], yr[r_val])
        score = old_acc if new_acc is None else (old_acc + new_acc) / 2
        choices.append((score, penalty, w, b))
        log(f"penalty {penalty:g}: validation {_num(new_acc)} on the new photos, {_num(old_acc)} on rehearsal")
    _, penalty, w, b = max(choices, key=lambda c: (c[0], c[1]))
    cal_x = np.vstack([x_va, xr[r_val]])
    cal_y = np.concatenate([y_va, yr[r_val]])
    temperature = fit_temperature(torch.from_numpy(cal_x @ w.T + b), torch.from_numpy(cal_y))

    old_w = w0[: len(bundle.classes)], b0[: len(bundle.classes)]  # can only name the old classes
    report = {
        "from": str(bundle.path), "classes": classes, "new_classes": new_classes,
        "labelled": {sp: dict(Counter(s.label for s in by[sp])) for sp in ("train", "val", "test")},
        "left_out": [{"path": p, "reason": r} for p, r in bad_tr + bad_va + bad_te],
        "views": views, "penalty": penalty, "temperature": temperature, "pseudo_labels": pseudo,
        "holdout": _scores(old_w, (w, b), x_te, y_te, classes),
        "rehearsal_check": _scores(old_w, (w, b), xr[r_val], yr[r_val], classes),
    }
    _write_adapted(bundle, out, classes, w, b, temperature, report, rehearsal,
                   (e_tr[:, 0], y_tr), remap_old=remap)
    return report


def _pseudo_labels(bundle, paths, w0, b0, views, seed, min_confidence, progress):
    """Rows for every view of each photo whose views all agree on a class at `min_confidence` or
    more (mean probability under the current head)."""
    emb, status = embed_photos(bundle, list(paths), views=views, seed=seed, progress=progress)
    ok = np.array([st == "ok" for st in status])
    e = emb[ok]
    z = e @ w0.T + b0
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    mean = p.mean(1)
    top = mean.argmax(1)
    agree = (p.argmax(-1) == top[:, None]).all(1)
    keep = agree & (mean.max(1) >= min_confidence)
    x = e[keep].reshape(-1, e.shape[-1])
    y = np.repeat(top[keep], views + 1)
    return x, y, {"photos": int(ok.sum()), "pseudo_labelled": int(keep.sum()),
                  "per_class": {bundle.classes[c] if c < len(bundle.classes) else str(c): int(n)
                                for c, n in sorted(Counter(top[keep].tolist()).items())}}


def _scores(old, new, x, y, classes) -> dict:
    if len(y) == 0:
        return {"n": 0}
    (wo, bo), (wn, bn) = old, new
    po, pn = (x @ wo.T + bo).argmax(1), (x @ wn.T + bn).argmax(1)
    per = {}
    for k, c in enumerate(classes):
        m = y == k
        if m.any():
            per[c] = {"n": int(m.sum()), "before": float(np.mean(po[m] == k)), "after": float(np.mean(pn[m] == k))}
    return {"n": int(len(y)), "before": float(np.mean(po == y)), "after": float(np.mean(pn == y)), "per_class": per}


def _write_adapted(bundle, out, classes, w, b, temperature, report, rehearsal, new_rows, remap_old) -> None:
    """The source bundle copied, plus room_head.json; its rehearsal set grows by the new photos'
    clean embeddings, so a second adaptation also remembers this market."""
    out, tmp = staging_folder(out)
    shutil.copytree(bundle.path, tmp, dirs_exist_ok=True)
    (tmp / "room_head.json").unlink(missing_ok=True)
    head = RoomHead(classes, w, b, temperature, graph_fingerprint(tmp / "model.onnx"),
                    {"adapted_from": str(bundle.path)})
    save_room_head(tmp, head)
    x_new, y_new = new_rows
    save_rehearsal(tmp, Rehearsal(np.vstack([rehearsal.embeddings, x_new]),
                                  np.concatenate([remap_old[rehearsal.labels], y_new]), classes,
                                  np.concatenate([rehearsal.clean, np.ones(len(y_new), bool)])))
    adapted = load_bundle(tmp)
    adapted.classes = classes
    adapted.info["adapted"] = report
    write_json(tmp / "bundle.json", adapted._manifest())
    commit_folder(tmp, out)


def _num(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"
