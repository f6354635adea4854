"""The crop model of the seed (after Van Hoorick and Vondrick): a thumbnail branch, a patch branch
with the 4 x 4 patch-position task, and a fusion MLP predicting cropped-or-not, the rectangle and
the crop factor.

- Thumbnail branch: a registered backbone on the whole size x size sample -> 64-d embedding (the
  seed's ResNet34 -> 64).
- Patch branch: a registered backbone on each of the 16 patches -> 64-d embedding each, and from
  it 16 logits: where in the original frame's 4 x 4 grid the patch lies (the seed's ResNet18).
- Fusion: a 3-layer perceptron over [thumbnail 64, the 16 patch embeddings in grid order] ->
  cropped logit, rectangle (x0, y0, x1, y1 in the original frame, [0, 1]), crop factor.

`CropHeads` is everything after the backbones, so it trains on cached backbone features; `CropNet`
puts backbones and heads together for export. `patch_dim=None` gives the thumbnail-only model.
"""
from __future__ import annotations

import torch
from torch import nn

EMBED = 64


class CropHeads(nn.Module):
    def __init__(self, thumb_dim: int, patch_dim: int | None, grid: int = 4, hidden: int = 256,
                 dropout: float = 0.3):
        super().__init__()
        self.grid = grid
        self.thumb = nn.Sequential(nn.Dropout(dropout), nn.Linear(thumb_dim, EMBED), nn.ReLU())
        self.patch = nn.Sequential(nn.Dropout(dropout), nn.Linear(patch_dim, EMBED), nn.ReLU()) if patch_dim else None
        self.position = nn.Linear(EMBED, grid * grid) if patch_dim else None
        n_in = EMBED * (1 + (grid * grid if patch_dim else 0))
        self.fusion = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                                    nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 6))

    @property
    def uses_patches(self) -> bool:
        return self.patch is not None

    def forward(self, thumb_feat: torch.Tensor, patch_feat: torch.Tensor | None = None):
        """(cropped logit (N,), rect (N, 4), factor (N,), patch position logits (N, 16, 16) or None).

        The rectangle is parameterised so that it is always a valid box inside the frame: width
        and height in (0, 1], and where the box sits in the room left for it."""
        parts = [self.thumb(thumb_feat)]
        positions = None
        if self.patch is not None:
            if patch_feat is None:
                raise ValueError("this crop model needs patch features")
            p = self.patch(patch_feat)  # (N, 16, 64)
            positions = self.position(p)
            parts.append(p.flatten(1))
        out = self.fusion(torch.cat(parts, 1))
        wh = torch.sigmoid(out[:, 3:5])
        xy = torch.sigmoid(out[:, 1:3]) * (1 - wh)
        rect = torch.cat([xy, xy + wh], 1)
        return out[:, 0], rect, torch.sigmoid(out[:, 5]), positions


class CropNet(nn.Module):
    """Backbones and heads, from photos: thumbnail (N, 3, S, S), patches (N, 16, 3, P, P)."""

    def __init__(self, thumb_backbone: nn.Module, patch_backbone: nn.Module | None, heads: CropHeads):
        super().__init__()
        self.thumb_backbone, self.patch_backbone, self.heads = thumb_backbone, patch_backbone, heads

    def forward(self, thumbnail: torch.Tensor, patches: torch.Tensor):
        t = self.thumb_backbone(thumbnail)
        p = None
        if self.heads.uses_patches:
            n, k = patches.shape[:2]
            p = self.patch_backbone(patches.flatten(0, 1)).reshape(n, k, -1)
        logit, rect, factor, positions = self.heads(t, p)
        out = [torch.sigmoid(logit), rect, factor]
        if positions is not None:
            out.append(torch.softmax(positions, -1))
        return tuple(out)


class ThumbnailOnlyNet(nn.Module):
    """A thumbnail-only CropNet taking the thumbnail alone (for export)."""

    def __init__(self, net: CropNet):
        super().__init__()
        self.net = net

    def forward(self, thumbnail: torch.Tensor):
        return self.net(thumbnail, None)


def crop_losses(outputs, cropped: torch.Tensor, rect: torch.Tensor, factor: torch.Tensor,
                positions: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The multi-task loss: cross-entropy for cropped-or-not, L1 for the rectangle and the crop
    factor (each scaled to weigh about as much as the classification), cross-entropy for the
    patch positions."""
    logit, rect_hat, factor_hat, pos_logits = outputs
    losses = {"cropped": nn.functional.binary_cross_entropy_with_logits(logit, cropped.float()),
              "rect": 4.0 * (rect_hat - rect).abs().mean(),
              "factor": 4.0 * (factor_hat - factor).abs().mean()}
    if pos_logits is not None and positions is not None:
        losses["positions"] = 0.5 * nn.functional.cross_entropy(pos_logits.flatten(0, 1), positions.flatten())
    losses["total"] = sum(losses.values())
    return losses
