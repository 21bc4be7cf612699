"""Logit parity of larq_bnext against the ORIGINAL PyTorch BNext code, in float64.

For each size (T/S/M/L) the script

1. builds the original model (``src/bnext.py`` of a checkout of hpi-xnor/BNext, imported with
   tiny stand-ins for the ``timm``/``torchinfo``/``einops`` helpers it imports but never uses,
   written to a temporary directory at run time) with 1000 classes;
2. randomises every parameter: binary kernels ~ U(-1.5, 1.5) (the training clamp), ``move``
   biases, PReLU slopes, BatchNorm affine parameters, squeeze-excitation convolutions, the
   classifier, recoupling ``scale`` ~ U(0, 1); kernel temperatures cycle over the three regimes
   ``1``, ``0.3`` (both ``clip(w / T, -1, 1)``) and ``1e-9`` (``sign(w)``) across the binary
   layers, the activation temperatures likewise;
3. plants exact zeros: ``--zeros`` kernel weights in every sign-regime layer and, unless
   ``--no-zero_activations``, one stem channel that block 1's first binary activation sees as
   exact zeros (see ``_plant_zero_activation``);
4. takes BatchNorm statistics from data: forward passes in training mode on random images
   (cumulative average), then switches to evaluation;
5. saves a checkpoint the way the original training script does (``torch.save`` of a dict with
   ``epoch``, ``state_dict`` with ``module.``-prefixed keys, ``optimizer``, curves...), with
   float32 tensors as training writes them;
6. loads it with ``larq_bnext.BNext{T,S,M,L}(weights=path)`` under
   ``tf.keras.backend.set_floatx("float64")`` and compares the logits of both models, in float64
   (the original is run with ``model.double()`` on the same float32-representable values), on
   the same random images.

    python benchmarks/original/parity_models.py --original /work/orig/BNext
    python benchmarks/original/parity_models.py --original PATH --sizes T,S --image_size 224

Prints, per size: relative L2 distance of the logits, max abs difference, top-1 agreement,
the number of planted zero weights (and those in the checkpoint), and the times.
BNext-L in float64 needs about 10 GB of memory. The models are fully convolutional; a small
input (the default 2 images of 64x64) keeps the float64 forward passes cheap.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

SIZES = {"T": "tiny", "S": "small", "M": "middle", "L": "large"}
#: Kernel / activation temperatures cycled over the binary layers: clip regime (1, 0.3) and
#: sign regime (below 1e-7).
TEMPERATURES = (1.0, 0.3, 1e-9)

_STUBS = {
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/layers.py": """
        def trunc_normal_(tensor, *args, **kwargs):
            raise NotImplementedError("stand-in: not used by BNext")

        class DropPath:
            def __init__(self, *args, **kwargs):
                raise NotImplementedError("stand-in: not used by BNext")
        """,
    "torchinfo.py": """
        def summary(*args, **kwargs):
            raise NotImplementedError("stand-in: not used by BNext")
        """,
    "einops.py": """
        def rearrange(*args, **kwargs):
            raise NotImplementedError("stand-in: not used by BNext")
        """,
}


def import_original(original: str, stub_dir: str):
    """Import the original ``bnext`` module, its unused imports stood in by stubs."""
    src = os.path.join(original, "src")
    if not os.path.isfile(os.path.join(src, "bnext.py")):
        raise SystemExit(f"{src}/bnext.py not found: pass --original <checkout of hpi-xnor/BNext>.")
    for rel, text in _STUBS.items():
        path = os.path.join(stub_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
    sys.path[:0] = [stub_dir, src]
    return importlib.import_module("bnext")


def _modules_of(model, name):
    return [m for m in model.modules() if type(m).__name__ == name]


def randomize(model, generator, zeros_per_layer: int):
    """Randomise ``model`` in place (see the module docstring); returns planted-zero counts."""
    import torch

    def uniform(t, low, high):
        with torch.no_grad():
            t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) * (high - low) + low)

    for name, p in model.named_parameters():
        if name.endswith("binary_conv.weight"):
            uniform(p, -1.5, 1.5)
        elif name.endswith(".scale"):
            uniform(p, 0.0, 1.0)
        elif "norm" in name or "bn1" in name:
            uniform(p, 0.5, 1.5) if name.endswith("weight") else uniform(p, -0.5, 0.5)
        elif "activation" in name or "prelu" in name:
            uniform(p, -0.5, 0.5)
        elif name.endswith("move.bias"):
            uniform(p, -0.3, 0.3)
        else:  # stem conv, SE convs and biases, classifier
            fan_in = p[0].numel() if p.dim() > 1 else 4
            uniform(p, -((3.0 / fan_in) ** 0.5), (3.0 / fan_in) ** 0.5)

    planted = 0
    convs = _modules_of(model, "HardBinaryConv")
    signs = _modules_of(model, "HardSign")
    for i, conv in enumerate(convs):
        conv.temperature.fill_(TEMPERATURES[i % len(TEMPERATURES)])
    for i, act in enumerate(signs):
        act.temperature.fill_(TEMPERATURES[(i + 1) % len(TEMPERATURES)])
    for conv in convs:
        if float(conv.temperature) < 1e-7 and zeros_per_layer:
            flat = conv.weight.data.view(-1)
            idx = torch.randperm(flat.numel(), generator=generator)[:zeros_per_layer]
            flat[idx] = 0.0
            planted += len(idx)
    return planted


def _plant_zero_activation(model):
    """Make block 1's first binary activation see exact zeros on stem channel 0.

    A zero stem kernel gives a zero convolution output; its BatchNorm statistics are then 0,
    so in evaluation the channel is exactly the BatchNorm shift ``beta``; block 1's first
    ``move`` bias is set to ``-beta``, so the first binary activation sees exact zeros there.
    Called after the statistics are taken.
    """
    import torch

    stem = model.feature[0]
    block1 = model.feature[1].Attention
    with torch.no_grad():
        assert float(stem.conv1.weight[0].abs().sum()) == 0.0
        stem.bn1.running_mean[0] = 0.0
        beta = stem.bn1.bias[0].item()
        block1.move.bias[0, 0, 0, 0] = -beta


def take_batchnorm_statistics(model, images, passes: int):
    """Cumulative BatchNorm statistics from ``passes`` training-mode forwards, then eval()."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for chunk in images.chunk(passes):
            model(chunk)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def save_like_training_script(model, path, epoch=511):
    """``torch.save`` the dict the original's training script writes (DDP ``module.`` keys)."""
    import torch

    state = {"module." + k: v.detach().float().clone() for k, v in model.state_dict().items()}
    torch.save(
        {
            "epoch": epoch,
            "train_loss": [2.0],
            "train_top1": [50.0],
            "train_top5": [75.0],
            "test_loss": [1.5],
            "test_top1": [60.0],
            "test_top5": [80.0],
            "state_dict": state,
            "best_top1_acc": 60.0,
            "optimizer": {"state": {}, "param_groups": []},
            "temp": 1e-9,
            "alpha": 0.5,
        },
        path,
    )


