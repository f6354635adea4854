"""Attribute heads: yes/no questions about a photo (fireplace? balcony?) answered from the same
backbone pass as the room type.

A bundle's ONNX graph has two outputs: the room-type probabilities and the pooled embedding the
room-type head reads. Each attribute is a logistic head on that embedding, stored as one file
`attributes/NAME.json` in the bundle (weights, bias, operating threshold, how it was trained and
scored). Adding an attribute therefore never touches the network or the room-type head, and costs
one (N, D) x (D,) product per batch at tagging time.

A graph may have a second tail for attributes (`attribute_tail.py`: the last blocks of a network
fine-tuned with the attributes, on the room network's shared first blocks); its pooled output is
ATTRIBUTE_EMBEDDING_OUTPUT, and a head names the output it reads (`embedding` in its JSON).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EMBEDDING_OUTPUT = "embedding"
ATTRIBUTE_EMBEDDING_OUTPUT = "attribute_embedding"
ATTRIBUTES_DIR = "attributes"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
YES, NO, UNSURE = "yes", "no", "unsure"


# Columns the tagger writes besides the attributes' own (tests check this against TagRow):
# an attribute of such a name would overwrite them.
RESERVED_NAMES = frozenset({"path", "status", "room_type", "probability", "unusual", "also", "width", "height",
                            "sorted_to", "heatmaps"})
_RESERVED_PATTERN = re.compile(r"^(class|probability)_\d+$|_probability$")


def check_attribute_name(name: str, new: bool = True) -> str:
    """Attribute names become output columns and file names: lower-case letters, digits, _; a new
    one may not take the name of a column the tagger already writes (heads saved before that rule
    still load)."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"attribute name {name!r}: use lower-case letters, digits and _ "
                         f"(starting with a letter, at most 40 characters), e.g. fireplace")
    if new and (name in RESERVED_NAMES or _RESERVED_PATTERN.search(name)):
        raise ValueError(f"attribute name {name!r} is taken by a column of `estatelens tag` output; "
                         f"choose another name")
    return name


def graph_fingerprint(onnx_path: str | os.PathLike) -> str:
    """Identifies the network an attribute head was trained on: heads are only valid on the very
    embedding they learned from, so a bundle whose graph changed refuses its old heads."""
    h = hashlib.sha256()
    with open(onnx_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class AttributeHead:
    """p(attribute | photo) = sigmoid(embedding . weight + bias); "yes" when p >= threshold.

    The threshold is the operating point chosen on validation predictions for `target_precision`;
    None when no threshold reached it with enough support: the head then gives probabilities only."""

    name: str
    weight: np.ndarray
    bias: float
    threshold: float | None
    target_precision: float
    graph: str  # graph_fingerprint of the model.onnx it was trained on
    info: dict = field(default_factory=dict)
    embedding: str = EMBEDDING_OUTPUT  # the graph output it reads

    @property
    def explainable(self) -> bool:
        """Grad-CAM follows the PyTorch network of weights.pt, whose embedding is EMBEDDING_OUTPUT: a
        head on an attribute tail's embedding (attribute_tail.py) has no gradient path there."""
        return self.embedding == EMBEDDING_OUTPUT

    def says(self, probability: float) -> str | None:
        """"yes" or "no" at the operating threshold; None for a head without one."""
        if self.threshold is None:
            return None
        return YES if probability >= self.threshold else NO

    def logit(self, embedding: np.ndarray) -> np.ndarray:
        return np.asarray(embedding, dtype=np.float64) @ self.weight + self.bias

    def probability(self, embedding: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logit(embedding), -60, 60)))

    def to_dict(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "target_precision": self.target_precision,
                "graph": self.graph, "embedding": self.embedding, **self.info, "bias": self.bias,
                "weight": [float(w) for w in self.weight]}

    @classmethod
    def from_dict(cls, d: dict) -> "AttributeHead":
        core = ("name", "threshold", "target_precision", "graph", "bias", "weight")
        missing = [k for k in core if k not in d]
        if missing:
            raise ValueError(f"attribute head is missing {', '.join(missing)}")
        threshold = None if d["threshold"] is None else float(d["threshold"])
        embedding = d.get("embedding", EMBEDDING_OUTPUT)
        if not isinstance(embedding, str):
            raise ValueError(f"attribute head's embedding must name a graph output, not {embedding!r}")
        return cls(check_attribute_name(d["name"], new=False), np.asarray(d["weight"], dtype=np.float64),
                   float(d["bias"]), threshold, float(d["target_precision"]), d["graph"],
                   {k: v for k, v in d.items() if k not in core + ("embedding",)}, embedding)


