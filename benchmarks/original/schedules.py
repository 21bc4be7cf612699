"""Learning rate, temperature and curriculum phase per epoch over a full run, against the original.

    python benchmarks/original/schedules.py --original /path/to/BNext [--timm PATH] [--epochs 512]

* Learning rate: the original builds timm's ``CosineLRScheduler(t_initial=epochs, warmup_t=5,
  lr_min=1e-7, warmup_lr_init=1e-5, warmup_prefix=True)`` and steps it with the epoch at the
  start of every ``train()``. timm is not installed here: with ``--timm`` (a checkout of timm
  v0.6.11, the original's version) its own ``timm/scheduler/`` code runs; in every case the
  re-derivation ``_original.timm_cosine_lr`` (from the same source) is compared as well.
  Ours: ``larq_bnext.WarmupCosine(steps_per_epoch, epochs)`` (Keras ``floatx`` float64) at the
  first and the last step of every epoch, and its ``lr_at_epoch``.
* Temperature: the original's own ``adjust_temperature`` on its ``HardSign`` and
  ``HardBinaryConv`` modules (float64 buffers), called in the order of ``main_worker``'s epoch
  loop (after epoch ``e`` with ``e + 1``); the value in effect while epoch ``e`` trains. Ours:
  ``larq_bnext.TemperatureScheduler(0.9)`` driven through the Keras callback protocol on a
  ``BinaryConv2D`` (float64 weights): kernel and input temperature at ``on_epoch_begin``.
* Curriculum: the original's own ``train()`` for every epoch, with stand-in teachers that
  record being called (1, 2 and 3 assistants: BNext-T/S, M, L); ours:
  ``larq_bnext.AssistantCurriculum`` on a ``larq_bnext.Distiller`` and its ``active_teachers``.
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


def learning_rates(torch, epochs, steps_per_epoch, timm_scheduler):
    import larq_bnext

    derived = np.array([timm_cosine_lr(e, epochs=epochs) for e in range(epochs)])
    timm = None
    if timm_scheduler is not None:
        p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        optimizer = torch.optim.AdamW([p], lr=1e-3)
        scheduler = timm_scheduler(
            optimizer, t_initial=epochs, warmup_t=5, lr_min=1e-7, warmup_lr_init=1e-5,
            warmup_prefix=True,
        )  # fmt: skip
        timm = []
        for e in range(epochs):
            scheduler.step(epoch=e)
            timm.append(optimizer.param_groups[0]["lr"])
        timm = np.array(timm)
    schedule = larq_bnext.WarmupCosine(steps_per_epoch=steps_per_epoch, epochs=epochs)
    steps = np.arange(epochs) * steps_per_epoch
    first = schedule(steps).numpy()
    last = schedule(steps + steps_per_epoch - 1).numpy()
    python = np.array([schedule.lr_at_epoch(e) for e in range(epochs)])
    assert first.dtype == np.float64
    return derived, timm, first, last, python


def temperatures(tf, train, bnext, epochs):
    import larq_bnext
    from larq_bnext.models.layers import BinaryConv2D

    original = (
        __import__("torch").nn.Sequential(bnext.HardSign(), bnext.HardBinaryConv(2, 2)).double()
    )
    args = argparse.Namespace(model="bnext_tiny")
    ref_kernel, ref_input = [], []
    for epoch in range(epochs):  # main_worker: train(epoch) ... epoch += 1; adjust_temperature
        ref_input.append(float(original[0].temperature))
        ref_kernel.append(float(original[1].temperature))
        train.adjust_temperature(original, epoch + 1, args)

    inputs = tf.keras.Input((4, 4, 2), dtype="float64")
    conv = BinaryConv2D(2, 3, dtype="float64")
    model = tf.keras.Model(inputs, conv(inputs))
    assert conv.temperature.dtype == tf.float64
    callback = larq_bnext.TemperatureScheduler(0.9)
    callback.set_model(model)
    callback.on_train_begin()
    kernel, input_ = [], []
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        kernel.append(float(conv.temperature.numpy()))
        input_.append(float(conv.input_temperature.numpy()))
        callback.on_epoch_end(epoch, {})
    return np.array(ref_kernel), np.array(ref_input), np.array(kernel), np.array(input_)


def original_phases(train, torch, assistants, epochs):
    """Which assistant the original's ``train()`` runs in every epoch."""
    called = []

    class Recording(torch.nn.Module):
        def __init__(self, index):
            super().__init__()
            self.index = index

        def forward(self, images):
            called.append(self.index)
            return torch.zeros((images.shape[0], 5), dtype=torch.float64)

    class Student(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.z = torch.nn.Parameter(torch.zeros((2, 5), dtype=torch.float64))

        def forward(self, images):
            return self.z

    class Quiet:
        param_groups = [{"lr": 0.0}]

        def step(self, *a, **k):
            pass

        def zero_grad(self):
            pass

    model_teacher = torch.nn.ModuleList(
        [torch.nn.Sequential(*[Recording(i) for i in range(assistants)]), Recording("main")]
    )
    args = argparse.Namespace(
        hard_knowledge=True, hard_knowledge_grains="Instance", mixup=0.0, cutmix=0.0,
        dataset="ImageNet", dali=False, epochs=epochs, assistant_teacher_num=assistants,
    )  # fmt: skip
    batch = [(torch.zeros((2, 3, 2, 2), dtype=torch.float64), torch.zeros(2, dtype=torch.long))]
    phases = []
    student = Student()
    with cpu_patches(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(epochs):
            called.clear()
            train.train(
                epoch, batch, student, model_teacher, train.KD_loss.DistributionLoss(), Quiet(),
                Quiet(), 1.0, args,
            )  # fmt: skip
            assert len(called) == 2 and called[1] == "main", called
            phases.append(called[0])
    return np.array(phases)


def our_phases(tf, assistants, epochs):
    import larq_bnext

    def model(name):
        inputs = tf.keras.Input((2,))
        return tf.keras.Model(inputs, tf.keras.layers.Dense(5)(inputs), name=name)

    teachers = [larq_bnext.Teacher(model(f"assistant{i}")) for i in range(assistants)]
    distiller = larq_bnext.Distiller(model("student"), teacher=model("main"), assistants=teachers)
    callback = larq_bnext.AssistantCurriculum(epochs)
    callback.set_model(distiller)
    phases = []
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        active = distiller.active_teachers()
        assert active[1] is distiller.teacher
        phases.append(teachers.index(active[0]))
    return np.array(phases)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    original_argument(parser)
    parser.add_argument("--timm", help="checkout of timm v0.6.11 (else only the re-derivation)")
    parser.add_argument("--epochs", type=int, default=512)
    parser.add_argument("--steps_per_epoch", type=int, default=2502, help="ImageNet at 512")
    args = parser.parse_args(argv)

    train, _, bnext = load_original(args.original)
    timm_scheduler = load_timm_scheduler(args.timm) if args.timm else None
    import tensorflow as tf
    import torch

    tf.keras.backend.set_floatx("float64")
    worst = 0.0
    derived, timm, first, last, python = learning_rates(
        torch, args.epochs, args.steps_per_epoch, timm_scheduler
    )
    print(f"learning rate, {args.epochs} epochs, {args.steps_per_epoch} steps per epoch:")
    if timm is not None:
        d = relative_difference(derived, timm)
        print(f"  re-derivation vs timm's own CosineLRScheduler ({args.timm}): {d:.1e}")
        worst = max(worst, d)
    reference = timm if timm is not None else derived
    for label, ours in (
        ("WarmupCosine, first step of each epoch", first),
        ("WarmupCosine, last step of each epoch", last),
        ("WarmupCosine.lr_at_epoch", python),
    ):
        per_epoch = np.abs(ours - reference) / reference
        print(f"  {label}: max relative difference {per_epoch.max():.1e}")
        worst = max(worst, float(per_epoch.max()))
    print(
        "  epochs 0, 4, 5, 260, 511: "
        + ", ".join(f"{reference[e]:.6e}" for e in (0, 4, 5, 260, args.epochs - 1))
    )

    ref_kernel, ref_input, kernel, input_ = temperatures(tf, train, bnext, args.epochs)
    k = float((np.abs(kernel - ref_kernel) / ref_kernel).max())
    i = float((np.abs(input_ - ref_input) / ref_input).max())
    worst = max(worst, k, i)
    below = int(np.argmax(ref_kernel < 1e-7))
    print(
        f"temperature per epoch: max relative difference kernel {k:.1e}, input {i:.1e}; "
        f"epoch 0: {ref_kernel[0]:g}, epoch 1: {ref_kernel[1]:g}, last: {ref_kernel[-1]:.4e}; "
        f"kernels exactly sign(w) (T < 1e-7) from epoch {below}"
    )

    for assistants in (1, 2, 3):
        ref = original_phases(train, torch, assistants, args.epochs)
        got = our_phases(tf, assistants, args.epochs)
        mismatches = int((ref != got).sum())
        worst = max(worst, float(mismatches))
        starts = [int(np.argmax(ref == p)) for p in range(assistants)]
        print(
            f"curriculum, {assistants} assistant(s): {mismatches} epochs differ; "
            f"phases start at epochs {starts}"
        )
    print(f"largest relative difference (or mismatch count): {worst:.1e}")
    return 0 if worst < 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
