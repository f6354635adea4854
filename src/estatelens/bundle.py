"""The model bundle: one self-describing folder that every front end loads the same way.

    NAME.estatelens/
        model.onnx     inference graph: float image batch (N, 3, S, S) -> probabilities (N, C)
                       and the pooled embedding (N, D) that the room-type head reads
        attributes/    one NAME.json per attribute head on that embedding (see attributes.py)
        room_head.json an adapted room-type head on that embedding (optional; see room_head.py):
                       where present, it gives the room-type probabilities
        rehearsal.npz  embeddings of a sample of its training photos (optional; rehearsal.py): what
                       `estatelens adapt` rehearses on, and what "unusual" is measured against
        bundle.json    class names in order, preprocessing, model name and mode, training data
                       summary, metrics, estatelens version
        weights.pt     PyTorch state dict, to fine-tune further or add heads (optional)

Inference runs through ONNX Runtime, which on 2 CPU cores is about ten times faster than eager
PyTorch for these networks.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .attributes import EMBEDDING_OUTPUT, AttributeHead, load_attribute_heads
from .data.images import open_rgb
from .data.preprocess import Preprocessing, decode_side, eval_array
from .ood import UnusualScorer
from .rehearsal import load_rehearsal
from .room_head import RoomHead, load_room_head

# torch is imported only where a PyTorch model is exported or saved: loading a bundle and running
# it through ONNX Runtime (tagging, evaluation) never pays for torch's import time and memory.

BUNDLE_SUFFIX = ".estatelens"
BUNDLE_FORMAT = 1


def _with_softmax(model, temperature: float):
    """The exported network: calibrated probabilities, and for a registry Classifier also the
    embedding its head reads (what attribute heads are trained on)."""
    import torch

    with_embedding = hasattr(model, "forward_with_embedding")

    class WithSoftmax(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            if not with_embedding:
                return torch.softmax(self.model(x) / temperature, dim=-1)
            logits, emb = self.model.forward_with_embedding(x)
            return torch.softmax(logits / temperature, dim=-1), emb

    return WithSoftmax(), (["output", EMBEDDING_OUTPUT] if with_embedding else ["output"])


def export_onnx(model, size: int, path: str | os.PathLike, softmax: bool = True,
                temperature: float = 1.0) -> Path:
    """Export `model` (an nn.Module, eval mode) with a dynamic batch dimension; with `softmax`, the
    graph outputs calibrated probabilities softmax(logits / temperature)."""
    import torch

    path = Path(path)
    model = model.eval()
    net, outputs = _with_softmax(model, temperature) if softmax else (model, ["output"])
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        torchscript_onnx_export(net, (x,), path, ["image"], outputs)
    return path


def torchscript_onnx_export(net, inputs: tuple, path: str | os.PathLike, input_names: list[str],
                            output_names: list[str], dynamic: dict[str, dict[int, str]] | None = None) -> None:
    """torch.onnx.export with the TorchScript exporter, a dynamic batch dimension (and the other
    dynamic axes in `dynamic`, by tensor name: {"image": {2: "height"}}), opset 17.

    Kept on purpose, with its deprecation warnings silenced here and nowhere else: on this
    project's networks the torch.export ("dynamo") exporter gave the same outputs (max difference
    5e-7 on EfficientNet-Lite0) but took 28 s per export against 3 s (2 cores, torch 2.14.1), and
    training, the tests, adapt and the crop detector export often; every shipped bundle was made
    and quantised through this path. torch is pinned (2.14.1); moving torch on means revisiting this."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(net, inputs, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes={n: {0: "batch", **(dynamic or {}).get(n, {})}
                                        for n in [*input_names, *output_names]},
                          opset_version=17, dynamo=False)


