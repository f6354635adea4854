"""Tables, figures and the HTML page of `estatelens compare`, from the per-run results.

Writes into the comparison folder: summary.md, summary.csv (UTF-8 with a byte-order mark, so
Excel and pandas read it), summary.json, per_class.csv, curves-<mode>.png (every model of a mode
on one figure, train and val, loss and accuracy), accuracy_vs_speed.png and report.html.
"""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from .report import CSS, save_figure

COLUMNS = [  # (key in a row, Markdown/HTML header)
    ("model", "model"), ("mode", "mode"), ("parameters_m", "params (M)"), ("onnx_mb", "ONNX (MB)"),
    ("train_minutes", "training (min)"), ("epochs_run", "epochs"), ("best_val_accuracy", "best val acc"),
    ("best_epoch", "best epoch"), ("test_accuracy", "test acc"), ("test_top2", "test top-2"),
    ("macro_f1", "macro F1"), ("photos_per_second", "photos/s"), ("stopped_by", "stopped by / note"),
]
_PERCENT = {"best_val_accuracy", "test_accuracy", "test_top2"}
_MARKERS = {"features": "o", "finetune": "s", "scratch": "^"}
_STOPPED = {"epochs": "all epochs", "early_stopping": "early stopping", "time_budget": "TIME BUDGET"}


def summary_row(r: dict) -> dict:
    """One flat row per run: numbers for a finished run, the reason for any other."""
    row = {"model": r["model"], "mode": r["mode"], "status": r["status"]}
    if r["status"] != "ok":
        why = r.get("reason") or r.get("error")
        note = f"{r['status']}: {why}" if why else r["status"]
        row["stopped_by"] = note if len(note) <= 240 else note[:239] + "…"  # the whole error is in `error`
        row["error"] = why
        return row
    test = r["test"]
    row.update(
        parameters_m=round(r["parameters"] / 1e6, 2), onnx_mb=round(r["onnx_bytes"] / 2**20, 1),
        train_minutes=round(r["train_seconds"] / 60, 1), epochs_run=r["epochs_run"],
        best_val_accuracy=r["best_val_accuracy"], best_epoch=r["best_epoch"],
        test_accuracy=test["accuracy"], test_top2=test["top2_accuracy"], macro_f1=test["macro_f1"],
        photos_per_second=r["photos_per_second"], stopped_by=_STOPPED.get(r["stopped_by"], r["stopped_by"]),
        image_size=r["image_size"], test_n=test["n"], parameters=r["parameters"], onnx_bytes=r["onnx_bytes"],
        train_seconds=r["train_seconds"], prepare_seconds=r.get("prepare_seconds"),
        speed_threads=r.get("speed_threads"), bundle=r.get("bundle"),
    )
    return row


def _md(text: str) -> str:
    """A Markdown table cell: one line, no column breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _cell(key: str, v) -> str:
    if v is None or v == "":
        return "–"
    if key in _PERCENT:
        return f"{100 * v:.1f} %"
    if key == "macro_f1":
        return f"{v:.3f}"
    if key == "photos_per_second":
        return f"{v:.0f}"
    return str(v)


def write_comparison(out_dir: str | Path, results: Sequence[dict], meta: dict) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [summary_row(r) for r in results]
    ok = [r for r in results if r["status"] == "ok"]

    fields = ["model", "mode", "status", "parameters", "onnx_bytes", "train_seconds", "prepare_seconds",
              "epochs_run", "best_val_accuracy", "best_epoch", "test_accuracy", "test_top2", "macro_f1",
              "photos_per_second", "speed_threads", "stopped_by", "image_size", "test_n", "error", "bundle"]
    with open(out / "summary.csv", "w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(out / "per_class.csv", "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(["model", "mode", "class", "train_accuracy", "test_accuracy", "train_n", "test_n"])
        for r in ok:
            for c, pc in r["per_class"].items():
                w.writerow([r["model"], r["mode"], c, pc["train"], pc["test"], pc["train_n"], pc["test_n"]])
    (out / "summary.json").write_text(json.dumps(
        {"meta": meta, "runs": [{k: v for k, v in r.items() if k != "key"} for r in results]},
        indent=2, default=str), encoding="utf-8")

    figures = []
    colours = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(r["model"] for r in results))}
    for mode in dict.fromkeys(r["mode"] for r in ok):
        name = f"curves-{mode}.png"
        plot_curves([r for r in ok if r["mode"] == mode], mode, out / name, colours)
        figures.append((name, f"Loss and accuracy per epoch, {mode} (solid: train, on augmented photos with "
                              "label smoothing and dropout; dashed: validation)"))
    for stale in out.glob("curves-*.png"):
        if stale.name not in {f for f, _ in figures}:
            stale.unlink()
    if ok:
        plot_accuracy_vs_speed(ok, meta.get("test_split", "test"), out / "accuracy_vs_speed.png")
        figures.insert(0, ("accuracy_vs_speed.png", "Test accuracy against network speed"))
    else:
        (out / "accuracy_vs_speed.png").unlink(missing_ok=True)

    (out / "summary.md").write_text(_markdown(rows, ok, meta, figures), encoding="utf-8")
    (out / "report.html").write_text(_html(rows, ok, meta, figures), encoding="utf-8")


def plot_curves(runs: Sequence[dict], mode: str, path: Path, colours: dict[str, str] | None = None) -> None:
    """Every run of a mode on one figure, a colour per model (the same in every mode's figure)."""
    colours = colours or {r["model"]: f"C{i % 10}" for i, r in enumerate(runs)}
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("loss", "acc"), ("Loss", "Accuracy")):
        for r in runs:
            colour = colours[r["model"]]
            h = r["history"]
            for split, style in (("train", "-"), ("val", "--")):
                pts = [(e["epoch"], e.get(f"{split}_{key}")) for e in h if e.get(f"{split}_{key}") is not None]
                if pts:
                    ax.plot(*zip(*pts), style, color=colour, marker="o", markersize=3,
                            label=r["model"] if split == "train" else None)
        ax.set_xlabel("epoch")
        ax.set_title(f"{label} ({mode})")
        if key == "loss":
            ax.set_yscale("log")  # one diverging epoch (a loss of 40) would flatten every other curve
        ax.grid(alpha=0.3)
    if any(r["history"] for r in runs):
        axes[1].legend(fontsize=8, loc="lower right")
        axes[0].legend(handles=[Line2D([], [], color="k", ls="-", label="train"),
                                Line2D([], [], color="k", ls="--", label="validation")], fontsize=8)
    save_figure(fig, path)


