"""Where the model looked: Grad-CAM heatmaps over the photo, for the room type and for every
attribute that fires.

Grad-CAM (Selvaraju et al., 2017) weighs the channels of the network's last convolutional feature
map by the gradient of one score (a room-type logit, an attribute logit) and keeps the positive
part: the regions that raise that score. The heatmap is computed with the bundle's float PyTorch
weights (weights.pt); the probabilities printed beside it are the ONNX model's, the same numbers
`estatelens tag` writes. The network sees the centre square of the photo (see Preprocessing), so
the heat lies in that square and the rest of the photo is shown dimmed.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .attributes import YES
from .bundle import ModelBundle
from .data.images import read_photo
from .data.preprocess import eval_array

OVERLAY_ALPHA = 0.45
OUTSIDE_DIM = 0.45  # brightness of the part of the photo the network does not see


@dataclass
class Heatmap:
    target: str  # "room_type" or an attribute name
    label: str  # the class; for an attribute "yes", "no" or "no threshold"
    probability: float
    cam: np.ndarray  # (h, w) in [0, 1], over the network's input square


@dataclass
class Explanation:
    path: str
    size: tuple[int, int]
    heatmaps: list[Heatmap] = field(default_factory=list)


def load_torch_model(bundle: ModelBundle):
    """The bundle's network as a float PyTorch Classifier in eval mode, from weights.pt."""
    from .models import create_model

    state = bundle.weights(", which heatmaps need (the ONNX graph alone cannot give gradients)")
    name = bundle.info.get("model")
    if not name:
        raise ValueError(f"{bundle.path}: bundle.json names no registered model")
    head = bundle.room_head
    if head is None:
        model = create_model(name, num_classes=len(bundle.classes))
        model.load_state_dict(state)
        return model.eval()
    # An adapted bundle: the network as trained, then the head `estatelens adapt` fitted.
    import torch

    trained = [k for k in state if k.startswith("head.") and k.endswith(".weight")]
    model = create_model(name, num_classes=int(state[trained[-1]].shape[0]) if trained else len(bundle.classes))
    model.load_state_dict(state)
    linear = torch.nn.Linear(head.weight.shape[1], len(head.classes))
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(head.weight / head.temperature))
        linear.bias.copy_(torch.from_numpy(head.bias / head.temperature))
    model.head[-1] = linear
    return model.eval()


def unexplained_note(bundle: ModelBundle) -> str | None:
    """A sentence naming the bundle's attribute heads that get no heatmap (those on an attribute
    tail: the PyTorch weights a bundle carries are its room network's), or None."""
    names = [h.name for h in bundle.attributes if not h.explainable]
    if not names:
        return None
    return (f"note: no heatmap for {', '.join(names)}: they read the attribute tail, which has no PyTorch "
            "weights to draw one from (tag still writes their columns)")


class Explainer:
    """Grad-CAM for a bundle's room-type head and attribute heads, on its last feature map."""

    def __init__(self, bundle: ModelBundle):
        import torch

        self.bundle = bundle
        self.model = load_torch_model(bundle)
        self.heads = {h.name: h for h in bundle.attributes if h.explainable}
        self._attr_w = {n: torch.tensor(h.weight, dtype=torch.float32) for n, h in self.heads.items()}
        self._layer = _last_feature_layer(self.model.backbone, bundle.preprocessing.size)

    def explain(self, path: str | os.PathLike, *, room: tuple[str, float] | None = None,
                attributes: dict[str, float] | None = None, every_attribute: bool = False) -> Explanation:
        """Heatmaps for the room type and for each attribute at or above its threshold (every
        attribute with `every_attribute`). `room` (class, probability) and `attributes` (name ->
        probability) are the ONNX model's numbers; pass them when already known, as the tagger
        does, or leave them out to have them computed."""
        pre = self.bundle.preprocessing
        im, size = read_photo(path, round(pre.size / pre.crop_fraction))
        x = eval_array(im, pre)
        if room is None or (self.heads and attributes is None):
            probs, emb = self.bundle.run_batch(x[None], embedding=bool(self.heads))
            k = int(np.argmax(probs[0]))
            room = (self.bundle.classes[k], float(probs[0, k]))
            attributes = {n: float(h.probability(emb)[0]) for n, h in self.heads.items()} if self.heads else {}
        targets: list[tuple[str, str, float]] = [("room_type", room[0], float(room[1]))]
        for name, p in (attributes or {}).items():
            said = self.heads[name].says(p) if name in self.heads else None
            if name in self.heads and (every_attribute or said == YES):
                targets.append((name, said or "no threshold", p))
        cams = self._grad_cam(x, [(t, lbl) for t, lbl, _ in targets])
        return Explanation(str(path), size, [Heatmap(t, lbl, p, c) for (t, lbl, p), c in zip(targets, cams)])

    def _grad_cam(self, x: np.ndarray, targets: list[tuple[str, str]]) -> list[np.ndarray]:
        import torch

        store: dict = {}
        hook = self._layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        try:
            with torch.enable_grad():
                logits, emb = self.model.forward_with_embedding(torch.from_numpy(x)[None])
                scores = []
                for target, label in targets:
                    if target == "room_type":
                        scores.append(logits[0, self.bundle.classes.index(label)])
                    else:
                        scores.append(emb[0] @ self._attr_w[target])  # the bias does not move gradients
                act = store["a"]
                cams = []
                for s in scores:
                    (grad,) = torch.autograd.grad(s, act, retain_graph=True)
                    weights = grad[0].mean((1, 2))
                    cam = torch.relu((weights[:, None, None] * act[0]).sum(0)).detach().numpy()
                    cams.append(cam / cam.max() if cam.max() > 0 else cam)
        finally:
            hook.remove()
        return cams


