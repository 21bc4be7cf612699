"""Logit parity of ``larq_bnext.BNext18`` against the ORIGINAL PyTorch ``BNext18``, in float64.

For the ImageNet form (1000 classes: 7x7 stride-2 stem and max-pool) and the CIFAR form
(``--cifar_classes`` classes: 3x3 stride-1 stem, no max-pool) the script

1. builds the original ``BNext18`` (``src/birealnet.py`` of a checkout of hpi-xnor/BNext,
   imported with tiny stand-ins for the ``torchinfo``/``torchvision``/``einops`` modules it
   imports but never uses, written to a temporary directory at run time), in float64;
2. randomises every parameter: latent binary kernels ~ N(0, 0.5), ``move`` biases, PReLU
   slopes, BatchNorm affine parameters, the float downsample 1x1 convolutions, the SE
   convolutions, the classifier, recoupling ``scale`` ~ U(0, 1); kernel temperatures cycle over
   every regime of BNext18's quantizer across the binary layers: ``1`` and ``0.3`` and
   ``2e-5`` (``clip(w / T, -1, 1)``), ``3e-6`` (``sign(w)`` in BNext18, whose threshold is
   ``1e-5``, but ``clip`` for BNext-T/S/M/L's ``1e-7``) and ``1e-9`` (``sign(w)``); activation
   temperatures likewise;
3. takes BatchNorm statistics from data: forward passes in training mode on random images
   (cumulative average), then switches to evaluation;
4. pushes values the original clamps on every forward out of range (latent kernels at the
   +-1.5 clamp to +-2, FFN scales at 0/1 to -0.25/1.25): the forward is unchanged, the loader
   must clamp as the original does;
5. saves a checkpoint the way the original training script does
   (``torch.save({"epoch", "state_dict": {"module." + k: v}, ...})``);
6. loads it with ``larq_bnext.BNext18(weights=path)`` under ``set_floatx("float64")`` and
   compares the logits on the same random images.

    python benchmarks/original/parity_bnext18.py --original /work/orig/BNext
    python benchmarks/original/parity_bnext18.py --original PATH --image_size 224 --images 4

Prints, per form: relative L2 distance of the logits, max abs difference, top-1 agreement and
times; ``--json`` writes them to a file.
"""

from __future__ import annotations

import argparse
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

#: Kernel / activation temperatures cycled over the binary layers (see the module docstring).
TEMPERATURES = (1.0, 0.3, 2e-5, 3e-6, 1e-9)

_STUBS = {
    "torchinfo.py": "def summary(*args, **kwargs):\n    raise NotImplementedError('stand-in')\n",
    "einops.py": "def rearrange(*args, **kwargs):\n    raise NotImplementedError('stand-in')\n",
    "torchvision/__init__.py": "",
}


def import_original(original: str, stub_dir: str):
    """Import the original ``birealnet`` module, its unused imports stood in by stubs."""
    for rel, text in _STUBS.items():
        path = os.path.join(stub_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
    src = os.path.join(os.path.abspath(original), "src")
    if not os.path.isfile(os.path.join(src, "birealnet.py")):
        raise SystemExit(
            f"--original {original!r}: no src/birealnet.py (a hpi-xnor/BNext checkout?)"
        )
    sys.path.insert(0, src)
    sys.path.insert(0, stub_dir)
    return importlib.import_module("birealnet")


def randomize(model, birealnet, torch, seed: int, image_size: int, calibration: int) -> dict:
    """Randomise ``model`` (see the module docstring); return counts of what was planted."""
    g = torch.Generator().manual_seed(seed)

    def rand(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)

    def normal(shape, std):
        return std * torch.randn(shape, generator=g, dtype=torch.float64)

    nn = torch.nn
    counts = {"binary_layers": 0, "temperatures": {}}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, birealnet.HardBinaryConv):
                t = TEMPERATURES[counts["binary_layers"] % len(TEMPERATURES)]
                module.weight.copy_(normal(module.weight.shape, 0.5))
                module.temperature.fill_(t)
                counts["temperatures"][str(t)] = counts["temperatures"].get(str(t), 0) + 1
                counts["binary_layers"] += 1
            elif isinstance(module, birealnet.HardSign):
                module.temperature.fill_(TEMPERATURES[len(name) % len(TEMPERATURES)])
            elif isinstance(module, birealnet.LearnableBias):
                module.bias.copy_(normal(module.bias.shape, 0.2))
            elif isinstance(module, nn.PReLU):
                module.weight.copy_(rand(module.weight.shape, -0.2, 0.6))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(rand(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(normal(module.bias.shape, 0.2))
            elif isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(normal(module.weight.shape, fan_in**-0.5))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.2))
            elif isinstance(module, nn.Linear):
                module.weight.copy_(normal(module.weight.shape, module.in_features**-0.5))
                module.bias.copy_(normal(module.bias.shape, 0.1))
            if isinstance(module, (birealnet.Attention, birealnet.FFN_3x3)):
                module.scale.copy_(rand(module.scale.shape, 0.0, 1.0))
        # BatchNorm statistics from data (cumulative average over the calibration batches).
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None
        model.train()
        for _ in range(calibration):
            model(torch.randn(8, 3, image_size, image_size, generator=g, dtype=torch.float64))
        model.eval()
        # Values the original clamps on every forward: out of range now, same forward.
        pushed = 0
        for module in model.modules():
            if isinstance(module, birealnet.HardBinaryConv):
                w = module.weight
                pushed += int((w.abs() == 1.5).sum())
                w.copy_(torch.where(w.abs() == 1.5, 2.0 * torch.sign(w), w))
            if isinstance(module, birealnet.FFN_3x3):
                s = module.scale
                pushed += int(((s == 0) | (s == 1)).sum())
                s.copy_(torch.where(s == 0, -0.25, torch.where(s == 1, 1.25, s)))
        counts["pushed_out_of_range"] = pushed
    return counts


