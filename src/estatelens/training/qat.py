"""Quantisation-aware training: the trainable convolutions see int8 rounding while they learn.

`estatelens quantize` (quantize.py) rounds every convolution's weights per output channel (8 bits
in depthwise convolutions, 7 elsewhere) and the activations between them per tensor (uint8, range
from calibration photos). A network trained in float lands where that rounding moves some photos
across a class boundary; one trained with the same rounding in its forward pass (fake
quantisation, gradients passed straight through the rounding: Jacob et al. 2018) learns weights
that keep their answers after it.

`enable(module)` makes every Conv2d of `module` round its input activations and its weights on the
way through, with nothing added to the state dict; `disable` undoes it before the network is saved
or exported. Training must run in float32 (bfloat16 would move the rounded values off the grid;
TrainConfig refuses the two together). Per-channel symmetric weight scales do not change when batch normalisation is folded
into the convolution (each channel is scaled as a whole), so rounding the unfolded weights rounds
them as the exported graph will. Activation ranges follow an exponential moving average of each
batch's minimum and maximum (always spanning 0, as ONNX Runtime's uint8 calibration does).
"""
from __future__ import annotations

import types

import torch
from torch import nn


# ONNX Runtime's symmetric int8 weight ranges (quant_utils.get_qmin_qmax_for_qType): [-64, 64] with
# reduce_range (7 bits), [-127, 127] without; the scale is max|w| / QMAX per output channel.
QMAX_REDUCED, QMAX_FULL = 64, 127


def fake_quant_weight(w: torch.Tensor, qmax: int) -> torch.Tensor:
    """Symmetric per-output-channel rounding to the integers -qmax..qmax times max|w| / qmax, as
    ONNX Runtime quantises a convolution's weights, with a straight-through gradient."""
    scale = w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / qmax
    q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    return w + (q - w).detach()


class ActivationFakeQuant:
    """uint8 rounding of a tensor over [min, max] (both EMA-tracked while training, spanning 0)."""

    def __init__(self, momentum: float = 0.01):
        self.momentum, self.lo, self.hi = momentum, None, None

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        xf = x.detach().float()
        if training or self.lo is None:
            lo, hi = min(0.0, float(xf.min())), max(0.0, float(xf.max()))
            if self.lo is None:
                self.lo, self.hi = lo, hi
            else:
                self.lo += self.momentum * (lo - self.lo)
                self.hi += self.momentum * (hi - self.hi)
        scale = max(self.hi - self.lo, 1e-8) / 255.0
        zero = round(-self.lo / scale)
        q = (torch.clamp(torch.round(x.float() / scale) + zero, 0, 255) - zero) * scale
        return x + (q.to(x.dtype) - x).detach()


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    weight = fake_quant_weight(self.weight, QMAX_FULL if _is_depthwise(self) else QMAX_REDUCED)
    return self._conv_forward(self._qat_input(x, self.training), weight, self.bias)


def enable(module: nn.Module) -> int:
    """Fake quantisation in every Conv2d of `module`; returns how many."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and "_qat_input" not in m.__dict__:
            m._qat_input = ActivationFakeQuant()
            m.forward = types.MethodType(_forward, m)
            n += 1
    return n


def disable(module: nn.Module) -> None:
    """Plain float convolutions again (the weights were never changed, only rounded on the way)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and "_qat_input" in m.__dict__:
            del m.forward, m._qat_input