def _last_feature_layer(backbone, size: int):
    """The module whose output is the backbone's last spatial feature map (found by running an
    input of the network's size through it): Grad-CAM's usual layer, where features are most
    semantic. Global pooling's (N, C, 1, 1) output is 4-D too but has no "where", so it is passed over."""
    import torch

    last: dict = {}

    def keep(mod, _inputs, out):
        if torch.is_tensor(out) and out.dim() == 4 and out.shape[2] * out.shape[3] > 1:
            last["m"] = mod

    hooks = [m.register_forward_hook(keep) for m in backbone.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    if "m" not in last:
        raise ValueError("the backbone has no spatial feature map to explain")
    return last["m"]


def overlay_stem(path: str | os.PathLike, unique: bool = False) -> str:
    """The photo's name without extension; with `unique`, followed by 8 hex digits of a hash of its
    absolute path, so that IMG_0001.jpg from two folders never share an overlay file."""
    stem = Path(path).stem
    if not unique:
        return stem
    key = os.path.abspath(path).encode("utf-8", "surrogateescape")
    return f"{stem}-{hashlib.sha1(key).hexdigest()[:8]}"


def _jet_lut() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["jet"](np.arange(256))[:, :3] * 255).round().astype(np.uint8)


def render_overlay(path: str | os.PathLike, heatmap: Heatmap, crop_fraction: float = 1.0,
                   photo: Image.Image | None = None) -> Image.Image:
    """The photo as a viewer shows it (after EXIF rotation) with `heatmap` over the network's
    centre square and the rest dimmed. Composed in 8-bit images with Pillow, so that a
    24-megapixel photo needs tens of megabytes, not gigabytes."""
    if photo is None:
        photo, _ = read_photo(path)
    w, h = photo.size
    side = round(min(w, h) * crop_fraction)
    box = ((w - side) // 2, (h - side) // 2)
    heat = Image.fromarray((heatmap.cam * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
    colour = Image.fromarray(_jet_lut()[np.asarray(heat)])
    alpha = heat.point(lambda v: int(v * OVERLAY_ALPHA))
    inside = Image.composite(colour, photo.crop((*box, box[0] + side, box[1] + side)), alpha)
    canvas = photo.point(lambda v: int(v * OUTSIDE_DIM))
    canvas.paste(inside, box)
    return canvas


def write_overlays(explanation: Explanation, out_dir: str | os.PathLike, crop_fraction: float = 1.0,
                   stem: str | None = None) -> list[Path]:
    """One JPEG per heatmap (see `render_overlay`): OUT/<stem>.<room type or attribute>.jpg, stem
    defaulting to the photo's name without extension."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photo, _ = read_photo(explanation.path)
    stem = stem or Path(explanation.path).stem
    written = []
    for hm in explanation.heatmaps:
        canvas = render_overlay(explanation.path, hm, crop_fraction, photo)
        dest = out_dir / f"{stem}.{hm.label if hm.target == 'room_type' else hm.target}.jpg"
        tmp = dest.with_name(dest.name + ".tmp")
        canvas.save(tmp, format="JPEG", quality=90)
        os.replace(tmp, dest)
        written.append(dest)
    return written
