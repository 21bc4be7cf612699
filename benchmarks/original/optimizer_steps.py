"""Three full training steps (loss, clip at norm 5, AdamW, both decay groups) against the original.

    python benchmarks/original/optimizer_steps.py --original /path/to/BNext [--timm PATH]

The original side is the original's own ``train()`` (``src/train_assistant_group_amp.py``),
called for epochs 0, 1 and 2 with one batch each, with:

* a float64 student of a 4-D convolution kernel, a ``(1, C, 1, 1)`` per-channel bias (the
  shape of BNext's ``move`` and recoupling ``scale``), a global average pool and a linear
  classifier;
* ``torch.optim.AdamW`` with the script's two parameter groups: 1e-8 for the parameters with
  ``p.ndimension() == 4 or 'binary_conv' in name``, 1e-3 for the others, ``lr=1e-3`` (the
  script's lines 408-430; its ``--weight_decay`` flag is never read);
* the script's scheduler: timm's ``CosineLRScheduler(t_initial=512, warmup_t=5, lr_min=1e-7,
  warmup_lr_init=1e-5, warmup_prefix=True)`` (loaded from ``--timm``, a checkout of timm
  v0.6.11, or re-derived from its source, see ``_original.timm_cosine_lr``), stepped with the
  epoch at the start of ``train()``;
* an assistant and a main teacher (fixed float64 linear maps of the images) and
  ``hard_knowledge=True``, ``hard_knowledge_grains="Instance"`` as every released run has them.

``train()`` itself computes the loss, calls ``clip_grad_norm_(..., 5)`` and steps the optimizer.

Ours: the same student in Keras (``floatx`` float64), ``larq_bnext.Distiller(weighting=
"batch_mean", clip_norm=5)``, ``larq_bnext.AdamW`` with ``larq_bnext.WarmupCosine(
steps_per_epoch=1, epochs=512)``, three ``train_on_batch`` calls. The image scale changes per
step so that the first and last steps are clipped and the second is not. Prints the relative
difference of every parameter after every step.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _original import (  # noqa: E402
    cpu_patches,
    load_original,
    load_timm_scheduler,
    original_argument,
    relative_difference,
    timm_cosine_lr,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE, CHANNELS, CLASSES, BATCH = 6, 4, 10, 8
IMAGE_SCALES = (40.0, 0.05, 300.0)


def _torch_models(torch, weights):
    nn = torch.nn

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, CHANNELS, 3, bias=False).double()
            self.move = nn.Parameter(torch.tensor(weights["move"].reshape(1, -1, 1, 1)))
            self.fc = nn.Linear(CHANNELS, CLASSES).double()
            with torch.no_grad():
                self.conv.weight.copy_(torch.from_numpy(weights["conv"].transpose(3, 2, 0, 1)))
                self.fc.weight.copy_(torch.from_numpy(weights["fc"].T))
                self.fc.bias.copy_(torch.from_numpy(weights["fc_bias"]))

        def forward(self, x):
            return self.fc((self.conv(x) + self.move).mean(dim=(2, 3)))

    class Linear(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.register_buffer("w", torch.from_numpy(w))

        def forward(self, x):  # NCHW in, the same flattening order as Keras' NHWC Flatten
            return x.permute(0, 2, 3, 1).flatten(1) @ self.w

    return Student(), Linear


def original_run(train, torch, weights, teachers, batches, timm_scheduler):
    student, Linear = _torch_models(torch, weights)
    model_teacher = torch.nn.ModuleList(
        [torch.nn.Sequential(Linear(teachers[0])), Linear(teachers[1])]
    )
    # The script's grouping (train_assistant_group_amp.py, lines 408-430).
    small = [p for n, p in student.named_parameters() if p.ndimension() == 4 or "binary_conv" in n]
    ids = list(map(id, small))
    other = [p for p in student.parameters() if id(p) not in ids]
    optimizer = torch.optim.AdamW(
        [{"params": other, "weight_decay": 1e-3}, {"params": small, "weight_decay": 1e-8}],
        lr=1e-3,
    )
    if timm_scheduler is not None:
        scheduler = timm_scheduler(
            optimizer, t_initial=512, warmup_t=5, lr_min=1e-7, warmup_lr_init=1e-5,
            warmup_prefix=True,
        )  # fmt: skip
    else:

        class scheduler:  # noqa: N801
            @staticmethod
            def step(epoch):
                for group in optimizer.param_groups:
                    group["lr"] = timm_cosine_lr(epoch)

    args = argparse.Namespace(
        hard_knowledge=True, hard_knowledge_grains="Instance", mixup=0.0, cutmix=0.0,
        smoothing=0.0, dataset="ImageNet", dali=False, epochs=512, assistant_teacher_num=1,
        num_classes=CLASSES,
    )  # fmt: skip
    norms, lrs, states = [], [], []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *a, **k):
        norm = clip(parameters, max_norm, *a, **k)
        norms.append(float(norm))
        return norm

    for epoch, (images, labels) in enumerate(batches):
        loader = [(torch.from_numpy(images.transpose(0, 3, 1, 2)), torch.from_numpy(labels))]
        torch.nn.utils.clip_grad_norm_ = recording_clip
        try:
            with cpu_patches(), contextlib.redirect_stdout(io.StringIO()):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    train.train(
                        epoch, loader, student, model_teacher, train.KD_loss.DistributionLoss(),
                        optimizer, scheduler, 1.0, args,
                    )  # fmt: skip
        finally:
            torch.nn.utils.clip_grad_norm_ = clip
        lrs.append(optimizer.param_groups[0]["lr"])
        states.append(
            {
                "conv": student.conv.weight.detach().numpy().transpose(2, 3, 1, 0).copy(),
                "move": student.move.detach().numpy().reshape(-1).copy(),
                "fc": student.fc.weight.detach().numpy().T.copy(),
                "fc_bias": student.fc.bias.detach().numpy().copy(),
            }
        )
    return states, lrs, norms


def our_run(tf, weights, teachers, batches):
    import larq_bnext
    from larq_bnext.models.layers import LearnableBias
    from larq_bnext.training import current_learning_rate

    inputs = tf.keras.Input((SIZE, SIZE, 3), dtype="float64")
    conv = tf.keras.layers.Conv2D(CHANNELS, 3, use_bias=False, dtype="float64")
    move = LearnableBias(dtype="float64")
    fc = tf.keras.layers.Dense(CLASSES, dtype="float64")
    x = move(conv(inputs))
    logits = fc(tf.keras.layers.GlobalAveragePooling2D(dtype="float64")(x))
    student = tf.keras.Model(inputs, logits)
    conv.kernel.assign(weights["conv"])
    move.bias.assign(weights["move"])
    fc.kernel.assign(weights["fc"])
    fc.bias.assign(weights["fc_bias"])

    def teacher(w):
        t_in = tf.keras.Input((SIZE, SIZE, 3), dtype="float64")
        dense = tf.keras.layers.Dense(CLASSES, use_bias=False, dtype="float64")
        model = tf.keras.Model(t_in, dense(tf.keras.layers.Flatten(dtype="float64")(t_in)))
        dense.kernel.assign(w)
        return model

    distiller = larq_bnext.Distiller(
        student,
        teacher=teacher(teachers[1]),
        assistants=[teacher(teachers[0])],
        clip_norm=5.0,
        weighting="batch_mean",
    )
    optimizer = larq_bnext.AdamW(larq_bnext.WarmupCosine(steps_per_epoch=1, epochs=512))
    distiller.compile(optimizer=optimizer)
    states, lrs = [], []
    for images, labels in batches:
        lrs.append(current_learning_rate(optimizer))
        distiller.train_on_batch(images, labels)
        states.append(
            {
                "conv": conv.kernel.numpy(),
                "move": move.bias.numpy(),
                "fc": fc.kernel.numpy(),
                "fc_bias": fc.bias.numpy(),
            }
        )
    decays = {
        "conv": optimizer.weight_decay_of(conv.kernel),
        "move": optimizer.weight_decay_of(move.bias),
        "fc": optimizer.weight_decay_of(fc.kernel),
        "fc_bias": optimizer.weight_decay_of(fc.bias),
    }
    return states, lrs, decays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    original_argument(parser)
    parser.add_argument("--timm", help="checkout of timm v0.6.11 (else the re-derived schedule)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, _, _ = load_original(args.original)
    timm_scheduler = load_timm_scheduler(args.timm) if args.timm else None
    import tensorflow as tf
    import torch

    tf.keras.backend.set_floatx("float64")
    rng = np.random.default_rng(args.seed)
    weights = {
        "conv": rng.normal(scale=0.3, size=(3, 3, 3, CHANNELS)),
        "move": rng.normal(scale=0.1, size=(CHANNELS,)),
        "fc": rng.normal(scale=0.5, size=(CHANNELS, CLASSES)),
        "fc_bias": rng.normal(scale=0.1, size=(CLASSES,)),
    }
    teachers = [rng.normal(scale=0.05, size=(SIZE * SIZE * 3, CLASSES)) for _ in range(2)]
    batches = [
        (rng.normal(scale=s, size=(BATCH, SIZE, SIZE, 3)), rng.integers(0, CLASSES, BATCH))
        for s in IMAGE_SCALES
    ]
    ref_states, ref_lrs, norms = original_run(
        train, torch, weights, teachers, batches, timm_scheduler
    )
    got_states, got_lrs, decays = our_run(tf, weights, teachers, batches)
    print(f"schedule on the original side: {'timm ' + args.timm if args.timm else 're-derived'}")
    print(f"our decay groups: {decays}  (original: conv 1e-8, move 1e-8, fc 1e-3, fc_bias 1e-3)")
    worst = 0.0
    for step, (ref, got) in enumerate(zip(ref_states, got_states, strict=True)):
        lr_diff = relative_difference(got_lrs[step], ref_lrs[step])
        diffs = {k: relative_difference(got[k], ref[k]) for k in ref}
        moved = {k: relative_difference(ref[k], weights[k]) for k in ref}
        worst = max(worst, lr_diff, *diffs.values())
        print(
            f"step {step}: lr {ref_lrs[step]:.6e} (diff {lr_diff:.1e}), gradient norm "
            f"{norms[step]:.4g} ({'clipped' if norms[step] > 5 else 'not clipped'}); "
            + ", ".join(f"{k} {diffs[k]:.1e} (moved {moved[k]:.1e})" for k in ref)
        )
    print(f"largest relative difference: {worst:.1e}")
    return 0 if worst < 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