def run_form(birealnet, torch, num_classes: int, image_size: int, args, tmp: str) -> dict:
    import numpy as np
    import tensorflow as tf

    import larq_bnext

    torch.manual_seed(args.seed)
    original = birealnet.BNext18(num_classes=num_classes).double()
    counts = randomize(original, birealnet, torch, args.seed, image_size, args.calibration)
    path = os.path.join(tmp, f"bnext18_{num_classes}.pth.tar")
    state = {"module." + k: v.detach().clone().float() for k, v in original.state_dict().items()}
    # The training script writes float32 tensors: run the original on the same values.
    original.load_state_dict({k[len("module.") :]: v.double() for k, v in state.items()})
    torch.save({"epoch": 0, "state_dict": state, "best_top1_acc": 0.0}, path)

    images = torch.randn(
        args.images,
        3,
        image_size,
        image_size,
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    start = time.perf_counter()
    with torch.no_grad():
        ref = original.eval()(images).numpy()
    torch_s = time.perf_counter() - start

    tf.keras.backend.set_floatx("float64")
    try:
        start = time.perf_counter()
        model = larq_bnext.BNext18(
            input_shape=(image_size, image_size, 3),
            num_classes=num_classes,
            classifier_activation=None,
            weights=path,
        )
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        out = model(np.transpose(images.numpy(), (0, 2, 3, 1)), training=False).numpy()
        keras_s = time.perf_counter() - start
    finally:
        tf.keras.backend.set_floatx("float32")
    rel = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    result = {
        "form": "imagenet" if num_classes == 1000 else "cifar",
        "num_classes": num_classes,
        "image_size": image_size,
        "images": args.images,
        "relative_l2": rel,
        "max_abs_diff": float(np.max(np.abs(out - ref))),
        "top1_agreement": f"{int(np.sum(out.argmax(1) == ref.argmax(1)))}/{args.images}",
        "logit_std": float(ref.std()),
        "params_original": int(sum(p.numel() for p in original.parameters())),
        "params_keras": int(model.count_params()),
        **counts,
        "torch_forward_s": round(torch_s, 2),
        "keras_build_load_s": round(build_s, 2),
        "keras_forward_s": round(keras_s, 2),
    }
    del model
    tf.keras.backend.clear_session()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="checkout of hpi-xnor/BNext")
    parser.add_argument("--image_size", type=int, default=64, help="ImageNet-form input size")
    parser.add_argument("--cifar_size", type=int, default=32, help="CIFAR-form input size")
    parser.add_argument("--cifar_classes", type=int, default=100)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--calibration", type=int, default=2, help="BatchNorm calibration batches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    import torch

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        birealnet = import_original(args.original, os.path.join(tmp, "stubs"))
        for classes, size in ((1000, args.image_size), (args.cifar_classes, args.cifar_size)):
            r = run_form(birealnet, torch, classes, size, args, tmp)
            results.append(r)
            print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    worst = max(r["relative_l2"] for r in results)
    print(f"worst relative L2: {worst:.3g} ({'OK' if worst <= 1e-12 else 'ABOVE 1e-12'})")
    return 0 if worst <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
