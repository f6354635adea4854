"""An adapted room-type head: the bundle's room-type probabilities computed from its embedding.

`estatelens adapt` teaches a bundle a new market by refitting only the linear layer that reads the
pooled embedding (see training/adapt.py). The network, and so the embedding, stays byte for byte
what it was: every attribute head keeps working, and tagging costs one (N, D) x (D, C) product more.
The head is stored as `room_head.json` in the bundle; where it exists, `ModelBundle.run_batch`
gives its probabilities instead of the graph's own first output.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOM_HEAD_FILE = "room_head.json"


@dataclass
class RoomHead:
    """p(class | photo) = softmax((embedding @ weight.T + bias) / temperature)."""

    classes: list[str]
    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    temperature: float
    graph: str  # graph_fingerprint of the model.onnx whose embedding it reads
    info: dict = field(default_factory=dict)

    def logits(self, embedding: np.ndarray) -> np.ndarray:
        return np.asarray(embedding, dtype=np.float32) @ self.weight.T.astype(np.float32) + self.bias.astype(np.float32)

    def probabilities(self, embedding: np.ndarray) -> np.ndarray:
        z = self.logits(embedding) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict:
        return {"classes": self.classes, "temperature": self.temperature, "graph": self.graph, **self.info,
                "bias": [float(b) for b in self.bias], "weight": [[float(w) for w in row] for row in self.weight]}

    @classmethod
    def from_dict(cls, d: dict) -> "RoomHead":
        core = ("classes", "temperature", "graph", "bias", "weight")
        missing = [k for k in core if k not in d]
        if missing:
            raise ValueError(f"room head is missing {', '.join(missing)}")
        weight, bias = np.asarray(d["weight"], dtype=np.float32), np.asarray(d["bias"], dtype=np.float32)
        if weight.ndim != 2 or weight.shape[0] != len(d["classes"]) or bias.shape != (len(d["classes"]),):
            raise ValueError(f"room head: weight {weight.shape} and bias {bias.shape} do not fit "
                             f"{len(d['classes'])} classes")
        return cls(list(d["classes"]), weight, bias, float(d["temperature"]), d["graph"],
                   {k: v for k, v in d.items() if k not in core})


def load_room_head(bundle_dir: Path, onnx_path: Path) -> RoomHead | None:
    """The bundle's adapted head, or None; refused when it was fitted on another network."""
    from .attributes import graph_fingerprint

    path = Path(bundle_dir) / ROOM_HEAD_FILE
    if not path.is_file():
        return None
    try:
        head = RoomHead.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a valid room head ({e})") from None
    if head.graph != graph_fingerprint(onnx_path):
        raise ValueError(f"{path}: was fitted on another network than {onnx_path}; adapt the bundle again")
    return head


def save_room_head(bundle_dir: Path, head: RoomHead) -> Path:
    path = Path(bundle_dir) / ROOM_HEAD_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(head.to_dict()))
    os.replace(tmp, path)
    return path
