"""An independent PyTorch BNext, written from the spec (/work/shared/bnext-facts.md), for tests.

It is the yardstick of the Keras implementation: same state-dict keys and shapes as the
official checkpoints (including the PReLUs that are built but never applied, BatchNorm's
``num_batches_tracked`` and both temperature buffers), the same training- and eval-mode
forward (NCHW, ``sign(0) = 0`` as in PyTorch), and runnable in float64 (``model.double()``).

Import it from the repository root (``tests/`` is a package)::

    from tests.torch_reference import TorchBNext, randomize_, save_like_original

    ref = TorchBNext(STAGE_CHANNELS["tiny"], num_classes=1000).double()
    randomize_(ref, seed=0, calibration_images=torch.randn(8, 3, 64, 64, dtype=torch.float64))
    save_like_original(ref, "ckpt.pth.tar", epoch=511)
    logits = ref.eval()(images)  # (N, classes)

Single sub-blocks (:class:`ElmAttention`, :class:`Ffn3x3`, :class:`Ffn1x1`) and whole blocks
(:class:`TorchBlock`) can be built and compared on their own.

Semantics that follow the original code on purpose (see the facts file):

* The kernel quantizer uses ``sign(w)`` when the kernel temperature ``T < 1e-7`` and
  ``clip(w / max(T, 1e-8), -1, 1)`` otherwise; the activation quantizer is ``sign(x)`` whatever its
  own temperature buffer holds. Both pass gradients straight through (the activation one only
  where ``|x| <= 1.5``).
* In training mode the latent binary weights are clamped in place to ``[-1.5, 1.5]`` and every
  recoupling ``scale`` to ``[0, 1]`` at each forward. In eval mode only the FFN-1x1 scales are
  clamped (the original clamps those in every forward); ELM-Attention and FFN-3x3 scales are used
  as stored.
* The stem PReLU, every FFN's ``activation1`` and the ``activation1`` of FFN-3x3 sub-blocks are
  built (they are in the checkpoint) but never applied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = [
    "STAGE_CHANNELS",
    "TEMPERATURE_THRESHOLD",
    "sign_ste",
    "progressive_weight",
    "LearnableBias",
    "HardSign",
    "HardBinaryConv",
    "SqueezeExcite",
    "ElmAttention",
    "Ffn3x3",
    "Ffn1x1",
    "TorchBlock",
    "Stem",
    "TorchBNext",
    "block_plan",
    "binary_convs",
    "randomize_",
    "calibrate_bn_",
    "save_like_original",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
]

STAGE_CHANNELS = {
    "tiny": [32, 64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024] * 2,
    "small": [48, 96] + [192] * 2 + [384] * 2 + [768] * 6 + [1536] * 2,
    "middle": [48, 96] + [192] * 4 + [384] * 4 + [768] * 8 + [1536] * 4,
    "large": [64, 128] + [256] * 4 + [512] * 4 + [1024] * 16 + [2048] * 4,
}

TEMPERATURE_THRESHOLD = 1e-7
WEIGHT_CLIP = 1.5
ACTIVATION_CLIP = 1.5
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
SE_RATIO = 8


# --------------------------------------------------------------------------------------------
# Quantizers
# --------------------------------------------------------------------------------------------
class _SignSTE(torch.autograd.Function):
    """Forward ``sign(x)`` (``sign(0) = 0``); gradient 1 where ``|x| <= clip``, else 0."""

    @staticmethod
    def forward(ctx, x, clip):
        ctx.save_for_backward(x)
        ctx.clip = clip
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= ctx.clip).to(grad.dtype), None


def sign_ste(x: torch.Tensor, clip: float = ACTIVATION_CLIP) -> torch.Tensor:
    """BNext's activation binarizer: exact ``sign`` forward, clipped straight-through backward."""
    return _SignSTE.apply(x, clip)


