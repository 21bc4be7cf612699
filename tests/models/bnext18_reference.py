"""An independent PyTorch BNext-18 for tests, written from the facts of the original's ``BNext18``.

Facts (read off ``hpi-xnor/BNext``'s ``src/birealnet.py`` and checked by running it):

* Stem: ImageNet form (1000 classes) ``conv1`` 7x7 stride 2 padding 3 (no bias), ``bn1``,
  max-pool 3x3 stride 2 padding 1; otherwise ``conv1`` 3x3 stride 1 padding 1, ``bn1``, no pool.
  No activation.
* ``layer0``..``layer3``: two basic blocks each, 64/128/256/512 channels; the first block of
  layers 1-3 has stride 2 and a ``downsample``: AvgPool2d(2, 2), float 1x1 conv (no bias), BN.
* Basic block = ``Attention`` (ELM-Attention, in -> out channels, the block's stride) then
  ``FFN`` (FFN-3x3, stride 1).
* Binary unit: ``move`` (bias 1xCx1x1) -> ``binary_activation`` (sign, STE |x| <= 1.5) ->
  ``binary_conv`` (3x3, padding 1; kernel ``sign(w)`` when its temperature is below **1e-5**,
  else ``clip(w / max(T, 1e-8), -1, 1)``; the latent weights are clamped in place to
  ``[-1.5, 1.5]`` on EVERY forward) -> ``norm1`` -> ``activation2`` (PReLU).
* Attention: ``r = activation1(x)`` then ``downsample(r)`` if any; ``mix = s * r + (1 - s) * y``;
  ``y = sigmoid-SE(mix) * y``; ``out = norm2(y * r) + r``. Its ``scale`` is clamped to [0, 1]
  only in training.
* FFN: ``mix = s * x + (1 - s) * y``; ``y = SE(mix) * y``; ``out = norm2(y) + x``. Its ``scale``
  is clamped to [0, 1] on every forward. Its ``activation1`` PReLU is built, never applied.
* Head: ``prelu`` (512), global average pool, ``fc``.

Quantizer helpers, ``LearnableBias``, ``HardSign`` and ``SqueezeExcite`` come from
:mod:`tests.torch_reference` (they are the same units as in BNext-T/S/M/L).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from tests.torch_reference import (
    WEIGHT_CLIP,
    HardBinaryConv,
    HardSign,
    LearnableBias,
    SqueezeExcite,
    _bn,
)

__all__ = ["THRESHOLD_18", "BinaryConv18", "Attention18", "Ffn18", "Block18", "TorchBNext18"]

THRESHOLD_18 = 1e-5


class BinaryConv18(HardBinaryConv):
    """3x3 binary conv with BNext-18's threshold and its clamp on every forward."""

    def binary_weight(self) -> torch.Tensor:
        t = self.temperature.reshape(-1)[0]
        if bool(t < THRESHOLD_18):
            return torch.sign(self.weight)
        return (self.weight / t.clamp(min=1e-8)).clamp(-1.0, 1.0)

    def forward(self, x):
        with torch.no_grad():
            self.weight.clamp_(-WEIGHT_CLIP, WEIGHT_CLIP)
        return F.conv2d(x, self.binary_weight(), stride=self.stride, padding=self.padding)


class _Unit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.move = LearnableBias(c_in)
        self.binary_activation = HardSign()
        self.binary_conv = BinaryConv18(c_in, c_out, 3, stride)
        self.norm1 = _bn(c_out)
        self.norm2 = _bn(c_out)
        self.activation1 = nn.PReLU(c_in, init=0.25)
        self.activation2 = nn.PReLU(c_out, init=0.25)

    def unit(self, x):
        x = self.binary_conv(self.binary_activation(self.move(x)))
        return self.activation2(self.norm1(x))


class Attention18(_Unit):
    """ELM-Attention of BNext-18 (optionally with the float downsample shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int, downsample: bool):
        super().__init__(c_in, c_out, stride)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(2, stride), nn.Conv2d(c_in, c_out, 1, bias=False), _bn(c_out)
            )
        self.se = SqueezeExcite(c_out)
        self.scale = nn.Parameter(torch.full((1, c_out, 1, 1), 0.5))

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.scale.clamp_(0.0, 1.0)
        r = self.activation1(x)
        if self.downsample is not None:
            r = self.downsample(r)
        y = self.unit(x)
        y = self.se(self.scale * r + (1.0 - self.scale) * y) * y
        return self.norm2(y * r) + r


class Ffn18(_Unit):
    """FFN-3x3 of BNext-18 (stride 1, channels kept)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 1)
        self.se = SqueezeExcite(channels)
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), 0.5))

    def forward(self, x):
        with torch.no_grad():
            self.scale.clamp_(0.0, 1.0)
        y = self.unit(x)
        y = self.se(self.scale * x + (1.0 - self.scale) * y) * y
        return self.norm2(y) + x


class Block18(nn.Module):
    """``Attention`` then ``FFN``."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.Attention = Attention18(c_in, c_out, stride, stride != 1 or c_in != c_out)
        self.FFN = Ffn18(c_out)

    def forward(self, x):
        return self.FFN(self.Attention(x))


class TorchBNext18(nn.Module):
    """BNext-18 with the original's state-dict keys; ImageNet stem iff ``num_classes == 1000``."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.imagenet = num_classes == 1000
        if self.imagenet:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = _bn(64)
        c_in = 64
        for i, c in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i}", nn.Sequential(Block18(c_in, c, stride), Block18(c, c, 1)))
            c_in = c
        self.prelu = nn.PReLU(512, init=0.25)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        if self.imagenet:
            x = F.max_pool2d(x, 3, 2, 1)
        for i in range(4):
            x = getattr(self, f"layer{i}")(x)
        x = self.prelu(x).mean(dim=(2, 3))
        return self.fc(x)
