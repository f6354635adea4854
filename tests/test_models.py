"""Every registered model: forward and backward on a tiny input, right shape, no NaN, and the
gradient reaches every parameter (as timm's tests do)."""
from __future__ import annotations

import pytest
import torch

from estatelens.models import create_model, get_spec, list_models

# Smallest sizes the architectures accept (Inception's auxiliary head needs its 17x17 map).
TINY_SIZE = {"inception_v3": 299, "alexnet": 64, "vgg11": 32, "vgg16": 32}


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    size = TINY_SIZE.get(name, 64)
    x = torch.randn(2, 3, size, size)
    model.train()
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()
    loss = logits.sum() + (out[1].sum() if isinstance(out, tuple) else 0)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_imagenet_weights_load(name):
    model = create_model(name, num_classes=None, pretrained=True)
    n = sum(p.numel() for p in model.parameters())
    assert model.num_classes == 1000
    assert abs(n / 1e6 - {"efficientnet_lite0": 4.65, "efficientnet_lite1": 5.42,
                         "efficientnet_lite2": 6.09}[name]) < 0.01
    assert model.preprocessing.size == {"efficientnet_lite0": 224, "efficientnet_lite1": 240,
                                        "efficientnet_lite2": 260}[name]


def test_missing_pretrained_weights_give_a_clear_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="--weights PATH"):
        create_model("resnet18", 3, pretrained=True, weights=tmp_path / "absent.pth")


def test_local_weights_file_is_loaded(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("resnet18", 4, weights=tmp_path / "resnet18.pth")
    assert torch.equal(model.backbone.net.conv1.weight, reference.conv1.weight)
    assert model.num_classes == 4


@pytest.mark.parametrize("size", [64, 96, 160, 224, 250])
def test_roomnet_takes_any_input_size(size):
    model = create_model("roomnet", 5).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize("shape", [(4, 4), (5, 7), (6, 6), (13, 13), (3, 9)])
def test_exportable_adaptive_pool_equals_pytorchs(shape):
    from estatelens.models.registry import ExportableAdaptiveAvgPool2d

    x = torch.randn(2, 3, *shape)
    assert torch.allclose(ExportableAdaptiveAvgPool2d((6, 6))(x), torch.nn.functional.adaptive_avg_pool2d(x, (6, 6)),
                          atol=1e-6)


def test_alexnet_at_160_px_exports_to_onnx_with_the_same_outputs(tmp_path):
    import numpy as np

    from estatelens.bundle import export_onnx, onnx_session

    model = create_model("alexnet", 3).eval()
    x = torch.randn(2, 3, 160, 160)
    path = export_onnx(model, 160, tmp_path / "alexnet.onnx", softmax=False)
    out = onnx_session(path, 2).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        assert np.allclose(out, model(x).numpy(), atol=1e-4)


def test_inception_trains_below_its_auxiliary_heads_size():
    from estatelens.training.engine import _loss

    model = create_model("inception_v3", 3).train()
    y = torch.tensor([0, 2])
    logits, aux = model(torch.randn(2, 3, 160, 160))
    assert logits.shape == (2, 3) and aux is None
    loss, _ = _loss((logits, aux), y, 0.1)
    loss.backward()
    logits, aux = model(torch.randn(2, 3, 299, 299))
    assert aux.shape == (2, 3)  # at its own size the auxiliary head still trains
    import pickle

    import torchvision

    stock = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    assert {k.removeprefix("backbone.net.") for k in model.state_dict() if k.startswith("backbone.net.")} == \
        {k for k in stock.state_dict() if not k.startswith("fc.")}  # torchvision's files still load
    pickle.dumps(model)


def test_roomnet_outputs_are_unchanged_where_sizes_always_worked():
    import copy

    model = create_model("roomnet", 4).eval()
    floor = copy.deepcopy(model)
    for m in floor.modules():
        if isinstance(m, torch.nn.AvgPool2d):
            m.ceil_mode = False
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(model(x), floor(x))


def test_roomnet_is_under_one_megabyte():
    model = create_model("roomnet", 7)
    assert sum(p.numel() for p in model.parameters()) * 4 < 1_000_000


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="known models: .*efficientnet_lite0"):
        get_spec("resnet9000")


def test_split_lite_equals_whole():
    model = create_model("efficientnet_lite0", 3).eval()
    prefix, suffix = model.trunk_split(-6)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(suffix(prefix(x)), model(x), atol=1e-5)
    # a block index past the start clamps to the stem instead of wrapping around
    prefix, suffix = model.trunk_split(-100)
    assert prefix.stop == 0
    with torch.no_grad():
        assert torch.allclose(suffix(prefix(x)), model(x), atol=1e-5)