class _ProgressiveWeight(torch.autograd.Function):
    """``sign(w)`` if ``T < 1e-7`` else ``clip(w / max(T, 1e-8), -1, 1)``; identity gradient."""

    @staticmethod
    def forward(ctx, w, temperature):
        if bool(temperature.reshape(-1)[0] < TEMPERATURE_THRESHOLD):
            return torch.sign(w)
        return (w / temperature.clamp(min=1e-8)).clamp_(-1.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def progressive_weight(w: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """BNext's kernel binarizer (see :class:`_ProgressiveWeight`)."""
    return _ProgressiveWeight.apply(w, temperature)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
class LearnableBias(nn.Module):
    """``move``: a per-channel additive bias of shape ``(1, C, 1, 1)``, initialised to 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return x + self.bias


class HardSign(nn.Module):
    """``binary_activation``: ``sign(x)``; its ``temperature`` buffer leaves the forward alone."""

    def __init__(self):
        super().__init__()
        self.register_buffer("temperature", torch.ones(1))

    def forward(self, x):
        return sign_ste(x, ACTIVATION_CLIP)


class HardBinaryConv(nn.Module):
    """``binary_conv``: k x k convolution with progressive binary weights, zero padding k // 2."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, kernel_size, kernel_size).normal_(0.0, 0.001)
        )
        self.register_buffer("temperature", torch.ones(1))

    def binary_weight(self) -> torch.Tensor:
        """The weight the convolution uses (in ``[-1, 1]``)."""
        return progressive_weight(self.weight, self.temperature)

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.weight.clamp_(-WEIGHT_CLIP, WEIGHT_CLIP)
        return F.conv2d(x, self.binary_weight(), stride=self.stride, padding=self.padding)


class SqueezeExcite(nn.Module):
    """``se``: avg pool -> 1x1 conv C->C/8 (bias) -> ReLU -> 1x1 conv C/8->C (bias) -> sigmoid."""

    def __init__(self, channels: int, ratio: int = SE_RATIO):
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // ratio, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(channels // ratio, channels, kernel_size=1),
        )

    def forward(self, x):
        return torch.sigmoid(self.se(x))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class _SubBlock(nn.Module):
    """The binary unit and recoupling parameters shared by the three sub-block kinds.

    Module registration order reproduces the official state-dict key order.
    """

    #: whether the recoupling scale is clamped to [0, 1] in eval mode too (FFN-1x1 only).
    clamp_scale_in_eval = False

    def __init__(self, channels: int, kernel_size: int, stride: int, info_recoupling: bool):
        super().__init__()
        self.channels = channels
        self.stride = stride
        self.info_recoupling = info_recoupling
        self.move = LearnableBias(channels)
        self.binary_activation = HardSign()
        self.binary_conv = HardBinaryConv(channels, channels, kernel_size, stride)
        self.norm1 = _bn(channels)
        self.norm2 = _bn(channels)
        self.activation1 = nn.PReLU(channels, init=0.25)
        self.activation2 = nn.PReLU(channels, init=0.25)
        if info_recoupling:
            self.se = SqueezeExcite(channels)
            self.scale = nn.Parameter(torch.full((1, channels, 1, 1), 0.5))

    def _pool(self, x):
        return F.avg_pool2d(x, 2, 2) if self.stride == 2 else x

    def binary_unit(self, x):
        """``move -> sign -> binary conv -> norm1 -> activation2``."""
        x = self.move(x)
        x = self.binary_activation(x)
        x = self.binary_conv(x)
        x = self.norm1(x)
        return self.activation2(x)

    def recouple(self, shortcut, y):
        """``y * SE(gamma * shortcut + (1 - gamma) * y)``."""
        if self.training or self.clamp_scale_in_eval:
            with torch.no_grad():
                self.scale.clamp_(0.0, 1.0)
        mix = self.scale * shortcut + (1.0 - self.scale) * y
        return self.se(mix) * y


class ElmAttention(_SubBlock):
    """ELM-Attention ("scale"): ``out = norm2(recouple(unit(x)) * r) + r``, ``r = pool(PReLU(x))``.

    Args:
        channels: input = output channels.
        stride: 1 or 2 (2x2 average pooling of the residual and shortcut when 2).
        info_recoupling: the paper's information-recoupling switch.
    """

    def __init__(self, channels: int, stride: int = 1, info_recoupling: bool = True):
        super().__init__(channels, 3, stride, info_recoupling)

    def forward(self, x):
        residual = self._pool(self.activation1(x))
        y = self.binary_unit(x)
        if self.info_recoupling:
            y = self.recouple(self._pool(x), y)
        y = self.norm2(y * residual)
        return y + residual


class Ffn3x3(_SubBlock):
    """FFN-3x3 ("bias" mode): ``out = norm2(recouple(unit(x))) + pool(x)``.

    Without recoupling ``norm2`` is skipped. ``activation1`` is built but unused.

    Args:
        channels: input = output channels.
        stride: 1 or 2.
        info_recoupling: the paper's information-recoupling switch.
    """

    def __init__(self, channels: int, stride: int = 1, info_recoupling: bool = True):
        super().__init__(channels, 3, stride, info_recoupling)

    def forward(self, x):
        residual = self._pool(x)
        y = self.binary_unit(x)
        if self.info_recoupling:
            y = self.norm2(self.recouple(residual, y))
        return y + residual


