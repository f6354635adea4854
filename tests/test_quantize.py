"""Int8 bundles: which weights keep 8 bits, and why that is safe on every CPU."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import stripes

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _qlinear_conv_error(group: int, k: int, weight_max: int, channels: int = 32) -> float:
    """Largest difference, in output steps, between ONNX Runtime's QLinearConv and the exact
    integer convolution, for large activations (200-255) and weights of magnitude weight_max."""
    import torch
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.integers(200, 256, size=(1, channels, 8, 8)).astype(np.uint8)
    w = rng.choice([-weight_max - 1, weight_max, weight_max - 5, 5 - weight_max],
                   size=(channels, channels // group, k, k)).astype(np.int8)
    exact = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                                       padding=k // 2, groups=group).numpy()
    y_scale = float(np.abs(exact).max() / 120)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (np.array(1.0, np.float32), "xs"), (np.array(0, np.uint8), "xz"), (w, "w"),
        (np.ones(channels, np.float32), "ws"), (np.zeros(channels, np.int8), "wz"),
        (np.array(y_scale, np.float32), "ys"), (np.array(128, np.uint8), "yz"))]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                            group=group, pads=[k // 2] * 4)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return float(np.abs((y.astype(float) - 128) - np.clip(np.round(exact / y_scale), -128, 127)).max())


def test_int8_convolutions_sum_exactly_in_the_ranges_quantize_uses():
    # Depthwise convolutions keep 8-bit weights: their kernel must not saturate on this CPU.
    assert _qlinear_conv_error(group=32, k=3, weight_max=127) <= 1
    assert _qlinear_conv_error(group=32, k=5, weight_max=127) <= 1
    # Every other convolution gets 7-bit weights, which cannot saturate 16-bit pair sums anywhere.
    assert _qlinear_conv_error(group=1, k=1, weight_max=63) <= 1
    assert _qlinear_conv_error(group=1, k=3, weight_max=63) <= 1


def _int8_conv_weights(path) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """{conv node name: (group, its int8 weights, those weights dequantised)} of a QDQ graph."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    out = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in dq and dq[node.input[1]].input[0] in inits:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            q, scale = inits[dq[node.input[1]].input[0]], inits[dq[node.input[1]].input[1]]
            out[node.name] = (group, q, q.astype(np.float32) * scale.reshape(-1, 1, 1, 1))
    return out


def test_depthwise_weights_keep_8_bits_and_the_rest_7(tmp_path):
    import torch

    from estatelens.bundle import load_bundle, save_bundle
    from estatelens.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
    from estatelens.quantize import depthwise_weights, quantize_bundle

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.ReLU6(),  # depthwise
        torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU6(),                        # pointwise
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
    src = save_bundle(tmp_path / "f.estatelens", net, ["horizontal", "vertical"],
                      Preprocessing(64, IMAGENET_MEAN, IMAGENET_STD), {"model": "tiny"})
    assert len(depthwise_weights(onnx.load(str(src.onnx_path)))) == 1
    photos = []
    for i in range(12):
        photos.append(tmp_path / f"{i}.jpg")
        stripes(("horizontal", "vertical")[i % 2], 64, seed=i).save(photos[-1])
    q = quantize_bundle(src, tmp_path / "q.estatelens", [str(p) for p in photos])
    assert q.info["quantization"]["full_range_weights"] == 1
    convs = _int8_conv_weights(q.onnx_path)
    assert sorted(group for group, _, _ in convs.values()) == [1, 1, 8]
    for group, w, _ in convs.values():
        peak = np.abs(w.astype(int)).max(axis=(1, 2, 3))  # per output channel (symmetric scales)
        if group > 1:
            assert (peak >= 120).all()  # the full 8-bit range
        else:
            assert (peak <= 64).all()
    # and the int8 graph still answers like the float one
    pf, pq = load_bundle(src.path).predict_files(photos), q.predict_files(photos)
    assert np.abs(pf - pq).max() < 0.1
    # quantisation-aware training rounds the weights exactly as this graph holds them
    from estatelens.training import qat

    torch_convs = sorted((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), key=lambda m: m.groups)
    graph_convs = sorted(convs.values(), key=lambda c: c[0])
    for conv, (group, _, dequantised) in zip(torch_convs, graph_convs):
        qmax = qat.QMAX_FULL if group > 1 else qat.QMAX_REDUCED
        rounded = qat.fake_quant_weight(conv.weight.detach(), qmax).numpy()
        assert np.allclose(rounded, dequantised, rtol=1e-5, atol=1e-7)


def test_quantisation_aware_training_rounds_on_the_way_and_leaves_the_network_float():
    import torch

    from estatelens.training import qat

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU6(),
                              torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.ReLU6(),
                              torch.nn.Conv2d(8, 4, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(4, 3, 16, 16)
    keys, before = list(net.state_dict()), net(x).detach()
    assert qat.enable(net) == 3
    out = net(x)
    assert not torch.equal(out, before) and torch.allclose(out, before, atol=0.05)
    out.sum().backward()  # gradients pass the rounding straight through
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    qat.disable(net)
    assert torch.equal(net(x).detach(), before) and list(net.state_dict()) == keys


def test_train_qat_writes_a_float_bundle_that_quantises(tmp_path):
    from conftest import make_stripes_dataset

    from estatelens.bundle import load_bundle
    from estatelens.cli import main

    data = make_stripes_dataset(tmp_path / "data", per_class=12, splits=True)
    assert main(["train", str(data), "--model", "roomnet", "--mode", "scratch", "--epochs", "2", "--qat",
                 "--image-size", "64", "--batch-size", "8", "--workers", "0", "--out", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    bundle = load_bundle(tmp_path / "run" / "model.estatelens")
    assert bundle.info["config"]["qat"] is True
    ops = {n.op_type for n in onnx.load(str(bundle.onnx_path)).graph.node}
    assert "Round" not in ops and "Conv" in ops  # the rounding was training's, not the graph's