def onnx_session(path: str | os.PathLike, threads: int | None = None, spin: bool = False):
    """An ONNX Runtime CPU session with all graph optimisations; `threads` defaults to all cores.

    Spinning is off by default: ONNX Runtime's threads otherwise busy-wait between batches and take
    the cores from the threads decoding the next photos (tagging on 2 cores: 228 -> 261 photos/s)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@dataclass
class ModelBundle:
    path: Path
    classes: list[str]
    preprocessing: Preprocessing
    info: dict = field(default_factory=dict)
    _session: object = field(default=None, repr=False)
    _attributes: list | None = field(default=None, repr=False)
    _also: list | None = field(default=None, repr=False)
    _room_head: object = field(default=False, repr=False)  # False: not looked for yet
    _unusual: object = field(default=False, repr=False)

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    def session(self, threads: int | None = None):
        if self._session is None:
            self._session = onnx_session(self.onnx_path, threads)
        return self._session

    @property
    def attributes(self) -> list[AttributeHead]:
        """The attribute heads in attributes/, checked against this bundle's graph."""
        if self._attributes is None:
            self._attributes = load_attribute_heads(self.path, self.onnx_path)
        return self._attributes

    @property
    def also_heads(self) -> list[AttributeHead]:
        """The open-plan cue heads in also/ (also.py), one per room type; empty where there are none."""
        if self._also is None:
            from .also import ALSO_DIR

            self._also = load_attribute_heads(self.path, self.onnx_path, ALSO_DIR)
        return self._also

    @property
    def room_head(self) -> RoomHead | None:
        """The adapted room-type head (`estatelens adapt`), or None where the graph's own is used."""
        if self._room_head is False:
            head = load_room_head(self.path, self.onnx_path)
            if head is not None and head.classes != self.classes:
                raise ValueError(f"{self.path}: room_head.json's classes {head.classes} are not the "
                                 f"bundle's {self.classes}")
            self._room_head = head
        return self._room_head

    @property
    def unusual(self) -> UnusualScorer | None:
        """The out-of-distribution check (bundle.json "ood" and rehearsal.npz), or None."""
        if self._unusual is False:
            ood, rehearsal = self.info.get("ood"), None
            if ood:
                rehearsal = load_rehearsal(self.path)
                if rehearsal is None:
                    raise ValueError(f"{self.path}: bundle.json sets an ood threshold but rehearsal.npz is missing")
            self._unusual = (UnusualScorer(rehearsal.embeddings[rehearsal.clean], ood["threshold"], ood.get("k", 10))
                             if ood else None)
        return self._unusual

    def weights(self, purpose: str) -> dict:
        """The PyTorch state dict in weights.pt (half precision in int8 bundles; load_state_dict
        casts it); `purpose` ends the error message when the file is missing."""
        import torch

        path = self.path / "weights.pt"
        shared = self.info.get("weights_from")
        if not path.is_file() and shared:
            # A bundle with an attribute tail may use the weights of the room network it carries,
            # from the bundle installed beside it (tools/build_attribute_tail.py --share-weights).
            path = self.path.parent / shared["bundle"] / "weights.pt"
            if not path.is_file():  # a copy elsewhere (adapt --out, train-attribute --out): the bundled one
                path = Path(__file__).parent / "bundled" / shared["bundle"] / "weights.pt"
            if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != shared["sha256"]:
                raise ValueError(f"{path}: is not the weights.pt {self.path} was built with (sha256 differs)")
        if not path.is_file():
            raise FileNotFoundError(f"{self.path}: has no weights.pt {purpose}")
        return torch.load(path, map_location="cpu", weights_only=True)

    def transform(self):
        """The torchvision eval preset (for PyTorch data loaders); `eval_array` is the same without torch."""
        from .data.transforms import eval_preset

        return eval_preset(self.preprocessing)

    def predict_batch(self, batch) -> np.ndarray:
        """Probabilities (N, C) for a preprocessed batch (N, 3, S, S), a NumPy array or torch tensor."""
        return self.run_batch(batch, embedding=False)[0]

    def run_batch(self, batch, embedding: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities (N, C), embedding (N, D) or None when not asked for or not in the graph),
        from one pass of the network."""
        probs, got = self.run_outputs(batch, [EMBEDDING_OUTPUT] if embedding else [])
        return probs, got.get(EMBEDDING_OUTPUT)

    def run_outputs(self, batch, outputs: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(probabilities (N, C), {name: array} for each of `outputs` the graph has), from one pass of
        the network: the embedding, and the attribute tail's embedding where the graph has one."""
        if hasattr(batch, "numpy") and not isinstance(batch, np.ndarray):
            batch = batch.numpy()
        sess = self.session()
        names = [o.name for o in sess.get_outputs()]
        head = self.room_head
        if head is not None and EMBEDDING_OUTPUT not in names:
            raise ValueError(f"{self.onnx_path}: has no embedding output for room_head.json to read")
        want = [names[0]] + [n for n in dict.fromkeys([*outputs] + ([EMBEDDING_OUTPUT] if head else []))
                             if n in names and n != names[0]]
        out = dict(zip(want, sess.run(want, {sess.get_inputs()[0].name: np.ascontiguousarray(batch, dtype=np.float32)})))
        probs = head.probabilities(out[EMBEDDING_OUTPUT]) if head is not None else out[names[0]]
        return probs, {n: out[n] for n in outputs if n in out}

    def predict_files(self, paths: Sequence[str]) -> np.ndarray:
        """Convenience for a handful of photos; batch jobs use the streaming loaders."""
        side = decode_side(self.preprocessing)
        return self.predict_batch(np.stack([eval_array(open_rgb(p, side), self.preprocessing) for p in paths]))

    def update_info(self, **fields) -> None:
        self.info.update(fields)
        write_json(self.path / "bundle.json", self._manifest())

    def _manifest(self) -> dict:
        return {"format": BUNDLE_FORMAT, "classes": self.classes,
                "preprocessing": self.preprocessing.to_dict(), **self.info}