class Ffn1x1(_SubBlock):
    """FFN-1x1: ``out = norm2(recouple(unit_1x1(x))) + x``; the scale is clamped in every forward.

    Args:
        channels: input = output channels.
        info_recoupling: the paper's information-recoupling switch.
    """

    clamp_scale_in_eval = True

    def __init__(self, channels: int, info_recoupling: bool = True):
        super().__init__(channels, 1, 1, info_recoupling)

    def forward(self, x):
        y = self.binary_unit(x)
        if self.info_recoupling:
            y = self.norm2(self.recouple(x, y))
        return y + x


class TorchBlock(nn.Module):
    """One BNext block ``feature.i``: first sub-block, then ``FFN`` or ``FFN_1``/``FFN_2``.

    The first sub-block is named ``Attention`` (ELM-Attention in "scale" mode, FFN-3x3 in "bias"
    mode), or ``FFN_3x3`` when ELM-Attention is switched off (as the original's ablation names it).

    Args:
        in_channels: C.
        out_channels: C or 2C.
        stride: 1 or 2.
        mode: "scale" or "bias".
        elm_attention: ELM-Attention switch.
        info_recoupling: information-recoupling switch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        mode: str,
        elm_attention: bool = True,
        info_recoupling: bool = True,
    ):
        super().__init__()
        if out_channels not in (in_channels, 2 * in_channels):
            raise ValueError(f"block maps C -> C or 2C, not {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        if not elm_attention:
            self.first_name = "FFN_3x3"
            first = Ffn3x3(in_channels, stride, info_recoupling)
        else:
            self.first_name = "Attention"
            cls = ElmAttention if mode == "scale" else Ffn3x3
            first = cls(in_channels, stride, info_recoupling)
        setattr(self, self.first_name, first)
        if in_channels == out_channels:
            self.FFN = Ffn1x1(in_channels, info_recoupling)
        else:
            self.FFN_1 = Ffn1x1(in_channels, info_recoupling)
            self.FFN_2 = Ffn1x1(in_channels, info_recoupling)

    def forward(self, x):
        x = getattr(self, self.first_name)(x)
        if self.in_channels == self.out_channels:
            return self.FFN(x)
        return torch.cat([self.FFN_1(x), self.FFN_2(x)], dim=1)


class Stem(nn.Module):
    """``feature.0``: 3x3 conv (no bias, padding 1) and BatchNorm; ``prelu`` is built, unused."""

    def __init__(self, out_channels: int, stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, out_channels, 3, stride, 1, bias=False)
        self.bn1 = _bn(out_channels)
        self.prelu = nn.PReLU(out_channels, init=0.25)

    def forward(self, x):
        return self.bn1(self.conv1(x))


def block_plan(stage_channels: Sequence[int]):
    """``[(i, c_in, c_out, stride, mode), ...]`` for blocks 1..n-1, as the spec defines them."""
    plan = []
    for i in range(1, len(stage_channels)):
        c_in, c_out = stage_channels[i - 1], stage_channels[i]
        if i == 1:
            stride, mode = 1, "bias"
        else:
            stride = 2 if (c_in != c_out and c_out != stage_channels[1]) else 1
            mode = "scale" if i % 2 == 0 else "bias"
        plan.append((i, c_in, c_out, stride, mode))
    return plan


class TorchBNext(nn.Module):
    """The whole network, NCHW: ``feature`` (stem + blocks), ``prelu``, average pool, ``fc``.

    Args:
        stage_channels: stem channels followed by each block's output channels.
        num_classes: classifier width.
        elm_attention: ELM-Attention switch.
        info_recoupling: information-recoupling switch.
        stem_stride: 2 for ImageNet, 1 for CIFAR-sized inputs.
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        num_classes: int = 1000,
        elm_attention: bool = True,
        info_recoupling: bool = True,
        stem_stride: int = 2,
    ):
        super().__init__()
        self.stage_channels = list(stage_channels)
        self.feature = nn.ModuleList([Stem(stage_channels[0], stem_stride)])
        for _, c_in, c_out, stride, mode in block_plan(stage_channels):
            self.feature.append(
                TorchBlock(c_in, c_out, stride, mode, elm_attention, info_recoupling)
            )
        self.prelu = nn.PReLU(stage_channels[-1], init=0.25)
        self.fc = nn.Linear(stage_channels[-1], num_classes)

    def features(self, x):
        """Output of the last block (before the head's PReLU)."""
        for block in self.feature:
            x = block(x)
        return x

    def forward(self, x):
        x = self.prelu(self.features(x))
        x = x.mean(dim=(2, 3))
        return self.fc(x)