def plot_accuracy_vs_speed(runs: Sequence[dict], split: str, path: Path) -> None:
    fig = Figure(figsize=(7.5, 5))
    ax = fig.subplots()
    for mode in dict.fromkeys(r["mode"] for r in runs):
        pts = [r for r in runs if r["mode"] == mode]
        ax.scatter([r["photos_per_second"] for r in pts], [100 * r["test"]["accuracy"] for r in pts],
                   marker=_MARKERS.get(mode, "D"), s=60, label=mode)
        for r in pts:
            ax.annotate(r["model"] + (" (budget)" if r["stopped_by"] == "time_budget" else ""),
                        (r["photos_per_second"], 100 * r["test"]["accuracy"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "235" else ""))
    ax.set_xlabel("photos/s through ONNX Runtime (network only, log scale)")
    ax.set_ylabel(f"{split} accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="mode")
    save_figure(fig, path)


def _markdown(rows, ok, meta, figures) -> str:
    lines = [f"# Comparison on {meta.get('data', '')}", ""]
    if meta.get("command"):
        lines += ["```", meta["command"], "```", ""]
    lines += [f"- photos per split: {meta.get('per_split')}; scored on the {meta.get('test_split')} split",
              f"- speed: {meta.get('speed')}",
              "- per-class train accuracy on " + (f"at most {meta['train_eval_per_class']} training photos per class"
                                                  if meta.get("train_eval_per_class") else "every training photo")
              + f", {meta.get('test_split')} accuracy on the whole split", ""]
    lines += ["| " + " | ".join(h for _, h in COLUMNS) + " |",
              "|" + "|".join("---" if k in ("model", "mode", "stopped_by") else "---:" for k, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_md(_cell(k, r.get(k))) for k, _ in COLUMNS) + " |" for r in rows]
    lines.append("")
    lines += [f"![{caption}]({name})" for name, caption in figures]
    lines += ["", "## Per-class accuracy", ""]
    for r in ok:
        lines += [f"### {r['model']} ({r['mode']})", "", "| class | train | test |", "|---|---:|---:|"]
        lines += [f"| {_md(c)} | {_cell('test_accuracy', pc['train'])} | {_cell('test_accuracy', pc['test'])} |"
                  for c, pc in r["per_class"].items()]
        lines.append("")
    return "\n".join(lines)


def _html(rows, ok, meta, figures) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Comparison on {esc(str(meta.get('data', '')))}</title><style>{CSS}</style></head><body>",
             f"<h1>Comparison on {esc(str(meta.get('data', '')))}</h1>", "<table>"]
    for k in ("command", "classes", "per_split", "test_split", "speed", "train_eval_per_class"):
        if meta.get(k) not in (None, ""):
            parts.append(f"<tr><th>{esc(k)}</th><td><code>{esc(str(meta[k]))}</code></td></tr>")
    parts.append("</table><h2>Summary</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for _, h in COLUMNS) + "</tr>")
    for r in rows:
        cells = "".join(f'<td class="{"" if k in ("model", "mode", "stopped_by") else "num"}">{esc(_cell(k, r.get(k)))}</td>'
                        for k, _ in COLUMNS)
        parts.append(f"<tr>{cells}</tr>")
    parts.append('</table><p><a href="summary.csv">summary.csv</a> · <a href="per_class.csv">per_class.csv</a> · '
                 '<a href="summary.json">summary.json</a></p><h2>Figures</h2>')
    parts += [f'<figure><img src="{esc(n)}" alt="{esc(c)}"><figcaption>{esc(c)}</figcaption></figure>'
              for n, c in figures]
    parts.append("<h2>Per-class accuracy</h2>")
    for r in ok:
        link = f"runs/{r['model']}-{r['mode']}/report/report.html"
        parts.append(f"<h3>{esc(r['model'])} ({esc(r['mode'])})</h3><p><a href=\"{esc(link)}\">full evaluation "
                     "report (confusion matrix, calibration, mistakes)</a></p><table><tr><th>class</th>"
                     "<th>train</th><th>test</th></tr>")
        parts += [f'<tr><td>{esc(c)}</td><td class="num">{esc(_cell("test_accuracy", pc["train"]))}</td>'
                  f'<td class="num">{esc(_cell("test_accuracy", pc["test"]))}</td></tr>'
                  for c, pc in r["per_class"].items()]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