def load_attribute_heads(bundle_dir: Path, onnx_path: Path, subfolder: str = ATTRIBUTES_DIR) -> list[AttributeHead]:
    """The heads saved in bundle_dir/subfolder (attributes/, or also/ for the open-plan cues),
    each checked against the bundle's graph."""
    folder = bundle_dir / subfolder
    if not folder.is_dir():
        return []
    heads, fingerprint, outputs = [], None, None
    for f in sorted(folder.glob("*.json")):
        try:
            head = AttributeHead.from_dict(json.loads(f.read_text()))
        except (json.JSONDecodeError, ValueError, TypeError) as e:
            raise ValueError(f"{f}: not a valid attribute head ({e})") from None
        fingerprint = fingerprint or graph_fingerprint(onnx_path)
        if head.graph != fingerprint:
            raise ValueError(f"{f}: this head was trained on another network than {onnx_path} "
                             f"(graph {head.graph}, bundle {fingerprint}); train it again with "
                             + (f"`estatelens train-attribute {head.name} DATA --model {bundle_dir}`"
                                if subfolder == ATTRIBUTES_DIR else f"`python tools/add_also.py {bundle_dir} ...`"))
        if head.embedding != EMBEDDING_OUTPUT:
            outputs = outputs if outputs is not None else graph_outputs(onnx_path)
            if head.embedding not in outputs:
                raise ValueError(f"{f}: reads the graph output {head.embedding!r}, which {onnx_path} does not have "
                                 f"(outputs: {', '.join(outputs)})")
        heads.append(head)
    return heads


def graph_outputs(onnx_path: str | os.PathLike) -> list[str]:
    """The graph's output names, read by ONNX Runtime without optimising it (a tenth of a second;
    the light install has no `onnx` package)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    return [o.name for o in ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"]).get_outputs()]


def save_attribute_head(bundle_dir: Path, head: AttributeHead, subfolder: str = ATTRIBUTES_DIR) -> Path:
    folder = bundle_dir / subfolder
    folder.mkdir(exist_ok=True)
    path = folder / f"{head.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(head.to_dict(), indent=1))
    tmp.replace(path)
    return path


def has_embedding_output(onnx_path: str | os.PathLike) -> bool:
    return EMBEDDING_OUTPUT in graph_outputs(onnx_path)


def add_embedding_output(onnx_path: str | os.PathLike) -> bool:
    """Expose the embedding the room-type head reads as a second graph output, in place; True if
    the graph changed. For bundles exported before attributes existed: the network itself (and so
    every room-type probability) stays exactly as it was.

    The embedding is found by walking back from the probabilities through the element-wise tail
    (Softmax, the temperature Div) to the classifier's Gemm / MatMul and taking its input."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    if EMBEDDING_OUTPUT in [o.name for o in g.output]:
        return False
    producer = {out: n for n in g.node for out in n.output}
    tensor, head = g.output[0].name, None
    for _ in range(8):
        node = producer.get(tensor)
        if node is None:
            break
        if node.op_type in ("Gemm", "MatMul"):
            head = node
            break
        if node.op_type not in ("Softmax", "Div", "Mul", "Identity", "Cast"):
            break
        tensor = node.input[0]
    if head is None:
        raise ValueError(f"{onnx_path}: no linear classifier layer found before the output; "
                         f"this graph cannot carry attribute heads")
    weights = {i.name: i for i in g.initializer}
    w = weights.get(head.input[1])
    transposed = any(a.name == "transB" and a.i == 1 for a in head.attribute)
    width = (w.dims[1] if transposed else w.dims[0]) if w is not None else None
    g.node.append(helper.make_node("Identity", [head.input[0]], [EMBEDDING_OUTPUT], name="embedding_output"))
    g.output.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", width]))
    onnx.checker.check_model(model)
    tmp = Path(str(onnx_path) + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, onnx_path)
    return True