# --------------------------------------------------------------------------------------------
# Randomization, BN calibration, saving
# --------------------------------------------------------------------------------------------
def binary_convs(model: nn.Module):
    """``[(name, HardBinaryConv), ...]`` in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, HardBinaryConv)]


#: Kernel temperatures used by ``randomize_(temperatures="mixed")``: at or above the threshold
#: (clip(w / T) regime, including the float32 value nearest 1e-7 itself) and below it (sign).
SOFT_TEMPERATURES = (1.0, 0.9, 0.5, 0.9**20, 0.9**60, 0.9**152, float(np.float32(1e-7)))
HARD_TEMPERATURES = (0.9**153, 0.9**200, 1e-9, 0.0)


def randomize_(
    model: nn.Module,
    seed: int = 0,
    temperatures: str = "mixed",
    calibration_images: torch.Tensor | None = None,
    scale_range: tuple[float, float] = (0.0, 1.0),
) -> nn.Module:
    """Randomize every parameter and buffer of a reference model in place (returns the model).

    Binary weights ~ U(-1.5, 1.5) (a few per tensor put near 0), move biases
    ~ N(0, 0.2), recoupling scales ~ U(``scale_range``), PReLU slopes ~ U(-0.3, 0.8),
    BN gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2), running mean ~ N(0, 0.2), running var
    ~ U(0.5, 2), SE convs and the classifier ~ N(0, 1/sqrt(fan_in)), stem conv ~ N(0, 0.3),
    ``num_batches_tracked`` random, activation temperatures ~ U(0.001, 1].

    Args:
        model: a :class:`TorchBNext` or any module made of this file's layers.
        seed: seed of the generator (the result is deterministic).
        temperatures: kernel temperatures: ``"mixed"`` (drawn from both regimes, each regime
            guaranteed to occur when there are at least two binary convs), ``"soft"`` (all
            ``>= 1e-7``), ``"hard"`` (all ``< 1e-7``) or ``"ones"``.
        calibration_images: if given (NCHW, the model's dtype), the BatchNorm running statistics
            are then set to the batch statistics of these images (one train-mode forward with
            momentum 1), so activations stay of order 1 through deep networks; the model is
            returned in eval mode with momentum restored.
        scale_range: range of the recoupling scales (go outside [0, 1] to check clamping).
    """
    if temperatures not in ("mixed", "soft", "hard", "ones"):
        raise ValueError(f"temperatures must be mixed/soft/hard/ones, not {temperatures!r}")
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def uniform(t, lo, hi):
        t.uniform_(lo, hi, generator=gen)

    def normal(t, std, mean=0.0):
        t.normal_(mean, std, generator=gen)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, HardBinaryConv):
                uniform(module.weight, -WEIGHT_CLIP, WEIGHT_CLIP)
                flat = module.weight.view(-1)
                idx = torch.randint(0, flat.numel(), (4,), generator=gen)
                flat[idx] = flat[idx] * 1e-8  # weights near 0: clip(w/T) far from sign there
            elif isinstance(module, HardSign):
                uniform(module.temperature, 1e-3, 1.0)
            elif isinstance(module, LearnableBias):
                normal(module.bias, 0.2)
            elif isinstance(module, nn.PReLU):
                uniform(module.weight, -0.3, 0.8)
            elif isinstance(module, nn.BatchNorm2d):
                uniform(module.weight, 0.5, 1.5)
                normal(module.bias, 0.2)
                normal(module.running_mean, 0.2)
                uniform(module.running_var, 0.5, 2.0)
                module.num_batches_tracked.fill_(int(rng.integers(1, 10**6)))
            elif isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                normal(module.weight, 0.3 if module.in_channels == 3 else 1 / math.sqrt(fan_in))
                if module.bias is not None:
                    normal(module.bias, 0.2)
            elif isinstance(module, nn.Linear):
                normal(module.weight, 1 / math.sqrt(module.in_features))
                normal(module.bias, 0.2)
            if isinstance(module, _SubBlock) and module.info_recoupling:
                uniform(module.scale, *scale_range)

        convs = binary_convs(model)
        if temperatures == "ones":
            values = [1.0] * len(convs)
        elif temperatures == "soft":
            values = [SOFT_TEMPERATURES[rng.integers(len(SOFT_TEMPERATURES))] for _ in convs]
        elif temperatures == "hard":
            values = [HARD_TEMPERATURES[rng.integers(len(HARD_TEMPERATURES))] for _ in convs]
        else:
            pool = SOFT_TEMPERATURES + HARD_TEMPERATURES
            values = [pool[rng.integers(len(pool))] for _ in convs]
            if len(convs) >= 2:
                first, second = rng.choice(len(convs), size=2, replace=False)
                values[first] = SOFT_TEMPERATURES[rng.integers(len(SOFT_TEMPERATURES))]
                values[second] = HARD_TEMPERATURES[rng.integers(len(HARD_TEMPERATURES))]
        for (_, conv), value in zip(convs, values, strict=True):
            # The checkpoints hold float32 buffers: round through float32 so that float32 and
            # float64 copies of the model agree on the regime.
            conv.temperature.fill_(float(np.float32(value)))

    if calibration_images is not None:
        calibrate_bn_(model, calibration_images)
    return model


def calibrate_bn_(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to its batch statistics on ``images``.

    Runs one train-mode forward with momentum 1 (so it also applies the train-mode in-place
    clamps of weights and scales), restores the momentum and returns the model in eval mode.
    ``num_batches_tracked`` keeps its value.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(images)
    for m, (momentum, tracked) in zip(bns, saved, strict=True):
        m.momentum = momentum
        m.num_batches_tracked.copy_(tracked)
    return model.eval()


def save_like_original(
    model: nn.Module,
    path,
    epoch: int = 511,
    best_top1_acc: float = 72.4,
    wrap_module: bool = True,
    with_optimizer_state: bool = False,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Save ``model`` the way the official training script does (``torch.save`` of a dict).

    The dict has ``epoch``, training curves, ``state_dict`` (keys prefixed ``module.``, as from
    DistributedDataParallel), ``best_top1_acc``, ``optimizer`` (an AdamW state dict),
    ``temp`` and ``alpha``, like ``train_assistant_group_amp.py``'s checkpoints.

    Args:
        model: the reference model (any dtype; tensors are saved as ``dtype``, float32 as in the
            official files; integer buffers keep their dtype).
        path: file to write.
        epoch: the ``epoch`` entry.
        best_top1_acc: the ``best_top1_acc`` entry (a tensor, as the original's accuracy meters
            produce).
        wrap_module: prefix state-dict keys with ``module.``.
        with_optimizer_state: take one AdamW step on a copy first so that the optimizer state
            holds ``exp_avg``/``exp_avg_sq`` tensors (extra storages a lazy reader must skip).
        dtype: floating dtype of the saved state dict.

    Returns:
        The dict that was saved.
    """
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            value = value.to(dtype)  # no copy when already of that dtype
        state[("module." if wrap_module else "") + key] = value
    params = [p for p in model.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-3)
    opt_state = optimizer.state_dict()
    if with_optimizer_state:
        opt_state["state"] = {
            i: {
                "step": torch.tensor(float(epoch)),
                "exp_avg": torch.zeros_like(p, dtype=dtype),
                "exp_avg_sq": torch.full_like(p, 1e-6, dtype=dtype),
            }
            for i, p in enumerate(params)
        }
    curve = [float(v) for v in np.linspace(10.0, 70.0, 5)]
    checkpoint = {
        "epoch": epoch,
        "train_loss": [3.0, 2.5, 2.0, 1.8, 1.7],
        "train_top1": curve,
        "train_top5": curve,
        "test_loss": [2.0, 1.5, 1.2, 1.1, 1.0],
        "test_top1": [torch.tensor(v) for v in curve],
        "test_top5": curve,
        "state_dict": state,
        "best_top1_acc": torch.tensor(best_top1_acc),
        "optimizer": opt_state,
        "temp": [0.9**e for e in range(5)],
        "alpha": 0.5,
    }
    torch.save(checkpoint, str(path))
    return checkpoint


# --------------------------------------------------------------------------------------------
# Layout helpers
# --------------------------------------------------------------------------------------------
def nchw_to_nhwc(x) -> np.ndarray:
    """Torch NCHW tensor (or array) -> numpy NHWC."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def nhwc_to_nchw(x, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Numpy NHWC array -> torch NCHW tensor of ``dtype``."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(x), (0, 3, 1, 2)))).to(
        dtype
    )
