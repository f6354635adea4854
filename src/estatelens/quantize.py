"""Int8 bundles: static post-training quantisation of a bundle's ONNX graph with ONNX Runtime.

Convolutions, residual additions and the ReLU6 clips run in int8 (weights per channel, activations
calibrated on real photos); the classifier layer, the temperature and the softmax stay in float,
so the probabilities keep their calibration instead of falling on a 1/255 grid. On 2 cores this
roughly doubles throughput (measured in benchmarks/results/tagging_speed.md).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .bundle import ModelBundle, commit_folder, load_bundle, staging_folder, write_json
from .data.images import PhotoError, read_photo
from .data.preprocess import decode_side, eval_array

# Quantising Clip and Relu as well lets ONNX Runtime fold ReLU6 into the convolution's output range;
# leaving them out puts a float clip between two quantised tensors and cost 1.5 points in our tests.
QUANTISED_OPS = ("Conv", "Add", "Clip", "Relu")
# 7-bit weights. With 8-bit ones, CPUs without VNNI (AVX2 only) add the uint8 x int8 products in
# pairs into saturating 16-bit sums, so the same int8 graph gives other answers there: the bundled
# model of 2026-12-01 scored 91.6 % on rooms-web/test on AVX-512 machines and 89.9 % on an AVX2 one.
# One bit less per weight leaves no room to saturate; ONNX Runtime's documented remedy.
REDUCE_RANGE = True
# ...except in depthwise convolutions (one filter per channel, EfficientNet's 3x3 and 5x5 ones),
# which keep all 8 bits: ONNX Runtime runs them with its own kernel, which sums in 32 bits rather
# than in saturating 16-bit pairs (tests/test_quantize.py checks it against exact integer sums on
# whatever CPU runs the tests; CPUs with VNNI do not saturate anyway), and their few weights per
# filter are where a lost bit hurts most.
FULL_RANGE_DEPTHWISE = True


def depthwise_weights(model) -> list[str]:
    """Names of the weight initializers of the depthwise convolutions of an ONNX model: one filter
    per channel (group above 1, equal to the input and to the output channels)."""
    inits = {i.name: i for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = inits[node.input[1]].dims  # (out channels, in channels / group, kh, kw)
        if group > 1 and dims[1] == 1 and dims[0] == group:
            names.append(node.input[1])
    return names


def quantize_bundle(bundle: ModelBundle | str | os.PathLike, out: str | os.PathLike,
                    calibration: Sequence[str], *, batch_size: int = 16, weights: str = "fp16") -> ModelBundle:
    """Write an int8 copy of `bundle` to `out`, calibrated on the photos `calibration` (a few
    hundred training photos spread over the classes is plenty).

    weights: "fp16" stores weights.pt in half precision (half the size; loading it into a float32
    model converts back), "keep" copies it as is, "none" leaves it out."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
    if weights not in ("fp16", "keep", "none"):
        raise ValueError(f"weights must be fp16, keep or none, not {weights!r}")
    if src.room_head is not None:
        raise ValueError(f"{src.path}: is an adapted bundle (room_head.json reads its graph's embedding); "
                         f"quantise the bundle first, then adapt the int8 copy")
    pre, side = src.preprocessing, decode_side(src.preprocessing)
    arrays = []
    for p in calibration:
        try:
            arrays.append(eval_array(read_photo(p, side)[0], pre))
        except PhotoError:
            continue
    if len(arrays) < 8:
        raise ValueError(f"quantisation needs at least 8 readable calibration photos, got {len(arrays)}")
    input_name = src.session().get_inputs()[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([np.stack(arrays[i:i + batch_size]) for i in range(0, len(arrays), batch_size)])

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {input_name: x}

    out, tmp = staging_folder(out)
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(src.onnx_path), str(prepared))
        full_range = depthwise_weights(onnx.load(str(prepared))) if REDUCE_RANGE and FULL_RANGE_DEPTHWISE else []
        overrides = {name: [{"axis": 0, "reduce_range": False}] for name in full_range}
        quantize_static(str(prepared), str(tmp / "model.onnx"), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(QUANTISED_OPS), reduce_range=REDUCE_RANGE,
                        extra_options={"TensorQuantOverrides": overrides} if overrides else None)
    if (src.path / "weights.pt").is_file() and weights != "none":
        if weights == "keep":
            shutil.copy2(src.path / "weights.pt", tmp / "weights.pt")
        else:
            import torch

            state = torch.load(src.path / "weights.pt", map_location="cpu", weights_only=True)
            torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, tmp / "weights.pt")
    # The new graph's embedding differs a little: the source's unusual-photo threshold and rehearsal
    # set do not carry over (tools/add_rehearsal.py makes them for the int8 copy).
    info = {k: v for k, v in src.info.items() if k != "ood"}
    method = "ONNX Runtime static QDQ, int8 weights per channel (7-bit range"
    method += ", 8-bit in depthwise convolutions), uint8 activations" if full_range else "), uint8 activations"
    info["quantization"] = {"method": method, "ops": list(QUANTISED_OPS), "calibration_photos": len(arrays),
                            "full_range_weights": len(full_range),
                            "source_model": str(src.path), "weights_pt": weights}
    bundle = ModelBundle(out, src.classes, pre, info)
    write_json(tmp / "bundle.json", bundle._manifest())
    commit_folder(tmp, out)
    return bundle


def float_bundle(bundle: ModelBundle | str | os.PathLike, out: str | os.PathLike) -> ModelBundle:
    """A float copy of an int8 bundle rebuilt from its weights.pt (half precision), to quantise
    again: the same network, classes, preprocessing and temperature; no heads, no rehearsal set."""
    from .bundle import save_bundle
    from .explain import load_torch_model

    src = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
    if src.room_head is not None:
        raise ValueError(f"{src.path}: is an adapted bundle; rebuild the bundle it was adapted from")
    model = load_torch_model(src).float()
    info = {k: v for k, v in src.info.items() if k not in ("ood", "quantization", "temperature", "estatelens_version")}
    info["rebuilt_from"] = str(src.path)
    return save_bundle(out, model, src.classes, src.preprocessing, info, temperature=float(src.info.get("temperature", 1.0)))


def pick_calibration(samples, n: int = 320) -> list[str]:
    """Up to `n` photo paths taken in turn from each class, so every class is represented."""
    by_class: dict[str, list[str]] = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s.path)
    picked: list[str] = []
    rounds = max((len(v) for v in by_class.values()), default=0)
    for i in range(rounds):
        for label in sorted(by_class):
            if i < len(by_class[label]) and len(picked) < n:
                picked.append(by_class[label][i])
    return picked
