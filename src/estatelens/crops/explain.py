"""`estatelens crops explain`: the seed's figures for one photo.

Left: the photo inside its original frame (grey), with the rectangle the model predicts for it in
red. With --simulate the true rectangle is known: it is drawn in green, and the photo is placed
where it truly came from; otherwise the photo is placed where the model says. Right: the patch-position heatmaps, one small 4 x 4 map per patch,
placed where the patch is in the photo. Each map shows where in the original frame's grid the
patch network puts that patch. The cell the patch would occupy if nothing were cropped is outlined
in white; the true cell, when known, in green.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from ..data.images import read_photo
from ..evaluation.report import save_figure
from .detector import CropDetector, CropPrediction
from .generator import patch_positions, sample_rect, stable_seed


def explain_crops(photos: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, model: str = "crops",
                  simulate: float | None = None, seed: int = 0) -> Iterator[tuple[str, str]]:
    """Write OUT/<photo>.crop.png for each photo; yields (photo, one-line summary)."""
    if simulate is not None and not 0.05 <= simulate < 1.0:
        raise ValueError(f"--simulate {simulate}: give a crop factor from 0.05 to below 1")
    det = CropDetector(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path in photos:
        photo, _ = read_photo(path)
        truth = None
        if simulate is not None:
            s = det.settings
            need = int(np.ceil(s.size / simulate))
            if min(photo.size) < need:
                raise ValueError(f"{path}: {photo.width}x{photo.height} is too small to crop at {simulate} without "
                                 f"enlarging the crop to {s.size} px (needs {need} px on the short side)")
            rng = np.random.default_rng(stable_seed(seed, Path(path).name))
            from dataclasses import replace

            x0, y0, x1, y1 = sample_rect(photo.width, photo.height, rng, replace(s, factor_range=(simulate, simulate)))
            truth = np.array([x0 / photo.width, y0 / photo.height, x1 / photo.width, y1 / photo.height], np.float32)
            photo = photo.crop((x0, y0, x1, y1))
        pred = det.predict_photo(photo)
        dest = out / f"{Path(path).stem}.crop.png"
        draw(photo, pred, det, dest, truth)
        line = (f"cropped {pred.cropped_probability:.2f}, crop factor {pred.factor:.2f}, "
                f"rectangle {', '.join(f'{v:.2f}' for v in pred.rect)}")
        if truth is not None:
            line += f" (true: {', '.join(f'{v:.2f}' for v in truth)})"
        yield str(path), f"{line} -> {dest}"


def draw(photo: Image.Image, pred: CropPrediction, det: CropDetector, dest: Path,
         truth: np.ndarray | None = None) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    s = det.settings
    g = s.grid
    ncols = 2 if pred.positions is not None else 1
    fig = Figure(figsize=(6.5 * ncols, 5.2))
    axes = fig.subplots(1, ncols, squeeze=False)
    ax = axes[0, 0]
    # The original frame, in the photo's pixels: the photo is drawn where the true rectangle says
    # it lies when known, else where the predicted one does; both rectangles are fractions of it.
    placed = truth if truth is not None else np.asarray(pred.rect, dtype=np.float64)
    fw = photo.width / max(1e-3, float(placed[2] - placed[0]))
    fh = photo.height / max(1e-3, float(placed[3] - placed[1]))
    ax.add_patch(Rectangle((0, 0), fw, fh, facecolor="#e8e8e8", edgecolor="#555", lw=1.5, zorder=0))
    ax.imshow(np.asarray(photo), extent=(placed[0] * fw, placed[2] * fw, placed[3] * fh, placed[1] * fh), zorder=1)
    for r, colour, style, label in ((pred.rect, "red", "-", "predicted"), (truth, "lime", "--", "true")):
        if r is not None:
            ax.add_patch(Rectangle((r[0] * fw, r[1] * fh), (r[2] - r[0]) * fw, (r[3] - r[1]) * fh, fill=False,
                                   edgecolor=colour, lw=2.5, ls=style, label=label, zorder=2))
    ax.set_xlim(-0.02 * fw, 1.02 * fw)
    ax.set_ylim(1.02 * fh, -0.02 * fh)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"P(cropped) = {pred.cropped_probability:.2f}, crop factor {pred.factor:.2f}"
                 + (f" (true {np.sqrt((truth[2] - truth[0]) * (truth[3] - truth[1])):.2f})" if truth is not None else ""),
                 fontsize=10)
    if pred.positions is not None:
        ax = axes[0, 1]
        thumb = np.asarray(photo.convert("RGB").resize((s.size, s.size), Image.LANCZOS))
        ax.imshow(thumb, alpha=0.35, extent=(0, g, g, 0))
        own = np.arange(g * g)
        true_cells = None
        if truth is not None:
            cell = s.size // g
            offsets = np.array([(c * cell + (cell - s.patch) // 2, r * cell + (cell - s.patch) // 2)
                                for r in range(g) for c in range(g)])
            true_cells = patch_positions(offsets, truth, s)
        for k in range(g * g):
            r, c = divmod(k, g)
            heat = pred.positions[k].reshape(g, g)
            ax.imshow(heat, cmap="magma", vmin=0, vmax=max(0.25, float(heat.max())),
                      extent=(c + 0.06, c + 0.94, r + 0.94, r + 0.06), interpolation="nearest")
            for cells, colour in ((own, "white"), (true_cells, "lime")):
                if cells is None:
                    continue
                rr, cc = divmod(int(cells[k]), g)
                w = 0.88 / g
                ax.add_patch(Rectangle((c + 0.06 + cc * w, r + 0.06 + rr * w), w, w, fill=False, edgecolor=colour, lw=1.2))
        ax.set_xlim(0, g)
        ax.set_ylim(g, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("where each patch lies in the original frame\n(white: if uncropped; green: true)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, dest)
    return dest
