"""The distillation loss and its gradient w.r.t. the student logits vs the original, in float64.

    python benchmarks/original/loss_and_gradient.py --original /path/to/BNext

The original side is the original's own ``train()`` (``src/train_assistant_group_amp.py``)
run for one batch with its ``KD_loss.DistributionLoss`` criterion: the student and teachers
are stand-in modules that return fixed float64 logits, the gradient is read by a hook on the
student logits (before the clip), and the loss is the value ``train()`` returns.

* ``batch_mean``: ``train()`` with ``hard_knowledge=True`` (what ``main_worker`` sets whenever
  it builds assistants and a main teacher, lines 328-332, i.e. in every released run) and
  ``hard_knowledge_grains="Instance"`` (its default).
* ``constant``: ``train()`` with ``hard_knowledge=False`` (alpha = 0.5).
* ``per_sample``: no flag of the script computes it (``"instance"`` makes the loss per sample
  but reduces alpha to a batch mean, which then fails to index); the original's classes are
  composed the paper's way: ``DistributionLoss(reduce=False)`` times the softmax over teachers
  of ``nn.CrossEntropyLoss(reduction="none")``.

``train()`` only ever runs two teachers at once (an assistant and the main one); for three
teachers it is given a teacher list that reports length 1, so that it skips its curriculum
selection and runs the loss over all three.

Ours: ``larq_bnext.training.method.distiller.distillation_loss`` in float64, gradient by
``tf.GradientTape``.
Prints the relative difference ``max|ours - original| / max|original|`` of the loss, the
gradient and the mean weight of the first teacher.
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
from _original import cpu_patches, load_original, original_argument, relative_difference  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _OneLongList(list):
    """Teachers that ``train()`` takes as a single entry (it then runs all of them)."""

    def __len__(self):
        return 1


def _modules(torch):
    nn = torch.nn

    class Fixed(nn.Module):
        def __init__(self, logits, trainable=False):
            super().__init__()
            if trainable:
                self.z = nn.Parameter(logits.clone())
            else:
                self.register_buffer("z", logits.clone())

        def forward(self, images):
            return self.z if isinstance(self.z, nn.Parameter) else self.z.clone()

    class Recorder:
        """The optimizer ``train()`` steps: records the clipped gradient, changes nothing."""

        def __init__(self, params):
            self.params = list(params)
            self.param_groups = [{"lr": 0.0, "params": self.params}]
            self.clipped = None

        def step(self):
            self.clipped = [p.grad.detach().clone() for p in self.params]

        def zero_grad(self):
            for p in self.params:
                p.grad = None

    class NoSchedule:
        def step(self, epoch=None):
            pass

    return Fixed, Recorder, NoSchedule


def original_train_step(train, torch, z_s, z_ts, hard_knowledge):
    """Loss, gradient w.r.t. the student logits and mean alpha of teacher 0 from ``train()``."""
    Fixed, Recorder, NoSchedule = _modules(torch)
    student = Fixed(torch.from_numpy(z_s), trainable=True)
    grads = []
    student.z.register_hook(lambda g: grads.append(g.detach().clone()))
    teachers = [Fixed(torch.from_numpy(z)) for z in z_ts]
    if len(teachers) == 2:  # the script's own layout: [assistants, main], curriculum phase 0
        model_teacher = torch.nn.ModuleList([torch.nn.Sequential(teachers[0]), teachers[1]])
    else:
        model_teacher = _OneLongList(teachers)
    args = argparse.Namespace(
        hard_knowledge=hard_knowledge,
        hard_knowledge_grains="Instance",  # the script's default
        mixup=0.0,
        cutmix=0.0,
        smoothing=0.0,
        dataset="ImageNet",
        dali=False,
        epochs=512,
        assistant_teacher_num=1,
        num_classes=z_s.shape[1],
    )
    n = z_s.shape[0]
    images = torch.zeros((n, 3, 2, 2), dtype=torch.float64)
    target = torch.arange(n) % z_s.shape[1]
    optimizer = Recorder(student.parameters())
    with cpu_patches(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss, _, _, alpha0 = train.train(
            0, [(images, target)], student, model_teacher, train.KD_loss.DistributionLoss(),
            optimizer, NoSchedule(), 1.0, args,
        )  # fmt: skip
    return float(loss), grads[0].numpy(), float(alpha0)


def original_per_sample(torch, kd_loss, z_s, z_ts):
    """The paper's weighting from the original's loss classes (no script flag computes it)."""
    z = torch.tensor(z_s, requires_grad=True)
    teachers = [torch.from_numpy(t) for t in z_ts]
    criterion = kd_loss.DistributionLoss()
    losses = [criterion(z, t, reduce=False).reshape(-1) for t in teachers]
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    alpha = torch.softmax(
        torch.stack([ce(z, torch.softmax(t, dim=-1)) for t in teachers], dim=-1), dim=-1
    ).detach()
    loss = torch.mean(sum(losses[i] * alpha[:, i] for i in range(len(teachers))) / len(teachers))
    loss.backward()
    return float(loss.detach()), z.grad.numpy(), float(alpha[:, 0].mean())


def ours(tf, distillation_loss, z_s, z_ts, weighting):
    """Loss, gradient w.r.t. the student logits and mean alpha of teacher 0 from larq_bnext."""
    z = tf.Variable(z_s, dtype=tf.float64)
    with tf.GradientTape() as tape:
        per_example, alpha = distillation_loss(z, [tf.constant(t) for t in z_ts], weighting)
        loss = tf.reduce_mean(per_example)
    grad = tape.gradient(loss, z)
    assert loss.dtype == tf.float64 and grad.dtype == tf.float64
    return float(loss), grad.numpy(), float(tf.reduce_mean(alpha[:, 0]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    original_argument(parser)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, kd_loss, _ = load_original(args.original)
    import tensorflow as tf
    import torch

    from larq_bnext.training.method.distiller import distillation_loss

    rng = np.random.default_rng(args.seed)
    worst = 0.0
    print(f"batch {args.batch}, {args.classes} classes, float64; relative differences")
    print(f"{'weighting':<11} {'teachers':>8} {'logit scale':>11} {'loss':>9} {'gradient':>9} "
          f"{'alpha[0]':>9}  loss value")  # fmt: skip
    for weighting in ("per_sample", "batch_mean", "constant"):
        for n_teachers in (2, 3):
            for scale in (1.0, 8.0):
                z_s = rng.normal(scale=scale, size=(args.batch, args.classes))
                z_ts = [rng.normal(scale=scale, size=z_s.shape) for _ in range(n_teachers)]
                if weighting == "per_sample":
                    ref = original_per_sample(torch, kd_loss, z_s, z_ts)
                else:
                    ref = original_train_step(train, torch, z_s, z_ts, weighting == "batch_mean")
                got = ours(tf, distillation_loss, z_s, z_ts, weighting)
                diffs = [relative_difference(g, r) for g, r in zip(got, ref, strict=True)]
                worst = max(worst, *diffs)
                print(f"{weighting:<11} {n_teachers:>8} {scale:>11g} {diffs[0]:9.1e} "
                      f"{diffs[1]:9.1e} {diffs[2]:9.1e}  {ref[0]:.6f}")  # fmt: skip
    print(f"largest relative difference: {worst:.1e}")
    return 0 if worst < 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
