"""A self-contained HTML evaluation report with PNG figures, from `classification_metrics` output.

Figures use `matplotlib.figure.Figure` directly rather than pyplot: no global figure registry
to leak into, no GUI backend needed, and safe to call from a training thread.
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from estatelens.data.images import PhotoError, open_rgb

DPI = 110
# Above these many classes, cell annotations and tick labels become an unreadable smear.
MAX_ANNOTATED_CLASSES = 30
MAX_LABELLED_CLASSES = 60
THUMB_SIZE = (160, 160)

CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: .9em; word-break: break-all; }
.headline { display: flex; flex-wrap: wrap; gap: 1em; }
.headline div { background: #f4f6fa; border-radius: 6px; padding: .6em 1em; min-width: 8em; }
.headline b { display: block; font-size: 1.5em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: .5em 0; }
"""


def save_figure(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    fig.clear()  # drop artists (and thumbnail pixel arrays) now rather than at garbage collection


def _plot_curves(history: Sequence[dict], path: Path) -> None:
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    fig = Figure(figsize=(10, 3.8))
    for ax, key, label in zip(fig.subplots(1, 2), ("loss", "acc"), ("Loss", "Accuracy")):
        for split, style in (("train", "o-"), ("val", "s--")):
            # Validation may be missing for some epochs (or all); plot only the points that exist.
            pts = [(e, h.get(f"{split}_{key}")) for e, h in zip(epochs, history)]
            pts = [(e, v) for e, v in pts if v is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=split, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    save_figure(fig, path)


def _set_class_ticks(ax, axis: str, names: Sequence[str], rotation: float = 0) -> None:
    if len(names) > MAX_LABELLED_CLASSES:
        return  # matplotlib's default numeric ticks (class index) are the readable choice here
    ticks = np.arange(len(names))
    if axis == "x":
        ax.set_xticks(ticks, names, rotation=rotation, ha="right" if rotation else "center", fontsize=8)
    else:
        ax.set_yticks(ticks, names, fontsize=8)


def _plot_per_class(per_class: dict, names: Sequence[str], path: Path) -> None:
    c = len(names)
    fig = Figure(figsize=(min(max(6.0, 0.6 * c + 2), 40.0), 4.2))
    ax = fig.subplots()
    x = np.arange(c)
    width = 0.27
    for k, (key, colour) in enumerate((("precision", "#4c72b0"), ("recall", "#dd8452"), ("f1", "#55a868"))):
        vals = [per_class.get(n, {}).get(key) or 0.0 for n in names]
        ax.bar(x + (k - 1) * width, vals, width, label=key, color=colour)
    ax.set_ylim(0, 1.18)  # headroom so the legend sits above bars that reach 1.0
    ax.set_ylabel("score")
    ax.set_title("Precision / recall / F1 per class")
    _set_class_ticks(ax, "x", names, rotation=35)
    ax.legend(loc="upper right", ncol=3, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def _plot_confusion(matrix: np.ndarray, names: Sequence[str], path: Path) -> None:
    c = len(names)
    side = min(max(4.5, 0.45 * c + 2), 20.0)
    # Constrained layout keeps the colorbars clear of the neighbouring panel's class labels.
    fig = Figure(figsize=(2 * side + 1, side), layout="constrained")
    rows = matrix.sum(axis=1, keepdims=True)
    # Rows with no samples stay 0 instead of dividing by zero.
    normed = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    for ax, data, title, fmt in zip(fig.subplots(1, 2), (matrix, normed), ("Counts", "Row-normalised (recall)"),
                                    ("{:d}", "{:.2f}")):
        im = ax.imshow(data, cmap="Blues", interpolation="nearest", vmin=0)
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(title)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        _set_class_ticks(ax, "x", names, rotation=45)
        _set_class_ticks(ax, "y", names)
        if c <= MAX_ANNOTATED_CLASSES:
            hi = data.max() or 1
            for i in range(c):
                for j in range(c):
                    v = data[i, j]
                    ax.text(j, i, fmt.format(int(v) if fmt == "{:d}" else v), ha="center", va="center",
                            fontsize=7 if c > 10 else 9, color="white" if v > 0.6 * hi else "black")
    save_figure(fig, path)


def _plot_reliability(reliability: dict, ece: float | None, path: Path) -> None:
    edges = np.asarray(reliability.get("bin_edges") or [0.0, 1.0], dtype=float)
    width = np.diff(edges)
    centers = edges[:-1] + width / 2
    acc = [a for a in reliability.get("accuracy", [])]
    counts = reliability.get("count") or [0] * len(centers)
    fig = Figure(figsize=(5.5, 6.2))
    ax, axc = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = [i for i, a in enumerate(acc) if a is not None]
    ax.bar(centers[filled], [acc[i] for i in filled], width[filled], edgecolor="#333", color="#4c72b0",
           label="accuracy")
    conf = reliability.get("confidence", [])
    ax.plot([conf[i] for i in filled], [acc[i] for i in filled], "o", color="#dd8452", markersize=4,
            label="accuracy at mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Reliability (ECE = {ece:.3f})" if ece is not None else "Reliability (ECE = n/a, no samples)")
    axc.bar(centers, counts, width, color="#999", edgecolor="#333")
    axc.set_xlabel("confidence (max probability)")
    axc.set_ylabel("count")
    save_figure(fig, path)


def _plot_mistakes(y_true: np.ndarray, probs: np.ndarray, paths: Sequence[str], names: Sequence[str],
                   n_mistakes: int, path: Path) -> tuple[int, list[dict]]:
    """Gallery of the most confident wrong predictions; returns (number shown, unreadable files)."""
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    # Most confident mistakes first: those are what calibration and label noise hide behind.
    order = wrong[np.argsort(-conf[wrong], kind="stable")]
    shown: list[tuple[np.ndarray, str]] = []
    unreadable: list[dict] = []
    for i in order:
        if len(shown) >= n_mistakes:
            break
        try:
            im = open_rgb(paths[i], min_side=128)
        except PhotoError as e:
            unreadable.append({"path": str(paths[i]), "reason": f"thumbnail for report: {e.reason}"})
            continue
        im.thumbnail(THUMB_SIZE)
        shown.append((np.asarray(im), f"true: {names[y_true[i]]} / pred: {names[pred[i]]} ({conf[i]:.2f})"))
    if not shown:
        return 0, unreadable
    ncols = min(4, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(2.6 * ncols, 2.6 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (img, title) in zip(axes, shown):
        ax.imshow(img)
        ax.set_title(title, fontsize=7)
    save_figure(fig, path)
    return len(shown), unreadable


def plot_precision_recall(y_true: np.ndarray, probs: np.ndarray, threshold: float | None, title: str,
                          path: Path) -> None:
    """Precision against recall over every threshold, with the shipped operating point marked."""
    from sklearn.metrics import precision_recall_curve

    from .metrics import attribute_metrics

    precision, recall, _ = precision_recall_curve(y_true, probs)
    at = attribute_metrics(y_true, probs, threshold)
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.plot(recall, precision, drawstyle="steps-post")
    if at["precision"] is not None and at["recall"] is not None:
        ax.plot([at["recall"]], [at["precision"]], "o", color="C3", label=f"threshold {threshold:.2f}")
        ax.legend(loc="lower left")
    else:
        what = "no operating threshold" if threshold is None else f"threshold {threshold:.2f}: no photo reaches it"
        ax.text(0.03, 0.05, what, color="C3", transform=ax.transAxes)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title=f"{title} ({int(y_true.sum())} yes / {int(len(y_true) - y_true.sum())} no)")
    ax.grid(alpha=0.3)
    save_figure(fig, Path(path))


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{100 * v:.2f}%" if pct else f"{v:.4f}"
    return str(v)


def _json_default(o):
    # Callers may hand in numpy scalars/arrays (e.g. in `summary`); write them as plain values.
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _compact(v) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, default=_json_default, ensure_ascii=False)


def write_report(out_dir: str | Path, *, title: str, metrics: dict, class_names: Sequence[str],
                 y_true: np.ndarray | None = None, probs: np.ndarray | None = None,
                 paths: Sequence[str] | None = None, history: Sequence[dict] | None = None,
                 summary: dict | None = None, skipped: Sequence[dict] | None = None,
                 n_mistakes: int = 16) -> Path:
    """Write report.html, metrics.json and the PNG figures into `out_dir`; return report.html's path.

    `metrics` is the dict from `classification_metrics`. The mistakes gallery needs `y_true`,
    `probs` and `paths` together; photos that cannot be opened are listed, not fatal.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [str(c) for c in class_names]
    esc = html.escape
    figures: list[tuple[str, str]] = []  # (file name, caption)

    if history:
        _plot_curves(history, out / "curves.png")
        figures.append(("curves.png", "Training curves"))

    per_class = metrics.get("per_class") or {}
    _plot_per_class(per_class, names, out / "per_class.png")
    figures.append(("per_class.png", "Per-class precision, recall and F1"))

    confusion = metrics.get("confusion") or {}
    cm_names = [str(c) for c in confusion.get("labels", names)]
    matrix = np.asarray(confusion.get("matrix") or np.zeros((len(cm_names), len(cm_names))), dtype=np.int64)
    _plot_confusion(matrix.reshape(len(cm_names), len(cm_names)), cm_names, out / "confusion.png")
    figures.append(("confusion.png", "Confusion matrix (rows: true class, columns: predicted)"))

    if metrics.get("reliability"):
        _plot_reliability(metrics["reliability"], metrics.get("ece"), out / "reliability.png")
        figures.append(("reliability.png", "Reliability diagram"))

    skipped_rows = [dict(s) for s in (skipped or [])]
    mistakes_note = ""
    if y_true is not None and probs is not None and paths is not None:
        y = np.asarray(y_true, dtype=np.int64)
        p = np.asarray(probs, dtype=np.float64)
        if not (len(y) == len(p) == len(paths)):
            raise ValueError(f"y_true, probs and paths must have the same length, got {len(y)}, {len(p)}, {len(paths)}")
        if p.ndim != 2 or p.shape[1] != len(names):
            raise ValueError(f"probs has shape {p.shape} but {len(names)} class names were given")
        n_shown, unreadable = _plot_mistakes(y, p, paths, names, n_mistakes, out / "mistakes.png")
        skipped_rows += unreadable
        if n_shown:
            figures.append(("mistakes.png", f"The {n_shown} most confident mistakes"))
        else:
            mistakes_note = "No misclassified photos could be shown (none were wrong, or none could be opened)."

    # A figure left over from an earlier report in the same folder would be mistaken for this run's.
    for optional in ("curves.png", "mistakes.png"):
        if optional not in {f for f, _ in figures}:
            (out / optional).unlink(missing_ok=True)

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default), encoding="utf-8")

    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if summary:
        parts.append("<h2>Summary</h2><table>")
        parts += [f"<tr><th>{esc(str(k))}</th><td><code>{esc(_compact(v))}</code></td></tr>" for k, v in summary.items()]
        parts.append("</table>")

    headline = [("Photos", _fmt(metrics.get("n"))), ("Accuracy", _fmt(metrics.get("accuracy"), pct=True)),
                ("Top-2 accuracy", _fmt(metrics.get("top2_accuracy"), pct=True)),
                ("Macro F1", _fmt(metrics.get("macro_f1"))), ("ECE", _fmt(metrics.get("ece"))),
                ("Log loss", _fmt(metrics.get("log_loss")))]
    parts.append('<h2>Headline</h2><div class="headline">')
    parts += [f"<div>{esc(k)}<b>{esc(v)}</b></div>" for k, v in headline]
    parts.append("</div>")

    parts.append("<h2>Per class</h2><table><tr><th>class</th><th>precision</th><th>recall</th>"
                 "<th>F1</th><th>support</th></tr>")
    for n in names:
        pc = per_class.get(n, {})
        cells = "".join(f'<td class="num">{esc(_fmt(pc.get(k)))}</td>' for k in ("precision", "recall", "f1", "support"))
        parts.append(f"<tr><td>{esc(n)}</td>{cells}</tr>")
    parts.append("</table>")

    parts.append("<h2>Figures</h2>")
    for fname, caption in figures:
        parts.append(f'<figure><img src="{esc(fname)}" alt="{esc(caption)}"><figcaption>{esc(caption)}'
                     "</figcaption></figure>")
    if mistakes_note:
        parts.append(f"<p>{esc(mistakes_note)}</p>")

    if skipped_rows:
        parts.append(f"<h2>Skipped files ({len(skipped_rows)})</h2><table><tr><th>path</th><th>reason</th></tr>")
        parts += [f"<tr><td><code>{esc(str(s.get('path', '')))}</code></td><td>{esc(str(s.get('reason', '')))}</td></tr>"
                  for s in skipped_rows]
        parts.append("</table>")
    parts.append('<p><a href="metrics.json">metrics.json</a></p></body></html>')

    report = out / "report.html"
    report.write_text("\n".join(parts), encoding="utf-8")
    return report