def save_bundle(path: str | os.PathLike, model, classes: Sequence[str],
                preprocessing: Preprocessing, info: dict, include_weights: bool = True,
                temperature: float = 1.0) -> ModelBundle:
    path, tmp = staging_folder(path)
    export_onnx(model, preprocessing.size, tmp / "model.onnx", temperature=temperature)
    if include_weights:
        import torch

        torch.save(model.state_dict(), tmp / "weights.pt")
    bundle = ModelBundle(path, list(classes), preprocessing,
                         {"estatelens_version": __version__, "temperature": temperature, **info})
    write_json(tmp / "bundle.json", bundle._manifest())
    commit_folder(tmp, path)
    return bundle


def bundle_folder(path: str | os.PathLike) -> Path:
    """PATH as a bundle folder's name: NAME.estatelens."""
    path = Path(path)
    return path if path.suffix == BUNDLE_SUFFIX else path.with_name(path.name + BUNDLE_SUFFIX)


def staging_folder(path: str | os.PathLike) -> tuple[Path, Path]:
    """(the bundle folder NAME.estatelens, an empty temporary folder beside it to write into)."""
    path = bundle_folder(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return path, tmp


def commit_folder(tmp: Path, path: Path) -> None:
    """Put the finished temporary folder in place, so an interrupted save never leaves a
    half-written bundle."""
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def load_bundle(path: str | os.PathLike) -> ModelBundle:
    """Load a bundle folder, or a bundled model by name (`rooms`, `crops`; `imagenet-lite0` once
    built: imagenet.load_imagenet_bundle builds it on first use)."""
    p = Path(path)
    if not p.exists():
        p = _find_named_bundle(str(path))
    manifest_path = p / "bundle.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{p}: not a model bundle (no bundle.json)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{p}: bundle format {manifest.get('format')} is not supported "
                         f"(this estatelens reads format {BUNDLE_FORMAT})")
    info = {k: v for k, v in manifest.items() if k not in ("format", "classes", "preprocessing")}
    return ModelBundle(p, manifest["classes"], Preprocessing.from_dict(manifest["preprocessing"]), info)


def estatelens_home() -> Path:
    """Where estatelens keeps caches and built models: $ESTATELENS_HOME or ~/.cache/estatelens."""
    return Path(os.environ.get("ESTATELENS_HOME", Path.home() / ".cache" / "estatelens"))


def bundled_models_dir() -> Path:
    return estatelens_home() / "models"


def _find_named_bundle(name: str) -> Path:
    candidates = [Path(__file__).parent / "bundled" / (name + BUNDLE_SUFFIX),
                  bundled_models_dir() / (name + BUNDLE_SUFFIX)]
    for c in candidates:
        if (c / "bundle.json").is_file():
            return c
    if name == "imagenet-lite0":
        raise FileNotFoundError("imagenet-lite0 is built on first use by `estatelens predict` (or "
                                "estatelens.imagenet.load_imagenet_bundle()); it has not been built yet")
    raise FileNotFoundError(f"{name}: no such bundle folder, and no bundled model of that name "
                            f"(looked in {', '.join(str(c.parent) for c in candidates)})")


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: an interrupted write leaves the previous file, never half of one."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