def run_size(bnext, letter, args, workdir):
    import numpy as np
    import tensorflow as tf
    import torch

    import larq_bnext

    size = SIZES[letter]
    gen = torch.Generator().manual_seed(args.seed + ord(letter))
    t0 = time.perf_counter()
    model = bnext.BNext(num_classes=1000, size=size).double()
    stem = model.feature[0]
    planted = randomize(model, gen, args.zeros)
    if args.zero_activations:
        with torch.no_grad():
            stem.conv1.weight[0].zero_()
    calib = torch.rand(
        (args.calibration_images, 3, args.image_size, args.image_size),
        generator=gen,
        dtype=torch.float64,
    )
    calib = (calib - 0.45) / 0.25
    take_batchnorm_statistics(model, calib, args.calibration_passes)
    if args.zero_activations:
        _plant_zero_activation(model)
    # The checkpoint holds float32 tensors (as training writes them): run the original on
    # exactly those values, in float64.
    model.float().double().eval()
    ckpt_zeros = sum(
        int((m.weight == 0).sum())
        for m in _modules_of(model, "HardBinaryConv")
        if m.temperature < 1e-7
    )
    images = torch.rand(
        (args.images, 3, args.image_size, args.image_size), generator=gen, dtype=torch.float64
    )
    images = (images - 0.45) / 0.25
    with torch.no_grad():
        zero_acts = int((model.feature[1].Attention.move(model.feature[0](images)) == 0).sum())
        ref = model(images).numpy()
    path = os.path.join(workdir, f"bnext_{size}.pth.tar")
    save_like_training_script(model, path)
    del model
    gc.collect()
    t_torch = time.perf_counter() - t0

    t0 = time.perf_counter()
    builder = getattr(larq_bnext, f"BNext{letter}")
    keras_model = builder(
        weights=path,
        input_shape=(args.image_size, args.image_size, 3),
        classifier_activation=None,
    )
    got = keras_model(tf.constant(images.numpy().transpose(0, 2, 3, 1)), training=False).numpy()
    dtype = keras_model.outputs[0].dtype
    del keras_model
    tf.keras.backend.clear_session()
    gc.collect()
    os.remove(path)
    t_keras = time.perf_counter() - t0

    rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    return {
        "size": f"BNext-{letter}",
        "keras_dtype": str(dtype),
        "images": f"{args.images}x{args.image_size}x{args.image_size}",
        "relative_l2": rel,
        "max_abs": float(np.max(np.abs(got - ref))),
        "logit_rms": float(np.sqrt(np.mean(ref**2))),
        "top1_agreement": float(np.mean(got.argmax(-1) == ref.argmax(-1))),
        "planted_zero_weights": planted,
        "zero_weights_in_sign_layers": ckpt_zeros,
        "zero_activations_block1": zero_acts,
        "seconds_original": round(t_torch, 1),
        "seconds_keras": round(t_keras, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="checkout of hpi-xnor/BNext")
    parser.add_argument("--sizes", default="T,S,M,L", help="comma-separated subset of T,S,M,L")
    parser.add_argument("--images", type=int, default=2, help="images compared per size")
    parser.add_argument("--image_size", type=int, default=64, help="square input size")
    parser.add_argument("--zeros", type=int, default=5, help="zero weights per sign layer")
    parser.add_argument(
        "--zero_activations",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="plant a stem channel that is exactly 0 at block 1's first binary activation",
    )
    parser.add_argument("--calibration_images", type=int, default=8)
    parser.add_argument("--calibration_passes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    letters = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in letters if s not in SIZES]
    if unknown:
        raise SystemExit(f"--sizes: unknown {unknown}; use a subset of T,S,M,L.")

    import tensorflow as tf
    import torch

    tf.keras.backend.set_floatx("float64")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    results = []
    with tempfile.TemporaryDirectory(prefix="bnext_parity_") as workdir:
        bnext = import_original(os.path.abspath(args.original), os.path.join(workdir, "stubs"))
        for letter in letters:
            result = run_size(bnext, letter, args, workdir)
            results.append(result)
            print(json.dumps(result), flush=True)
    print()
    print(
        "| model | input | relative L2 | max abs diff | top-1 agreement "
        "| zero weights (sign layers) |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['size']} | {r['images']} | {r['relative_l2']:.2e} | {r['max_abs']:.2e} | "
            f"{r['top1_agreement']:.0%} | {r['zero_weights_in_sign_layers']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
